"""Creating Kafka topics with exact partition counts, as a client of any broker.

:func:`create_topics` is idempotent and refuses a topic that exists with another partition count
(:class:`TopicMismatchError`); :func:`admin_client` is the admin client it and the local broker's
readiness probe use. The stream's own topics are in :mod:`hfrisk.stream.ingest.topics`.

Example::

    create_topics("127.0.0.1:9092", {"ecg.chunks": 4})   # -> ["ecg.chunks"] the first time
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient

from hfrisk.core.logs import get_logger
from hfrisk.core.retries import wait_until

__all__ = ["KafkaAdminError", "TOPIC_ALREADY_EXISTS", "TopicMismatchError", "admin_client", "create_topics"]

log = get_logger(__name__)

# Kafka's TOPIC_ALREADY_EXISTS error code: another creator won the race, which is fine.
TOPIC_ALREADY_EXISTS = 36
_POLL_INTERVAL_S = 0.1


class KafkaAdminError(RuntimeError):
    """The broker refused to create a topic, or its partitions got no leader in time."""


class TopicMismatchError(ValueError):
    """A topic exists with a partition count other than the one asked for."""


def create_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    replication: int = 1,
    *,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    client_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Make sure each topic exists with its partition count; return the names it created.

    Idempotent: a topic that already has the asked-for partition count is left alone. One with
    another count raises :class:`TopicMismatchError` (Kafka can only add partitions, and adding
    them would move keys to other partitions, so this is for a person to decide). Returns once
    every partition of every topic has a leader, so producers can use them at once.
    ``client_kwargs``: the admin client's security (:func:`hfrisk.core.security.kafka_client_kwargs`).
    """
    admin = admin_client(bootstrap_servers, timeout_s=timeout_s, client_kwargs=client_kwargs)
    try:
        existing = _partition_counts(admin, list(topics))
        _check_counts(topics, existing)
        missing = [name for name in topics if name not in existing]
        if missing:
            request = {
                name: {"num_partitions": topics[name], "replication_factor": replication, "configs": dict(configs or {})}
                for name in missing
            }
            result = admin.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
            errors = [
                f"{t['name']}: {t.get('error_message') or t['error_code']}"
                for t in result["topics"]
                if t["error_code"] not in (0, TOPIC_ALREADY_EXISTS)
            ]
            if errors:
                raise KafkaAdminError("could not create topics: " + "; ".join(errors))
            log.info("topics created", topics={name: topics[name] for name in missing})
        # Checked again after creating: a concurrent creator may have used other counts.
        _check_counts(topics, _wait_for_leaders(admin, list(topics), timeout_s))
        return missing
    finally:
        admin.close()


def admin_client(bootstrap_servers: str, timeout_s: float, client_kwargs: Mapping[str, Any] | None = None) -> KafkaAdminClient:
    """A kafka-python admin client; ``client_kwargs`` carries the security settings."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="hfrisk-admin",
        request_timeout_ms=int(timeout_s * 1000),
        **dict(client_kwargs or {}),
    )


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists (unknown topics are left out)."""
    counts = {}
    for topic in admin.describe_topics(names):
        if topic.get("error_code", 0) == 0:
            counts[topic["name"]] = len(topic["partitions"])
    return counts


def _check_counts(wanted: Mapping[str, int], existing: Mapping[str, int]) -> None:
    wrong = {name: existing[name] for name in wanted if name in existing and existing[name] != wanted[name]}
    if wrong:
        detail = ", ".join(f"{name} has {wrong[name]} (want {wanted[name]})" for name in wrong)
        raise TopicMismatchError(f"topics exist with other partition counts: {detail}")


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], timeout_s: float) -> dict[str, int]:
    """Partition counts once every partition of ``names`` has a leader (new topics take a moment)."""
    last: dict[str, int] = {}

    def all_led() -> dict[str, int]:
        nonlocal last
        last = _topics_with_leaders(admin, names)
        return last if len(last) == len(names) else {}

    return wait_until(
        all_led, timeout_s, interval_s=_POLL_INTERVAL_S, error=KafkaAdminError,
        what=lambda _: f"topics without leaders after {timeout_s:.0f} s: {sorted(set(names) - set(last))}",
    )


def _topics_with_leaders(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {
        topic["name"]: len(topic["partitions"])
        for topic in admin.describe_topics(names)
        if topic.get("error_code", 0) == 0
        and topic["partitions"]
        and all(p.get("error_code", 0) == 0 and _leader(p) >= 0 for p in topic["partitions"])
    }


def _leader(partition: Mapping) -> int:
    # kafka-python 3 names the field leader_id; 2.x named it leader.
    return partition.get("leader_id", partition.get("leader", -1))
