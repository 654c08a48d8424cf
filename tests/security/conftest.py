"""Fixtures of the security tests: a throw-away PKI, and a Kafka broker and a Redis server
secured with it (SASL_SSL + SCRAM-SHA-512; TLS + ACL users), each started once per session.

Secrets are made per session (``secrets.token_urlsafe``) and handed to clients through files,
the way a deployment mounts them. Missing servers skip locally and fail in CI, as in
tests/integration.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hfrisk.core.config import KafkaSettings, RedisSettings
from hfrisk.stack.kafka import KafkaBroker, KafkaListenerSecurity
from hfrisk.stack.redis_server import RedisServer, RedisTLS, RedisUser
from tests.integration.service_required import serve

from tests.security.certs import CertFiles, make_pki

KAFKA_USER = "hfrisk-worker"
REDIS_USER = "hfrisk-worker"
REDIS_PREFIX = "hfrisk"


@dataclass(frozen=True)
class Secured:
    """A started server and the settings a client of it uses (secrets in 0600 files)."""

    server: KafkaBroker | RedisServer
    password: str
    password_file: Path


def _secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.touch(mode=0o600)
    path.write_text(value + "\n")  # as `echo` and most secret stores leave it
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> CertFiles:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("secrets")
    folder.chmod(0o700)
    return folder


@pytest.fixture(scope="session")
def secure_kafka(pki, secrets_dir, tmp_path_factory) -> Iterator[Secured]:
    """Kafka with one SASL_SSL (SCRAM-SHA-512) client listener; user ``hfrisk-worker``."""
    password = secrets.token_urlsafe(24)
    security = KafkaListenerSecurity(pki.certfile, pki.keyfile, pki.cafile, users={KAFKA_USER: password})
    for broker in serve("Kafka broker", lambda: KafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), security=security)):
        yield Secured(broker, password, _secret_file(secrets_dir, "kafka-password", password))


@pytest.fixture(scope="session")
def secure_redis(pki, secrets_dir, tmp_path_factory) -> Iterator[Secured]:
    """Redis on a TLS-only port with ACLs: the default user off, ``hfrisk-worker`` on ``hfrisk:*``."""
    password = secrets.token_urlsafe(24)
    users = [RedisUser(REDIS_USER, password, key_patterns=(f"{REDIS_PREFIX}:*",))]
    tls = RedisTLS(pki.certfile, pki.keyfile, pki.cafile)
    for server in serve("redis-server", lambda: RedisServer(tmp_path_factory.mktemp("redis-tls"), users=users, tls=tls)):
        yield Secured(server, password, _secret_file(secrets_dir, "redis-password", password))


def kafka_client_settings(secured: Secured, pki: CertFiles, **changes) -> KafkaSettings:
    """What a worker would be configured with: SASL_SSL, the CA, the password file."""
    fields = dict(
        bootstrap_servers=secured.server.bootstrap_servers, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", username=KAFKA_USER, password_file=secured.password_file,
        ssl_cafile=pki.cafile,
    )
    return KafkaSettings(**{**fields, **changes})


def redis_client_settings(secured: Secured, pki: CertFiles, **changes) -> RedisSettings:
    fields = dict(url=secured.server.url, key_prefix=REDIS_PREFIX, username=REDIS_USER,
                  password_file=secured.password_file, ssl_ca_certs=pki.cafile)
    return RedisSettings(**{**fields, **changes})
