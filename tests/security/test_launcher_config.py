"""The secured launchers' generated configuration, without starting anything."""

from __future__ import annotations

import base64
import hashlib

import pytest

from hfrisk.stack.kafka import BROKER_USER, KafkaBroker, KafkaListenerSecurity, scram_credential
from hfrisk.stack.redis_server import RedisServer, RedisTLS, RedisUser

PASSWORD = "pencil, with = and ] in it"


def test_scram_credentials_carry_the_salted_password_only():
    salt = b"0123456789abcdef"
    credential = scram_credential("SCRAM-SHA-512", "worker", PASSWORD, salt=salt, iterations=4096)
    assert PASSWORD not in credential
    salted = hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), salt, 4096)
    assert credential == (f'SCRAM-SHA-512=[name=worker,iterations=4096,salt="{base64.b64encode(salt).decode()}",'
                          f'saltedpassword="{base64.b64encode(salted).decode()}"]')
    with pytest.raises(ValueError, match="user names"):
        scram_credential("SCRAM-SHA-512", "a,b", PASSWORD)


def test_a_sasl_ssl_broker_config(tmp_path, pki):
    security = KafkaListenerSecurity(pki.certfile, pki.keyfile, pki.cafile, users={"worker": PASSWORD})
    broker = KafkaBroker(tmp_path, security=security, port=19092, controller_port=19093)
    props = dict(line.split("=", 1) for line in broker.server_properties().splitlines())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.truststore.type"] == "PEM"
    assert f'username="{BROKER_USER}"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert PASSWORD not in broker.server_properties() and PASSWORD not in repr(security)
    assert (tmp_path / "keystore.pem").stat().st_mode & 0o077 == 0
    assert broker.client_kwargs("worker", PASSWORD)["security_protocol"] == "SASL_SSL"


def test_a_key_kafka_cannot_read_is_refused_with_the_fix(tmp_path, pki):
    legacy = tmp_path / "legacy.key"
    legacy.write_text("-----BEGIN RSA PRIVATE KEY-----\nMII...\n-----END RSA PRIVATE KEY-----\n")
    broker = KafkaBroker(tmp_path, security=KafkaListenerSecurity(pki.certfile, legacy, pki.cafile))
    with pytest.raises(Exception, match="openssl pkcs8 -topk8 -nocrypt"):
        broker.server_properties()
    with pytest.raises(ValueError, match="broker's own user"):
        KafkaListenerSecurity(pki.certfile, pki.keyfile, pki.cafile, users={BROKER_USER: "x"})


def test_redis_acl_and_tls_config(tmp_path, pki):
    server = RedisServer(tmp_path, port=16380, users=[RedisUser("worker", PASSWORD)],
                         tls=RedisTLS(pki.certfile, pki.keyfile, pki.cafile, auth_clients="optional"))
    config = server.config().splitlines()
    assert "port 0" in config and "tls-port 16380" in config and "tls-auth-clients optional" in config
    assert "user default off resetkeys -@all" in config
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert (f"user worker on #{digest} resetkeys ~hfrisk:* resetchannels -@all "
            "+@read +@write +@transaction +@connection -@dangerous") in config
    assert PASSWORD not in "\n".join(config)
    assert server.url == "rediss://127.0.0.1:16380/0"
    with pytest.raises(ValueError, match="usable Redis user"):
        RedisUser("default", "x")
    plain = RedisServer(tmp_path, port=16381)
    directives = {line.split()[0] for line in plain.config().splitlines()}
    assert not directives & {"user", "tls-port", "tls-cert-file"} and "port" in directives
    assert plain.url.startswith("redis://")
