"""What a :class:`~hfrisk.stream.windowing.buffer.PatientBuffer` holds and saves: its waiting chunks
and counters (plain dataclasses, cheap per chunk) and :class:`BufferState`, the pydantic model of
the whole state that the worker stores in Redis and restores after a restart. Its two stored forms
(:mod:`~hfrisk.stream.windowing.stored`: binary, ``STATE_VERSION``; JSON, ``JSON_STATE_VERSION``)
and why they must not drift: docs/windowing.md.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hfrisk.stream.messages.chunk import millivolts_from_counts

__all__ = [
    "ChunkLike",
    "BufferedChunk",
    "BufferStats",
    "HeldCounts",
    "BufferState",
    "STATE_VERSION",
    "JSON_STATE_VERSION",
    "encode_array",
    "decode_array",
]

# The binary form that PatientBuffer.to_bytes writes (stored.py). Version 3 may hold the held
# samples as int16 counts (HeldCounts); version 2, which workers before it wrote, held float32 only.
STATE_VERSION = 3
BINARY_STATE_VERSIONS = (2, STATE_VERSION)
# The JSON form, arrays in base64: what to_dict gives, and what workers before version 2 stored
# (still read: a worker restarted after an upgrade resumes from its predecessor's buffers).
JSON_STATE_VERSION = 1
KNOWN_STATE_VERSIONS = (JSON_STATE_VERSION, *BINARY_STATE_VERSIONS)


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


# The JSON form's key for an array of each dtype: its little-endian bytes in base64.
_JSON_KEYS = {np.dtype(np.float32): "f4le", np.dtype(np.int16): "i2le"}


def encode_array(a: np.ndarray, dtype: type = np.float32) -> dict:
    """``{"shape": [...], "f4le": base64}`` (``"i2le"`` for int16): little-endian whatever the host,
    bit for bit."""
    a = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"shape": list(a.shape), _JSON_KEYS[np.dtype(dtype)]: base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(data: dict, dtype: type = np.float32) -> np.ndarray:
    dtype = np.dtype(dtype)
    raw = base64.b64decode(data[_JSON_KEYS[dtype]])
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(data["shape"])


def _payload(info: Any) -> Any:
    """The binary form's :class:`~hfrisk.stream.windowing.stored.ArrayPayload`, when the pydantic
    context holds one (``{"payload": ...}``): arrays then live outside the JSON."""
    context = info.context
    return context.get("payload") if isinstance(context, dict) else None


def _array_field(dtype: type) -> Any:
    """An array of ``dtype`` held as numpy; stored in encode_array's form (JSON) or in the binary
    form's payload."""
    dtype = np.dtype(dtype)

    def _as_array(value: Any, info: ValidationInfo) -> np.ndarray:
        if isinstance(value, np.ndarray):  # a live buffer's array, not a stored one
            return value
        payload = _payload(info)
        if payload is not None:
            return payload.take(value, dtype)
        try:
            return decode_array(value, dtype)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"expected {{'shape': [...], '{_JSON_KEYS[dtype]}': base64}}, "
                             f"got {type(value).__name__}: {exc}") from None

    def _store_array(a: np.ndarray, info: SerializationInfo) -> dict:
        payload = _payload(info)
        return encode_array(a, dtype) if payload is None else payload.add(a, dtype)

    return Annotated[np.ndarray, PlainValidator(_as_array), PlainSerializer(_store_array, return_type=dict)]


F4Array = _array_field(np.float32)
I2Array = _array_field(np.int16)


@dataclass(frozen=True)
class HeldCounts:
    """Held samples as the int16 counts they arrived as, with the calibration (every lead in mV)
    that gives them back bit for bit (:func:`millivolts_from_counts`): saved instead of the
    float32 samples, at half the bytes (docs/windowing.md, "Restarts and the saved state")."""

    counts: I2Array
    gains: tuple[float, ...]
    baselines: tuple[int, ...]

    def millivolts(self) -> np.ndarray:
        """The held samples; ``ValueError`` for counts or a calibration no chunk could have given."""
        return millivolts_from_counts(self.counts, self.gains, self.baselines)


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
    # The int16 counts ``samples`` were computed from and their ``(gains, baselines)``, when
    # millivolts_from_counts gives ``samples`` back from them bit for bit; the held signal keeps
    # them to save counts. Not saved with a waiting chunk (rare and small): it is placed as floats.
    counts: Annotated[Any, Field(exclude=True)] = field(default=None, compare=False, repr=False)
    calibration: Annotated[Any, Field(exclude=True)] = field(default=None, compare=False, repr=False)

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
        if hasattr(chunk, "millivolts_and_counts"):  # an EcgChunk
            samples, counts = chunk.millivolts_and_counts()
            if counts is not None and counts.flags.writeable:
                # The held signal keeps counts by reference: a decoded message's are read-only;
                # an array the caller could still write is copied (12 kB).
                counts = counts.copy()
                counts.flags.writeable = False
        else:
            samples, counts = _millivolts(chunk), None
        return cls(
            sequence=int(chunk.sequence),
            start_us=int(chunk.acquired_at_us),
            fs_hz=fs_hz,
            lead_names=tuple(map(str, chunk.lead_names)),
            device_id=str(getattr(chunk, "device_id", "") or ""),
            samples=samples,
            counts=counts,
            calibration=None if counts is None else (chunk.gains, chunk.baselines),
        )


def _millivolts(chunk: Any) -> np.ndarray:
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
    ``buf_counts``, when every held sample arrived as counts of one calibration, gives ``buf`` bit
    for bit: a stored state holds one of the two, and ``buf`` is computed from ``buf_counts``
    when it is read.
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
    buf: F4Array | None = None
    buf_counts: HeldCounts | None = None
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

    @model_validator(mode="after")
    def _held_samples(self) -> BufferState:
        if self.buf is None:
            if self.buf_counts is None:
                raise ValueError("a window buffer state needs buf or buf_counts")
            self.buf = self.buf_counts.millivolts()
        elif self.buf_counts is not None and self.buf_counts.counts.shape != self.buf.shape:
            raise ValueError(f"held counts {self.buf_counts.counts.shape} for held samples {self.buf.shape}")
        return self

    def fields_not_stored(self) -> set[str]:
        """The fields a stored form leaves out: ``buf`` when ``buf_counts`` gives it, else ``buf_counts``."""
        return {"buf"} if self.buf_counts is not None else {"buf_counts"}

    def to_dict(self) -> dict:
        """The JSON form (``JSON_STATE_VERSION``): tuples as lists, arrays as :func:`encode_array` dicts."""
        return self.model_dump(mode="json", exclude=self.fields_not_stored()) | {"state_version": JSON_STATE_VERSION}
