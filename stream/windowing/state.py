"""What a :class:`~hfrisk.stream.windowing.buffer.PatientBuffer` holds and saves: its waiting chunks
and counters (plain dataclasses, cheap per chunk) and :class:`BufferState`, the pydantic model of
the whole state that the worker stores in Redis and restores after a restart. Its two stored forms
(:mod:`~hfrisk.stream.windowing.stored`: binary, ``STATE_VERSION``; JSON, ``JSON_STATE_VERSION``)
and why they must not drift: docs/windowing.md.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "ChunkLike",
    "BufferedChunk",
    "BufferStats",
    "BufferState",
    "STATE_VERSION",
    "JSON_STATE_VERSION",
    "encode_array",
    "decode_array",
]

# The binary form that PatientBuffer.to_bytes writes (stored.py).
STATE_VERSION = 2
# The JSON form, arrays in base64: what to_dict gives, and what workers before version 2 stored
# (still read: a worker restarted after an upgrade resumes from its predecessor's buffers).
JSON_STATE_VERSION = 1
KNOWN_STATE_VERSIONS = (JSON_STATE_VERSION, STATE_VERSION)


@runtime_checkable
class ChunkLike(Protocol):
    """What the buffer needs of a chunk. :class:`~hfrisk.stream.messages.chunk.EcgChunk` is one.

    If the chunk has ``millivolts()`` (or else ``to_ecg()``) its samples are taken from there
    (physical mV, NaN/inf refused); otherwise
    ``samples`` must already be ``(n_leads, n)`` in mV.
    """

    patient_id: str
    sequence: int
    acquired_at_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    samples: np.ndarray


def encode_array(a: np.ndarray) -> dict:
    """``{"shape": [...], "f4le": base64}``: little-endian float32 whatever the host, bit for bit."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "f4le": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(data: dict) -> np.ndarray:
    raw = base64.b64decode(data["f4le"])
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(data["shape"])


def _payload(info: Any) -> Any:
    """The binary form's :class:`~hfrisk.stream.windowing.stored.ArrayPayload`, when the pydantic
    context holds one (``{"payload": ...}``): arrays then live outside the JSON."""
    context = info.context
    return context.get("payload") if isinstance(context, dict) else None


def _as_array(value: Any, info: ValidationInfo) -> np.ndarray:
    if isinstance(value, np.ndarray):  # a live buffer's array, not a stored one
        return value
    payload = _payload(info)
    if payload is not None:
        return payload.take(value)
    try:
        return decode_array(value)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"expected {{'shape': [...], 'f4le': base64}}, got {type(value).__name__}: {exc}") from None


def _store_array(a: np.ndarray, info: SerializationInfo) -> dict:
    payload = _payload(info)
    return encode_array(a) if payload is None else payload.add(a)


# A float32 array held as numpy; stored in encode_array's form (JSON) or in the binary form's payload.
F4Array = Annotated[np.ndarray, PlainValidator(_as_array), PlainSerializer(_store_array, return_type=dict)]

@dataclass(frozen=True)
class BufferedChunk:
    """A chunk as the buffer keeps it, waiting for an earlier one: samples already in float32 mV.

    A plain dataclass, built once per chunk on the hot path (a pydantic model costs ~5 µs more to
    build); pydantic validates and stores it as part of :class:`BufferState`. Frozen: a snapshot
    and the live buffer share these.
    """

    sequence: int
    start_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    samples: F4Array
    device_id: str = ""

    @property
    def n_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def end_us(self) -> int:
        return self.start_us + round(self.n_samples * 1e6 / self.fs_hz)

    @classmethod
    def from_chunk(cls, chunk: ChunkLike) -> BufferedChunk:
        """``chunk`` in the buffer's form; ``ValueError`` for a bad rate, shape or NaN/inf samples.

        Refused here, before any buffer state changes: a NaN would otherwise surface only when a
        window is cut.
        """
        fs_hz = float(chunk.fs_hz)
        if not math.isfinite(fs_hz) or fs_hz <= 0:
            raise ValueError(f"chunk sampling rate must be > 0 Hz, got {chunk.fs_hz}")
        return cls(
            sequence=int(chunk.sequence),
            start_us=int(chunk.acquired_at_us),
            fs_hz=fs_hz,
            lead_names=tuple(map(str, chunk.lead_names)),
            device_id=str(getattr(chunk, "device_id", "") or ""),
            samples=_millivolts(chunk),
        )


def _millivolts(chunk: Any) -> np.ndarray:
    if hasattr(chunk, "millivolts"):  # an EcgChunk: to_ecg().samples without building the ECG
        return chunk.millivolts()
    if hasattr(chunk, "to_ecg"):
        return chunk.to_ecg().samples  # an ECG refuses NaN/inf when it is built
    samples = np.asarray(chunk.samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[0] != len(chunk.lead_names) or samples.shape[1] == 0:
        raise ValueError(f"chunk samples must be (n_leads={len(chunk.lead_names)}, n>0), got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError(f"chunk {chunk.sequence} of {chunk.patient_id!r} has NaN/inf samples")
    return samples


@dataclass
class BufferStats:
    """Counters of one patient's feed (kept in the state, so they survive restarts).

    A plain dataclass like :class:`BufferedChunk`: counted per chunk, stored by :class:`BufferState`.
    """

    chunks: int = 0  # placed on the grid
    duplicates: int = 0
    late: int = 0  # arrived after being declared lost
    lost_chunks: int = 0  # sequence numbers declared lost
    windows: int = 0
    windows_skipped: int = 0
    segments: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class BufferState(BaseModel):
    """The complete state of a ``PatientBuffer``: its settings, grid, samples, waiting chunks, counters.

    Positions (``filled_end``, ``buf_start``, ``spans``) are sample counts from the segment origin;
    ``buf`` holds samples ``[buf_start, filled_end)``; ``spans`` are ``(sequence, start, end)`` of
    the chunks still in ``buf``; ``lost`` the ``[first, stop)`` sequence ranges declared lost.
    """

    # inf (reorder_s=inf: never declare a chunk lost) is stored as JSON's Infinity, as json.dumps always did.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    state_version: int
    patient_id: str
    window_s: float
    hop_s: float
    reorder_s: float
    time_tolerance_s: float
    max_pending: int
    segment: int
    origin_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    device_id: str
    next_index: int
    next_sequence: int | None
    filled_end: int
    buf_start: int
    buf: F4Array
    spans: list[tuple[int, int, int]]
    last_start_us: int
    pending: list[BufferedChunk]
    lost: list[tuple[int, int]]
    closed: bool
    stats: BufferStats

    @field_validator("state_version", mode="before")
    @classmethod
    def _known_version(cls, version: Any) -> Any:
        # Which version goes with which form is checked where the form is read (stored.py).
        if version not in KNOWN_STATE_VERSIONS:
            raise ValueError(f"window buffer state version {version!r}, expected one of {KNOWN_STATE_VERSIONS}")
        return version

    def to_dict(self) -> dict:
        """The JSON form (``JSON_STATE_VERSION``): tuples as lists, arrays as :func:`encode_array` dicts."""
        return self.model_dump(mode="json") | {"state_version": JSON_STATE_VERSION}
