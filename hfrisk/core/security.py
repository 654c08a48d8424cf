"""The one place that turns settings into authenticated, encrypted client connections.

Every Kafka and Redis client in hfrisk is built from these functions, so that a deployment that
sets ``HFRISK_KAFKA__SECURITY_PROTOCOL=SASL_SSL`` or a ``rediss://`` URL secures all of them at
once (docs/security.md lists the settings):

* :func:`kafka_client_kwargs`: keyword arguments for kafka-python's producer, consumer and admin;
* :func:`faust_broker_options`: ``broker_credentials`` for a Faust app (aiokafka underneath);
* :func:`redis_client_kwargs` / :func:`redis_client`: a redis-py client from ``RedisSettings``.

Secrets are read here and only here, at the moment a client is made: a ``*_file`` setting is
read afresh each time (a rotated secret is picked up by the next client), and the values are
passed straight to the client library, never logged or stored on a settings object.

Example::

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **kafka_client_kwargs(kafka))
    client = redis_client(get_settings().redis)
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from hfrisk.core.config import KafkaSettings, RedisSettings

__all__ = [
    "SecretError",
    "faust_broker_options",
    "kafka_client_kwargs",
    "kafka_ssl_context",
    "read_secret",
    "redis_client",
    "redis_client_kwargs",
    "redis_url",
]


class SecretError(RuntimeError):
    """A secret that the settings name cannot be had (missing or empty file)."""


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> str | None:
    """The secret from ``value`` or, if a file is named, from the file (one trailing newline
    stripped, as ``echo`` and Kubernetes secrets leave one). ``None`` if neither is set."""
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        text = Path(file).read_text()
    except OSError as err:
        # The path is not secret; its content is, so only the path and the OS error are shown.
        raise SecretError(f"cannot read {what} from {file}: {err.strerror}") from None
    secret = text[:-1] if text.endswith("\n") else text
    if not secret:
        raise SecretError(f"{what} file {file} is empty")
    return secret


# -- Kafka ------------------------------------------------------------------------------------


def _uses_ssl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _kafka_password(kafka: KafkaSettings) -> str:
    password = read_secret(kafka.password, kafka.password_file, "kafka password")
    if password is None:
        raise SecretError(
            f"kafka.security_protocol={kafka.security_protocol} needs HFRISK_KAFKA__PASSWORD or HFRISK_KAFKA__PASSWORD_FILE"
        )
    return password


def kafka_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """A client TLS context (the CA file, or the system's CAs; hostname checks as configured),
    or ``None`` when the protocol does not use TLS."""
    if not _uses_ssl(kafka):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile))
    return context


def kafka_client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments (producer, consumer, admin) for the configured security.

    Empty for PLAINTEXT, so the default path passes nothing new to the clients.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if _uses_ssl(kafka):
        kwargs["ssl_context"] = kafka_ssl_context(kafka)
    if _uses_sasl(kafka):
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.username,
            sasl_plain_password=_kafka_password(kafka),
        )
    return kwargs


def faust_broker_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Faust app options that carry the security settings to its aiokafka clients.

    Empty for PLAINTEXT. aiokafka takes TLS only as an ``ssl.SSLContext``, which Faust passes on.
    """
    import faust

    if kafka.security_protocol == "PLAINTEXT":
        return {}
    context = kafka_ssl_context(kafka)
    if _uses_sasl(kafka):
        credentials = faust.SASLCredentials(
            username=kafka.username, password=_kafka_password(kafka), ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    else:
        credentials = faust.SSLCredentials(context)
    return {"broker_credentials": credentials}


# -- Redis ------------------------------------------------------------------------------------


def redis_client_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """redis-py keyword arguments for ``Redis.from_url(redis_url(settings), ...)``: ACL
    credentials and the TLS options (CA, client certificate, hostname check).

    Empty for the default (no user, no TLS).
    """
    kwargs: dict[str, Any] = {}
    password = read_secret(settings.password, settings.password_file, "redis password")
    if settings.username:
        kwargs["username"] = settings.username
    if password is not None:
        kwargs["password"] = password
    if settings.tls:
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        kwargs["ssl_cert_reqs"] = "required"
        if settings.ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(settings.ssl_ca_certs)
        if settings.ssl_certfile is not None:
            kwargs.update(ssl_certfile=str(settings.ssl_certfile), ssl_keyfile=str(settings.ssl_keyfile))
    return kwargs


def redis_url(settings: RedisSettings, url: str | None = None) -> str:
    """``url`` (default ``settings.url``) with the ``rediss`` scheme when TLS is configured: redis-py
    picks its TLS connection class from the scheme."""
    url = url or settings.url
    if settings.tls and url.startswith("redis://"):
        url = "rediss://" + url.removeprefix("redis://")
    return url


def redis_client(settings: RedisSettings, url: str | None = None, **overrides: Any) -> redis.Redis:
    """A redis-py client for ``url`` (default ``settings.url``) with the configured credentials and
    TLS; ``overrides`` (``decode_responses``, timeouts) pass through."""
    return redis.Redis.from_url(redis_url(settings, url), **{**redis_client_kwargs(settings), **overrides})
