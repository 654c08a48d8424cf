"""The foundation every other package stands on: typed settings, structured logs, secrets and TLS clients,
patient pseudonyms. Imports nothing else of hfrisk.

Names are imported on first use, so ``from hfrisk.core.logs import get_logger`` does not load the Redis and
Kafka clients that ``security`` needs."""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it
_EXPORTS = {
    "Settings": "config",
    "get_settings": "config",
    "PathSettings": "config",
    "KafkaSettings": "config",
    "RedisSettings": "config",
    "TritonSettings": "config",
    "PrometheusSettings": "config",
    "StreamSettings": "config",
    "LogSettings": "config",
    "PseudonymSettings": "config",
    "configure_logging": "logs",
    "get_logger": "logs",
    "SecretError": "security",
    "faust_broker_options": "security",
    "kafka_client_kwargs": "security",
    "kafka_ssl_context": "security",
    "read_secret": "security",
    "redis_client": "security",
    "redis_client_kwargs": "security",
    "redis_url": "security",
    "MIN_KEY_BYTES": "pseudonym",
    "Pseudonymiser": "pseudonym",
    "pseudonym_map": "pseudonym",
    "pseudonymiser_from_settings": "pseudonym",
    "Backoff": "retries",
    "retrying": "retries",
    "wait_until": "retries",
    "lazy_exports": "lazy",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
