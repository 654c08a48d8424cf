"""Saved window buffers in Redis: what a restarted worker, or a partition's next owner, resumes from.

``RedisKeys(prefix).buffer(patient_id)`` (a Redis string, TTL ``redis.patient_ttl_s``; the key
schema is :mod:`hfrisk.stream.sinks.keys`) holds :meth:`~hfrisk.stream.windowing.PatientBuffer.to_bytes`.
The worker writes it only at a checkpoint (docs/stream-worker.md, "Saved buffers").
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from hfrisk.stream.sinks.keys import RedisKeys

__all__ = ["BufferStore"]


class BufferStore:
    """Saved window buffers in Redis: ``RedisKeys(prefix).buffer(patient_id)`` -> ``PatientBuffer.to_bytes()``."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int):
        self.client = client
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.ttl_s = ttl_s

    def key(self, patient_id: str) -> str:
        return self.keys.buffer(patient_id)

    def load_many(self, patient_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(patient_ids)
        if not ids:
            return {}
        values = self.client.mget([self.key(pid) for pid in ids])
        return {pid: value for pid, value in zip(ids, values) if value is not None}

    def save_many(self, states: dict[str, bytes]) -> None:
        # One round trip, but no MULTI: Redis 7 builds one EXEC's append-only-file entry in a buffer
        # that grows 1 MB at a time, so one EXEC of a checkpoint's tens of MB cost it ~5 ns of CPU
        # per byte and blocked every client ~0.2 s (bench/bench_checkpoint_store.py). Each key stands
        # alone: a save cut short leaves each patient's buffer old or new, both of which a restart
        # resumes from (docs/stream-worker.md, "Saved buffers").
        with self.client.pipeline(transaction=False) as pipe:
            for pid, state in states.items():
                # As a memoryview, redis-py sends the ~190 kB as it is; as bytes, its hiredis packer
                # copies each into the command first (129 against 81 µs of CPU a patient).
                pipe.set(self.key(pid), memoryview(state), ex=self.ttl_s)
            pipe.execute()
