"""Security settings: secrets from the environment or files, never printed, and the client
arguments that hfrisk.core.security builds from them."""

from __future__ import annotations

import io
import json
import ssl
from contextlib import redirect_stderr

import faust
import pytest
from pydantic import ValidationError

from hfrisk.core.config import KafkaSettings, RedisSettings, Settings
from hfrisk.core.logs import configure_logging, get_logger
from hfrisk.core.security import (
    SecretError,
    faust_broker_options,
    kafka_client_kwargs,
    read_secret,
    redis_client,
    redis_client_kwargs,
    redis_url,
)

SECRET = "Tr0ub4dor-and-3-horses"


@pytest.fixture
def secret_env(monkeypatch, tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text("a-pseudonym-key-of-32-characters\n")
    for name, value in {
        "HFRISK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "HFRISK_KAFKA__USERNAME": "worker",
        "HFRISK_KAFKA__PASSWORD": SECRET,
        "HFRISK_REDIS__USERNAME": "worker",
        "HFRISK_REDIS__PASSWORD": SECRET,
        "HFRISK_PSEUDONYM__ENABLED": "true",
        "HFRISK_PSEUDONYM__KEY_FILE": str(key_file),
    }.items():
        monkeypatch.setenv(name, value)


def test_secrets_come_from_the_environment_and_are_never_shown(secret_env):
    settings = Settings()
    assert settings.kafka.password.get_secret_value() == SECRET
    assert settings.redis.password.get_secret_value() == SECRET
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert SECRET not in shown
    assert "**********" in repr(settings.kafka)


@pytest.mark.parametrize("json_logs", [True, False])
def test_structured_logs_do_not_show_secrets(secret_env, json_logs):
    settings = Settings()
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        configure_logging("INFO", json_logs=json_logs)
        log = get_logger("test.secrets")
        log.info("settings", kafka=settings.kafka, redis=settings.redis, all=settings)
        log.info("client kwargs", redis=redis_client_kwargs(settings.redis).keys())
    configure_logging("INFO", json_logs=False)
    output = stderr.getvalue()
    assert "settings" in output and "worker" in output  # the log line was written, with its fields
    assert SECRET not in output


def test_secret_files_are_read_at_use_time(tmp_path):
    secret_file = tmp_path / "kafka.pw"
    secret_file.write_text(SECRET + "\n")
    kafka = KafkaSettings(security_protocol="SASL_PLAINTEXT", username="u", password_file=secret_file)
    assert kafka_client_kwargs(kafka)["sasl_plain_password"] == SECRET
    secret_file.write_text("rotated")
    assert kafka_client_kwargs(kafka)["sasl_plain_password"] == "rotated"

    secret_file.write_text("")
    with pytest.raises(SecretError, match="empty"):
        kafka_client_kwargs(kafka)
    secret_file.unlink()
    with pytest.raises(SecretError, match="cannot read kafka password"):
        kafka_client_kwargs(kafka)
    assert read_secret(None, None, "nothing") is None


def test_misconfigured_security_is_refused_early():
    with pytest.raises(ValidationError, match="needs kafka.username"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="not both"):
        KafkaSettings(password=SECRET, password_file="/run/secrets/kafka")
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings(security_protocol="SASL_TLS")
    with pytest.raises(ValidationError, match="never logged") as err:
        RedisSettings(url=f"redis://worker:{SECRET}@127.0.0.1:6379/0")
    assert SECRET not in str(err.value)
    with pytest.raises(ValidationError, match="needs HFRISK_PSEUDONYM__KEY"):
        Settings(pseudonym={"enabled": True})
    with pytest.raises(SecretError, match="HFRISK_KAFKA__PASSWORD"):
        kafka_client_kwargs(KafkaSettings(security_protocol="SASL_SSL", username="u"))


def test_plaintext_defaults_add_nothing_to_the_clients():
    settings = Settings()
    assert kafka_client_kwargs(settings.kafka) == {}
    assert faust_broker_options(settings.kafka) == {}
    assert redis_client_kwargs(settings.redis) == {}
    assert redis_url(settings.redis) == settings.redis.url


def test_kafka_client_kwargs_for_sasl_ssl(tmp_path, pki):
    kafka = KafkaSettings(security_protocol="SASL_SSL", username="worker", password=SECRET,
                          sasl_mechanism="SCRAM-SHA-256", ssl_cafile=pki.cafile)
    kwargs = kafka_client_kwargs(kafka)
    assert {k: v for k, v in kwargs.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "worker", "sasl_plain_password": SECRET,
    }
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # With a CA file, only that CA is trusted (not the system's store).
    assert len(context.get_ca_certs()) == 1

    credentials = faust_broker_options(kafka)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-256"
    assert SECRET not in repr(credentials)

    tls_only = faust_broker_options(KafkaSettings(security_protocol="SSL", ssl_cafile=pki.cafile))
    assert isinstance(tls_only["broker_credentials"], faust.SSLCredentials)
    assert "sasl_plain_username" not in kafka_client_kwargs(KafkaSettings(security_protocol="SSL"))


def test_redis_tls_and_acl_kwargs(pki):
    settings = RedisSettings(url="redis://10.0.0.5:6380/2", ssl=True, username="worker", password=SECRET,
                             ssl_ca_certs=pki.cafile, ssl_certfile=pki.client_certfile,
                             ssl_keyfile=pki.client_keyfile)
    assert redis_url(settings) == "rediss://10.0.0.5:6380/2"
    assert redis_client_kwargs(settings) == {
        "username": "worker", "password": SECRET, "ssl_check_hostname": True, "ssl_cert_reqs": "required",
        "ssl_ca_certs": str(pki.cafile), "ssl_certfile": str(pki.client_certfile),
        "ssl_keyfile": str(pki.client_keyfile),
    }
    client = redis_client(settings)
    connection = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert connection["username"] == "worker" and connection["db"] == 2
    client.close()
    assert RedisSettings(url="rediss://h:1/0").tls and not RedisSettings().tls


def test_settings_json_dump_is_safe_to_share(secret_env):
    dumped = json.loads(Settings().model_dump_json())
    assert dumped["kafka"]["password"] == "**********"
    assert dumped["pseudonym"]["key"] is None and dumped["pseudonym"]["key_file"]
