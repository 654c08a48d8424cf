"""The chunk message's bytes: :func:`encode_chunk` writes the 2-byte header (magic ``0xEC``, schema
version) and the Avro record (``fastavro`` schemaless); :func:`decode_chunk` reads it back as an
:class:`~hfrisk.stream.messages.chunk.EcgChunk`, refusing anything unusable with the reason the
worker dead-letters it under. Layout: docs/message-schema.md."""

from __future__ import annotations

import io

import fastavro
import numpy as np

from hfrisk.model.contract.card import WindowSpec
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.stream.messages.chunk import EcgChunk
from hfrisk.stream.messages.schema import (
    HEADER,
    HEADER_BYTES,
    MAGIC,
    SAMPLE_DTYPES,
    SCHEMA,
    SCHEMA_VERSION,
    WRITER_SCHEMAS,
)
from hfrisk.stream.messages.validation import bad_message, validate_chunk

__all__ = ["encode_chunk", "decode_chunk"]


def _max_bytes(max_bytes: int | None) -> int:
    if max_bytes is not None:
        return max_bytes
    from hfrisk.core.config import get_settings  # settings only when no limit is given: keeps tests env-free

    return get_settings().kafka.max_message_bytes


def encode_chunk(chunk: EcgChunk, *, max_bytes: int | None = None, window: WindowSpec | None = None) -> bytes:
    """The message bytes of ``chunk``: header + Avro body. Refuses what decode would refuse.

    ``max_bytes`` defaults to ``KafkaSettings.max_message_bytes``; a bigger message raises
    ``OVERSIZED`` (send shorter chunks).
    """
    validate_chunk(chunk, window=window)
    record = {
        "patient_id": chunk.patient_id,
        "device_id": chunk.device_id,
        "sequence": int(chunk.sequence),
        "acquired_at_us": int(chunk.acquired_at_us),
        "fs_hz": chunk.fs_hz,
        "lead_names": list(chunk.lead_names),
        "units": list(chunk.units),
        "gains": list(chunk.gains),
        "baselines": list(chunk.baselines),
        "sample_dtype": chunk.sample_dtype,
        "n_samples": chunk.n_samples,
        # C order of a (leads, n) array is lead-major.
        "samples": np.ascontiguousarray(chunk.samples, dtype=SAMPLE_DTYPES[chunk.sample_dtype]).tobytes(),
        "source": chunk.source,
    }
    out = io.BytesIO()
    out.write(HEADER)
    fastavro.schemaless_writer(out, SCHEMA, record)
    data = out.getvalue()
    limit = _max_bytes(max_bytes)
    if len(data) > limit:
        raise ECGInputError(
            InputErrorReason.OVERSIZED,
            f"chunk encodes to {len(data)} bytes, above the {limit}-byte message limit; send shorter chunks",
        )
    return data


def decode_chunk(data: bytes, *, max_bytes: int | None = None, window: WindowSpec | None = None) -> EcgChunk:
    """The :class:`EcgChunk` in message ``data``; ``ECGInputError`` for anything unusable.

    ``samples`` of the result is a read-only view on ``data`` (no copy).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_message(f"message value must be bytes, got {type(data).__name__}")
    limit = _max_bytes(max_bytes)
    if len(data) > limit:
        raise ECGInputError(InputErrorReason.OVERSIZED, f"message of {len(data)} bytes is above the {limit}-byte limit")
    if len(data) < HEADER_BYTES or data[0] != MAGIC:
        head = bytes(data[:HEADER_BYTES]).hex() or "empty"
        raise bad_message(f"not an ECG chunk: header {head}, expected magic {MAGIC:02x} and a schema version")
    version = data[1]
    writer = WRITER_SCHEMAS.get(version)
    if writer is None:
        raise bad_message(f"unknown ECG chunk schema version {version}; this build reads {sorted(WRITER_SCHEMAS)}")
    body = io.BytesIO(data)
    body.seek(HEADER_BYTES)
    try:
        record = fastavro.schemaless_reader(body, writer, SCHEMA if version != SCHEMA_VERSION else None)
    except Exception as exc:  # EOFError on truncation, UnicodeDecodeError, IndexError on a bad enum, ...
        raise bad_message(f"undecodable ECG chunk (schema version {version}): {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(data):
        raise bad_message(f"{len(data) - body.tell()} bytes after the end of the ECG chunk record")

    n_leads, n_samples = len(record["lead_names"]), record["n_samples"]
    dtype = SAMPLE_DTYPES[record["sample_dtype"]]
    if n_leads == 0 or n_samples <= 0:
        raise bad_message(f"chunk has {n_leads} leads and {n_samples} samples per lead; both must be > 0")
    expected = n_leads * n_samples * dtype.itemsize
    if len(record["samples"]) != expected:
        raise bad_message(
            f"{len(record['samples'])} sample bytes, expected {n_leads} leads x {n_samples} samples x "
            f"{dtype.itemsize} bytes = {expected}"
        )
    chunk = EcgChunk.from_decoded(
        patient_id=record["patient_id"],
        device_id=record["device_id"],
        sequence=record["sequence"],
        acquired_at_us=record["acquired_at_us"],
        fs_hz=record["fs_hz"],
        lead_names=record["lead_names"],
        samples=np.frombuffer(record["samples"], dtype=dtype).reshape(n_leads, n_samples),
        units=record["units"],
        gains=record["gains"],
        baselines=record["baselines"],
        source=record["source"],
        schema_version=version,
    )
    return validate_chunk(chunk, window=window)
