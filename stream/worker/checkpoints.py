"""The worker's acknowledgement ledger: what the next checkpoint must save and acknowledge.

A message is acknowledged only at a checkpoint, after its batch is written and published and the
buffers holding its samples are saved; messages are acknowledged in the order they were consumed
and all at once, so that Faust never commits past an unacknowledged one (docs/stream-worker.md,
"At-least-once, and why it holds").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from hfrisk.stream.windowing import PatientBuffer
from hfrisk.stream.worker.records import ChunkRecord

__all__ = ["Checkpoints"]

TopicPartition = tuple[str, int]


class Checkpoints:
    """Messages processed but not acknowledged, patients whose buffers changed since the last
    checkpoint, and where each partition's processing has got to. Not thread-safe: the worker
    calls it from its event loop, under its lock."""

    def __init__(self) -> None:
        self.pending: list[ChunkRecord] = []
        self.dirty: set[str] = set()
        self.partition_of: dict[str, TopicPartition] = {}
        self.next_offset: dict[TopicPartition, int] = {}
        self.last_at = time.monotonic()

    @property
    def has_work(self) -> bool:
        return bool(self.pending or self.dirty)

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self.last_at >= interval_s

    def touched(self, patient_id: str, record: ChunkRecord) -> None:
        """``record``'s chunk went into ``patient_id``'s buffer: save that buffer at the next checkpoint."""
        self.dirty.add(patient_id)
        self.partition_of[patient_id] = (record.topic, record.partition)

    def processed(self, records: Iterable[ChunkRecord]) -> None:
        """Their batch is written and published: acknowledge them at the next checkpoint."""
        for record in records:
            self.pending.append(record)
            tp = (record.topic, record.partition)
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), record.offset + 1)

    async def commit(
        self,
        buffers: Mapping[str, PatientBuffer],
        save: Callable[[dict[str, PatientBuffer]], Awaitable[None]],
    ) -> int:
        """``save`` the changed ones of ``buffers``, then acknowledge every pending message, in
        order; returns how many were acknowledged."""
        changed = {pid: buffers[pid] for pid in self.dirty if pid in buffers}
        if changed:
            await save(changed)
        pending, self.pending = self.pending, []
        self.dirty.clear()
        for record in pending:
            if record.ack is not None:
                await record.ack()
        self.last_at = time.monotonic()
        return len(pending)

    def forget(self, partitions: set[TopicPartition]) -> list[str]:
        """The partitions went to another worker: drop their messages and patients; returns those patients."""
        dropped = [pid for pid, tp in self.partition_of.items() if tp in partitions]
        for pid in dropped:
            self.dirty.discard(pid)
            del self.partition_of[pid]
        self.pending = [r for r in self.pending if (r.topic, r.partition) not in partitions]
        for tp in partitions:
            self.next_offset.pop(tp, None)
        return dropped

    def clear(self) -> None:
        """Forget every unacknowledged message and change: they will never be saved or acknowledged."""
        self.pending.clear()
        self.dirty.clear()
