"""The worker's acknowledgement ledger: what the next checkpoint must save and acknowledge.

A message is acknowledged only at a checkpoint, after its batch is written and published and the
buffers holding its samples are saved; messages are acknowledged in the order they were consumed
and all at once, so that Faust never commits past an unacknowledged one (docs/stream-worker.md,
"At-least-once, and why it holds").
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

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
        # When each patient's buffer last took a chunk, on the worker's clock; ``now`` is set once
        # a batch (a clock read per chunk would cost more than the entry).
        self.touched_at: dict[str, float] = {}
        self.now = time.monotonic()

    @property
    def has_work(self) -> bool:
        return bool(self.pending or self.dirty)

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self.last_at >= interval_s

    def touched(self, patient_id: str, record: ChunkRecord) -> None:
        """``record``'s chunk went into ``patient_id``'s buffer: save that buffer at the next checkpoint."""
        self.dirty.add(patient_id)
        self.partition_of[patient_id] = (record.topic, record.partition)
        self.touched_at[patient_id] = self.now

    def processed(self, records: Iterable[ChunkRecord]) -> None:
        """Their batch is written and published: acknowledge them at the next checkpoint."""
        for record in records:
            self.pending.append(record)
            tp = (record.topic, record.partition)
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), record.offset + 1)

    def take(self, buffers: Mapping[str, PatientBuffer]) -> tuple[dict[str, PatientBuffer], list[ChunkRecord]]:
        """Start a checkpoint: the changed ones of ``buffers`` (to save) and every pending message
        (to acknowledge, in order, once they are saved); both are forgotten here."""
        changed = {pid: buffers[pid] for pid in self.dirty if pid in buffers}
        pending, self.pending = self.pending, []
        self.dirty.clear()
        self.last_at = time.monotonic()
        return changed, pending

    def idle(self, idle_s: float, now: float, saving: Iterable[str]) -> list[str]:
        """Patients without a chunk for more than ``idle_s`` (before ``now``) whose buffers have
        nothing unsaved: neither changed since the last checkpoint taken nor in ``saving`` (the one
        being taken). Call after the last checkpoint's save has succeeded."""
        cutoff = now - idle_s
        saving = set(saving)
        return [pid for pid, at in self.touched_at.items()
                if at < cutoff and pid not in self.dirty and pid not in saving]

    def drop(self, patient_ids: Iterable[str]) -> None:
        """Forget these patients (their buffers left the worker); their messages stay pending."""
        for pid in patient_ids:
            self.dirty.discard(pid)
            self.partition_of.pop(pid, None)
            self.touched_at.pop(pid, None)

    def forget(self, partitions: set[TopicPartition]) -> list[str]:
        """The partitions went to another worker: drop their messages and patients; returns those patients."""
        dropped = [pid for pid, tp in self.partition_of.items() if tp in partitions]
        self.drop(dropped)
        self.pending = [r for r in self.pending if (r.topic, r.partition) not in partitions]
        for tp in partitions:
            self.next_offset.pop(tp, None)
        return dropped

    def clear(self) -> None:
        """Forget every unacknowledged message and change: they will never be saved or acknowledged."""
        self.pending.clear()
        self.dirty.clear()
