"""A chunk message's way into the worker: decoded and checked, or turned into a dead letter.

An undecodable or invalid message, or one whose key is not its patient id, never stops the worker:
it becomes a dead letter carrying its original bytes and the reason
(:mod:`hfrisk.stream.messages.dead_letter`). With pseudonymisation on, the patient id is replaced
here, before anything else sees it (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable

from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.contract.card import WindowSpec
from hfrisk.stream.messages import EcgChunk, decode_chunk, message_key
from hfrisk.stream.messages.dead_letter import INTERNAL_ERROR, KEY_MISMATCH, DeadLetter
from hfrisk.stream.worker.records import BatchReport, ChunkRecord

__all__ = ["decode_record", "refuse"]


def refuse(record: ChunkRecord, report: BatchReport, reason: str, detail: str, *, max_message_bytes: int,
           patient_id: str = "") -> None:
    """Dead-letter the message ``record`` (its original bytes) with ``reason``."""
    report.dead_letters.append(DeadLetter.for_message(
        record.value, key=record.key, reason=reason, detail=detail, topic=record.topic,
        partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp_ms,
        patient_id=patient_id, max_message_bytes=max_message_bytes,
    ))
    report.chunks["dead_letter"] += 1


def decode_record(
    record: ChunkRecord,
    report: BatchReport,
    *,
    window: WindowSpec,
    max_message_bytes: int,
    pseudonymise: Callable[[str], str] | None = None,
) -> EcgChunk | None:
    """The chunk ``record`` carries, or ``None`` once it has been dead-lettered into ``report``."""
    try:
        chunk = decode_chunk(record.value, max_bytes=max_message_bytes, window=window)
    except ECGInputError as err:
        refuse(record, report, err.reason.value, err.detail, max_message_bytes=max_message_bytes)
        return None
    except Exception as exc:  # the decoder promises ECGInputError; anything else is a bug, not a crash
        refuse(record, report, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", max_message_bytes=max_message_bytes)
        return None
    if record.key is None or bytes(record.key) != message_key(chunk.patient_id):
        refuse(record, report, KEY_MISMATCH,
               f"message key {record.key!r} is not the chunk's patient id {chunk.patient_id!r}",
               max_message_bytes=max_message_bytes, patient_id=chunk.patient_id)
        return None
    if pseudonymise is not None:  # from here on only the pseudonym exists (docs/security.md)
        chunk = chunk.with_patient_id(pseudonymise(chunk.patient_id))
    return chunk
