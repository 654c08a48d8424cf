"""The foundation every other package stands on: typed settings, structured logs, secrets and TLS clients,
patient pseudonyms. Imports nothing else of hfrisk."""

from hfrisk.core.config import (
    Settings,
    get_settings,
    PathSettings,
    KafkaSettings,
    RedisSettings,
    TritonSettings,
    PrometheusSettings,
    StreamSettings,
    LogSettings,
    PseudonymSettings,
)
from hfrisk.core.logs import (
    configure_logging,
    get_logger,
)
from hfrisk.core.security import (
    SecretError,
    faust_broker_options,
    kafka_client_kwargs,
    kafka_ssl_context,
    read_secret,
    redis_client,
    redis_client_kwargs,
    redis_url,
)
from hfrisk.core.pseudonym import (
    MIN_KEY_BYTES,
    Pseudonymiser,
    pseudonym_map,
    pseudonymiser_from_settings,
)
from hfrisk.core.retries import (
    Backoff,
    retrying,
    wait_until,
)
from hfrisk.core.lazy import (
    lazy_exports,
)

__all__ = [
    "Settings",
    "get_settings",
    "PathSettings",
    "KafkaSettings",
    "RedisSettings",
    "TritonSettings",
    "PrometheusSettings",
    "StreamSettings",
    "LogSettings",
    "PseudonymSettings",
    "configure_logging",
    "get_logger",
    "SecretError",
    "faust_broker_options",
    "kafka_client_kwargs",
    "kafka_ssl_context",
    "read_secret",
    "redis_client",
    "redis_client_kwargs",
    "redis_url",
    "MIN_KEY_BYTES",
    "Pseudonymiser",
    "pseudonym_map",
    "pseudonymiser_from_settings",
    "Backoff",
    "retrying",
    "wait_until",
    "lazy_exports",
]
