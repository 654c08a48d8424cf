"""Dead letters: what the worker could not use (a message or a window), kept with why on the
dead-letter topic as a plain Kafka record any client can read. The worker never stops for bad
input. Record layout and reason codes: docs/dead-letters.md.

Example::

    letter = DeadLetter.for_message(value, key=key, reason="bad_message", detail="not an ECG chunk",
                                    topic="ecg.chunks", partition=2, offset=17)
    producer.send("ecg.dead-letter", key=letter.key, value=letter.value, headers=letter.headers())
    DeadLetter.from_record(key, value, headers).reason      # "bad_message"
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DeadLetter",
    "HEADER_PREFIX",
    "LAYOUT_VERSION",
    "KEY_MISMATCH",
    "INFERENCE_REJECTED",
    "INTERNAL_ERROR",
    "value_limit",
    "worker_name",
]

HEADER_PREFIX = "hfrisk.dlq."
LAYOUT_VERSION = 1
KEY_MISMATCH = "key_mismatch"
INFERENCE_REJECTED = "inference_rejected"
INTERNAL_ERROR = "internal_error"

# Room left in a record for the key, headers and Kafka's own framing.
_OVERHEAD_BYTES = 16 * 1024


def value_limit(max_message_bytes: int) -> int:
    """The largest original value a dead letter carries whole under ``max_message_bytes``."""
    return max(0, max_message_bytes - _OVERHEAD_BYTES)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record; :meth:`headers`/:attr:`value`/:attr:`key` are what goes to Kafka."""

    reason: str
    detail: str
    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    dead_lettered_at_us: int = 0
    original_size: int = 0
    truncated: bool = False
    kind: str = "chunk"
    patient_id: str = ""
    window_id: str = ""
    sequences: tuple[int, ...] = ()
    worker: str = ""

    @classmethod
    def for_message(
        cls,
        value: bytes,
        *,
        key: bytes | None,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None = None,
        patient_id: str = "",
        max_message_bytes: int | None = None,
    ) -> DeadLetter:
        """A refused message; its value is kept whole unless it would not fit ``max_message_bytes``."""
        value = bytes(value or b"")
        size = len(value)
        limit = value_limit(max_message_bytes) if max_message_bytes is not None else size
        return cls(
            reason=reason,
            detail=detail,
            value=value[:limit],
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            dead_lettered_at_us=time.time_ns() // 1000,
            original_size=size,
            truncated=size > limit,
            patient_id=patient_id,
            worker=worker_name(),
        )

    @classmethod
    def for_window(
        cls,
        *,
        patient_id: str,
        window_id: str,
        sequences: Iterable[int],
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None = None,
    ) -> DeadLetter:
        """A window that could not be scored; keyed by its patient, with an empty value."""
        return cls(
            reason=reason,
            detail=detail,
            value=b"",
            key=patient_id.encode("utf-8"),
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            dead_lettered_at_us=time.time_ns() // 1000,
            kind="window",
            patient_id=patient_id,
            window_id=window_id,
            sequences=tuple(int(s) for s in sequences),
            worker=worker_name(),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers: ``(name, UTF-8 value)`` pairs, empty fields left out."""
        fields: dict[str, str] = {
            "version": str(LAYOUT_VERSION),
            "kind": self.kind,
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "timestamp_ms": "" if self.timestamp_ms is None else str(self.timestamp_ms),
            "dead_lettered_at_us": str(self.dead_lettered_at_us),
            "original_size": str(self.original_size),
            "truncated": "1" if self.truncated else "",
            "patient_id": self.patient_id,
            "window_id": self.window_id,
            "sequences": json.dumps(list(self.sequences)) if self.sequences else "",
            "worker": self.worker,
        }
        return [(HEADER_PREFIX + name, text.encode("utf-8")) for name, text in fields.items() if text]

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | dict | None
    ) -> DeadLetter:
        """Read a dead-letter record back (kafka-python and aiokafka give headers as pairs)."""
        pairs = headers.items() if isinstance(headers, dict) else (headers or [])
        f = {
            name[len(HEADER_PREFIX):]: (raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw))
            for name, raw in pairs
            if name.startswith(HEADER_PREFIX)
        }
        if "reason" not in f:
            raise ValueError("not an hfrisk dead letter: no hfrisk.dlq.reason header")
        return cls(
            reason=f["reason"],
            detail=f.get("detail", ""),
            value=bytes(value or b""),
            key=key,
            topic=f.get("topic", ""),
            partition=int(f.get("partition", -1)),
            offset=int(f.get("offset", -1)),
            timestamp_ms=int(f["timestamp_ms"]) if f.get("timestamp_ms") else None,
            dead_lettered_at_us=int(f.get("dead_lettered_at_us", 0)),
            original_size=int(f.get("original_size", 0)),
            truncated=f.get("truncated") == "1",
            kind=f.get("kind", "chunk"),
            patient_id=f.get("patient_id", ""),
            window_id=f.get("window_id", ""),
            sequences=tuple(json.loads(f["sequences"])) if f.get("sequences") else (),
            worker=f.get("worker", ""),
        )
