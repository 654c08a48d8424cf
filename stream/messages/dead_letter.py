"""Dead letters: what the worker could not use, kept on the dead-letter topic with why.

The worker never stops for bad input. A message it cannot use (undecodable bytes, a schema
violation, NaN samples, an unknown lead, an absurd sampling rate, an oversized message, a key that
does not name the chunk's patient) and a window that preprocessing or the model refuses become one
record on ``KafkaSettings.dead_letter_topic`` (``ecg.dead-letter``); the worker then goes on with
the next message.

**Record layout** (a plain Kafka record, no Avro, so any client can read it):

* **key**: for a message, its original key, unchanged (the patient id in UTF-8; absent if the
  original had none). For a window, the patient id the worker knows it by: the pseudonym when
  pseudonymisation is on (docs/security.md), because windows are built after it. The topic has the
  stream's partition count, so a patient's message dead letters share its partition number.
* **value**: the original message bytes, unchanged, so a fixed consumer can re-read them (or they
  can be produced to the chunk topic again). Two exceptions: a value that would not fit the
  dead-letter topic's limit is cut to its first :func:`value_limit` bytes (header
  ``hfrisk.dlq.truncated`` says so and ``hfrisk.dlq.original_size`` keeps the real size); a
  *window* dead letter (``hfrisk.dlq.kind = window``) has an empty value, because a window is not
  one message (its chunks were valid and stay on the chunk topic: ``hfrisk.dlq.sequences`` names
  them).
* **headers** (UTF-8 text, one value each; absent when empty):

  ==============================  ===========================================================
  header                          value
  ==============================  ===========================================================
  ``hfrisk.dlq.version``          ``1``: this layout
  ``hfrisk.dlq.kind``             ``chunk`` (a message) or ``window`` (a window of chunks)
  ``hfrisk.dlq.reason``           reason code (below)
  ``hfrisk.dlq.detail``           human-readable detail (the decoder's or preprocessing's message)
  ``hfrisk.dlq.topic``            topic of the original message
  ``hfrisk.dlq.partition``        its partition (decimal)
  ``hfrisk.dlq.offset``           its offset (decimal); for a window, the chunk that completed it
  ``hfrisk.dlq.timestamp_ms``     its Kafka timestamp (epoch ms), if it had one
  ``hfrisk.dlq.dead_lettered_at_us``  when the worker gave up on it (epoch µs)
  ``hfrisk.dlq.original_size``    length of the original value in bytes
  ``hfrisk.dlq.truncated``        ``1`` when the value was cut to fit
  ``hfrisk.dlq.patient_id``       the patient, when the message could be decoded far enough (the
                                  producer's id for a message, the pseudonym for a window when
                                  pseudonymisation is on)
  ``hfrisk.dlq.window_id``        window dead letters: the window id
  ``hfrisk.dlq.sequences``        window dead letters: its chunks' sequence numbers, JSON list
  ``hfrisk.dlq.worker``           the worker that wrote it (host:pid)
  ==============================  ===========================================================

**Reason codes** are :class:`~hfrisk.model.contract.errors.InputErrorReason` values for input the decoder
or preprocessing refused (``bad_message`` for undecodable bytes and schema violations,
``non_finite``, ``unknown_lead``, ``duplicate_lead``, ``bad_sampling_rate``, ``bad_units``,
``oversized``, ``missing_leads`` …) plus the worker's own: ``key_mismatch`` (the key is not the
chunk's patient id, so the chunk may sit on another patient's partition), ``inference_rejected``
(Triton refused the window's tensor) and ``internal_error`` (a bug: the detail has the exception).
Triton or Redis being *unavailable* is never a reason: the worker waits and retries instead.

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
