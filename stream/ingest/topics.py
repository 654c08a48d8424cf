"""The Kafka topics of the stream, their partition counts and retention, and creating them.

Every topic is keyed by patient id and has ``KafkaSettings.partitions`` partitions, so that a
patient's chunks, scores and alerts share a partition number and Faust's tables (which need their
source topics to exist with the app's partition count before a worker starts) line up. Run
:func:`ensure_topics` before starting workers or producers; the broker does not auto-create topics.

Example::

    ensure_topics(get_settings().kafka)   # -> names of the topics it created
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hfrisk.core.config import KafkaSettings, get_settings
from hfrisk.core.logs import get_logger
from hfrisk.core.security import kafka_client_kwargs
from hfrisk.stream.ingest.kafka_admin import create_topics

__all__ = ["TopicSpec", "topic_specs", "ensure_topics"]

log = get_logger(__name__)

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partition count and topic-level configs (Kafka's names, string values)."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    role: str = ""


def topic_specs(settings: KafkaSettings | None = None) -> tuple[TopicSpec, ...]:
    """The stream's topics as configured: ECG chunks, scores, alerts and dead letters."""
    settings = settings or get_settings().kafka
    live = {"retention.ms": str(int(settings.retention_hours * _HOUR_MS))}
    # Topic-level limits travel with the topic, so a broker left at Kafka's ~1 MB default
    # (docker-compose, a managed cluster) still takes the chunks and the dead letters that carry them.
    large = {"max.message.bytes": str(settings.max_message_bytes)}
    dead = {"retention.ms": str(int(settings.dead_letter_retention_hours * _HOUR_MS))}
    specs = (
        TopicSpec(settings.ecg_topic, settings.partitions, {**live, **large}, "ecg chunks"),
        TopicSpec(settings.scores_topic, settings.partitions, dict(live), "scores"),
        TopicSpec(settings.alerts_topic, settings.partitions, dict(live), "alerts"),
        TopicSpec(settings.dead_letter_topic, settings.partitions, {**dead, **large}, "dead letters"),
    )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"the stream's topics must have distinct names, got {names}")
    if settings.partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {settings.partitions}")
    return specs


def ensure_topics(settings: KafkaSettings | None = None, *, timeout_s: float = 30.0) -> list[str]:
    """Create the stream's topics that do not exist yet; return the names created.

    Idempotent. A topic that exists with another partition count raises
    :class:`~hfrisk.stream.ingest.kafka_admin.TopicMismatchError`; an existing topic's configs are left as
    they are (change them with Kafka's tools). Returns once every partition has a leader.
    """
    settings = settings or get_settings().kafka
    created: list[str] = []
    # create_topics applies one config set per call: one call per distinct set.
    groups: dict[tuple, dict[str, int]] = {}
    for spec in topic_specs(settings):
        groups.setdefault(tuple(sorted(spec.configs.items())), {})[spec.name] = spec.partitions
    for configs, topics in groups.items():
        created += create_topics(settings.bootstrap_servers, topics, configs=dict(configs), timeout_s=timeout_s,
                                client_kwargs=kafka_client_kwargs(settings))
    log.info("stream topics ready", bootstrap=settings.bootstrap_servers, created=created)
    return created
