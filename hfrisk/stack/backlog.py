"""How many chunk messages the workers have yet to acknowledge, from what Kafka holds.

``hfrisk up`` stops showing the ward once the replay has ended and the workers have drained. A
worker acknowledges a chunk only after the windows it completed are in Redis, and Faust commits
acknowledged offsets only, so the group's committed offsets reaching the topic's end offsets means
every replayed chunk has been handled. Asked of the broker, not of the workers' metrics: it holds
for any number of workers and needs no port of theirs.
"""

from __future__ import annotations

__all__ = ["GroupBacklog"]


class GroupBacklog:
    """The messages of ``topic`` that consumer group ``group`` has not committed, at ``bootstrap``
    (a loopback broker without TLS or logins: the local stack's)."""

    def __init__(self, bootstrap: str, topic: str, group: str, timeout_ms: int = 5000):
        from kafka import KafkaAdminClient, KafkaConsumer

        self.topic, self.group = topic, group
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)

    def remaining(self) -> int | None:
        """Messages not yet committed by the group, or None while it cannot tell: the group has
        committed nothing on a partition that holds messages (it has not started, or is joining)."""
        from kafka import TopicPartition
        from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError

        partitions = [TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic) or ())]
        if not partitions:
            return None
        ends = self._consumer.end_offsets(partitions)
        if not any(ends.values()):
            return 0
        try:
            committed = self._admin.list_group_offsets({self.group: partitions}).get(self.group, {})
        except (CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError):
            return None  # the group has no coordinator yet: it has never committed
        total = 0
        for tp in partitions:
            end = ends[tp]
            done = committed.get(tp)
            if done is None or done.offset < 0:
                if end > 0:
                    return None
                continue
            total += max(0, end - done.offset)
        return total

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()
