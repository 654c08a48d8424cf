"""The ECG chunk message: what monitors (and ``hfrisk replay``) put on the ``ecg.chunks`` topic.

One message is a short stretch of a multi-lead ECG from one patient, encoded as a 2-byte header
(magic ``0xEC``, schema version) followed by an Avro record written without a container
(``fastavro`` schemaless), schema in ``ecg_chunk.avsc`` next to this module. Samples travel as raw
little-endian ``int16`` ADC counts (with per-lead gain and baseline, the form monitors and WFDB
files hold them in) or ``float32``; a 1-s 12-lead 500 Hz int16 chunk is about 12.2 kB. The key of
every message is the patient id in UTF-8, so one patient's chunks stay on one partition, in order.
docs/message-schema.md documents every field and the versioning rules.

Both sides check: :func:`encode_chunk` refuses what :func:`decode_chunk` would refuse, and
:func:`decode_chunk` raises :class:`~hfrisk.model.contract.errors.ECGInputError` with a reason the worker
puts on the dead-letter topic (``BAD_MESSAGE``, ``OVERSIZED``, ``NON_FINITE``, ``UNKNOWN_LEAD``,
``DUPLICATE_LEAD``, ``BAD_SAMPLING_RATE``, ``BAD_UNITS``).

Example::

    ecg = read_ecg("tests/data/ecg/ptbxl/records500/00000/00001_hr")
    wire = wire_samples(ecg)                    # int16 counts at the record's ADC gain
    chunk = EcgChunk.from_wire(wire, 0, 500, patient_id="bed-0", sequence=0,
                               acquired_at_us=1_700_000_000_000_000)
    data = encode_chunk(chunk)                  # 12,232 bytes (no device id)
    decode_chunk(data).to_ecg().samples         # == ecg.samples[:, :500], bit for bit
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import fastavro
import numpy as np

from hfrisk.model.contract.card import WindowSpec
from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import normalise_lead_name

__all__ = [
    "EcgChunk",
    "WireSamples",
    "encode_chunk",
    "decode_chunk",
    "validate_chunk",
    "wire_samples",
    "message_key",
    "MAGIC",
    "SCHEMA_VERSION",
    "HEADER_BYTES",
    "SCHEMA_PATH",
    "SAMPLE_DTYPES",
    "load_schema",
    "datetime_to_us",
    "WRITER_SCHEMAS",
]

MAGIC = 0xEC
SCHEMA_PATH = Path(__file__).with_name("ecg_chunk.avsc")
HEADER_BYTES = 2
# Wire name -> numpy dtype. Little-endian whatever the host: the bytes must mean the same on
# every consumer.
SAMPLE_DTYPES: dict[str, np.dtype] = {"INT16": np.dtype("<i2"), "FLOAT32": np.dtype("<f4")}
_WIRE_NAME = {np.dtype(np.int16): "INT16", np.dtype(np.float32): "FLOAT32"}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The acquisition times a datetime can hold (years 1-9999): beyond them to_ecg could not work.
_MIN_US = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_INT32 = (-(2**31), 2**31 - 1)
_INT64_MAX = 2**63 - 1
# A Kafka key is hashed by every partitioner call; ids are short, this only bounds garbage.
_MAX_ID_BYTES = 256


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The Avro schema as a parsed dict, with its ``hfrisk_schema_version``."""
    raw = json.loads(path.read_text())
    return fastavro.parse_schema(raw) | {"hfrisk_schema_version": raw["hfrisk_schema_version"]}


_SCHEMA = load_schema()
SCHEMA_VERSION: int = _SCHEMA["hfrisk_schema_version"]
# Writer schema per version this code can read. A new version adds its file here and keeps the old
# ones: decode resolves an old writer schema to the current one (Avro schema resolution), so
# fields added with a default are filled in for old messages.
WRITER_SCHEMAS: dict[int, dict] = {SCHEMA_VERSION: _SCHEMA}
_HEADER = bytes((MAGIC, SCHEMA_VERSION))


def _bad(message: str) -> ECGInputError:
    return ECGInputError(InputErrorReason.BAD_MESSAGE, message)


@dataclass(frozen=True, eq=False)
class EcgChunk:
    """One message: ``samples`` (n_leads, n_samples) as stored on the wire, int16 or float32.

    Physical value of lead ``i`` in ``units[i]``: ``(samples[i] - baselines[i]) / gains[i]``.
    The constructor checks that the parts fit together (shapes, lengths, dtype); the content
    rules (ids, rate, lead names, finite values) are :func:`validate_chunk`'s, which encode and
    decode both apply.
    """

    patient_id: str
    sequence: int
    acquired_at_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    samples: np.ndarray
    units: tuple[str, ...] | None = None
    gains: tuple[float, ...] | None = None
    baselines: tuple[int, ...] | None = None
    device_id: str = ""
    source: str = ""
    schema_version: int = field(default=SCHEMA_VERSION, compare=False)

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        lead_names = tuple(str(name) for name in self.lead_names)
        n_leads = len(lead_names)
        if samples.dtype.newbyteorder("=") not in (np.dtype(np.int16), np.dtype(np.float32)):
            raise _bad(f"samples must be int16 (ADC counts) or float32, got {samples.dtype}")
        if samples.ndim != 2 or samples.shape[0] != n_leads:
            raise _bad(f"samples must be (n_leads={n_leads}, n_samples), got shape {samples.shape}")
        if n_leads == 0 or samples.shape[1] == 0:
            raise _bad(f"a chunk needs at least one lead and one sample, got shape {samples.shape}")
        # Defaults describe a plain chunk in mV (gain 1, baseline 0).
        units = ("mV",) * n_leads if self.units is None else tuple(self.units)
        gains = (1.0,) * n_leads if self.gains is None else tuple(float(g) for g in self.gains)
        baselines = (0,) * n_leads if self.baselines is None else tuple(int(b) for b in self.baselines)
        for what, values in (("units", units), ("gains", gains), ("baselines", baselines)):
            if len(values) != n_leads:
                raise _bad(f"{len(values)} {what} for {n_leads} leads {list(lead_names)}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "lead_names", lead_names)
        object.__setattr__(self, "units", tuple(str(u) for u in units))
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "baselines", baselines)
        object.__setattr__(self, "fs_hz", float(self.fs_hz))

    def __eq__(self, other: object) -> bool:
        """Same fields and the same sample values of the same dtype (schema version aside)."""
        if not isinstance(other, EcgChunk):
            return NotImplemented
        return (
            _fields(self) == _fields(other)
            and self.sample_dtype == other.sample_dtype
            and np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # mutable-looking numpy payload: not a dict key

    @property
    def n_leads(self) -> int:
        return self.samples.shape[0]

    @property
    def n_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def sample_dtype(self) -> str:
        """``"INT16"`` or ``"FLOAT32"``: the wire name of the sample type."""
        return _WIRE_NAME[self.samples.dtype.newbyteorder("=")]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz

    @property
    def acquired_at(self) -> datetime:
        """Acquisition time of the first sample (UTC)."""
        return _EPOCH + timedelta(microseconds=self.acquired_at_us)

    @property
    def end_us(self) -> int:
        """Acquisition time just after the last sample: where the stream's next chunk starts."""
        return self.acquired_at_us + round(self.n_samples * 1e6 / self.fs_hz)

    @property
    def key(self) -> bytes:
        """The Kafka message key: the patient id in UTF-8."""
        return message_key(self.patient_id)

    def physical(self) -> np.ndarray:
        """Samples in each lead's own unit, float32: ``(samples - baseline) / gain``."""
        gains, baselines = _calibration(self.gains, self.baselines)
        # float64 first, as WFDB computes physical values, so the float32 result is bit-for-bit
        # what hfrisk.model.readers.wfdb_io reads from the same counts.
        return ((self.samples.astype(np.float64) - baselines) / gains).astype(np.float32)

    def to_ecg(self) -> ECG:
        """The chunk as an :class:`ECG` in millivolts, with its stream position in ``metadata``."""
        # Multiplying by a float32 scale is what to_millivolts does, so a WFDB record in uV reads
        # the same from a chunk as from its file.
        mv = self.physical()
        scales = _unit_scales(self.units)
        if scales is not None:  # all-mV chunks (the usual case) skip a multiplication by 1
            mv *= scales
        return ECG(
            samples=mv,
            fs_hz=self.fs_hz,
            lead_names=self.lead_names,
            units="mV",
            patient_id=self.patient_id,
            device_id=self.device_id,
            acquired_at=self.acquired_at,
            source=self.source,
            metadata={
                "format": "ecg_chunk",
                "sequence": self.sequence,
                "acquired_at_us": self.acquired_at_us,
                "sample_dtype": self.sample_dtype,
                "schema_version": self.schema_version,
            },
        )

    @classmethod
    def from_ecg(
        cls, ecg: ECG, *, patient_id: str | None = None, sequence: int = 0, acquired_at_us: int | None = None
    ) -> EcgChunk:
        """A float32 chunk holding all of ``ecg`` (in its own units, gain 1).

        ``acquired_at_us`` defaults to ``ecg.acquired_at`` (naive times are taken as UTC).
        """
        if acquired_at_us is None:
            if ecg.acquired_at is None:
                raise ValueError("ecg has no acquired_at; pass acquired_at_us")
            acquired_at_us = datetime_to_us(ecg.acquired_at)
        return cls(
            patient_id=ecg.patient_id if patient_id is None else patient_id,
            device_id=ecg.device_id,
            sequence=sequence,
            acquired_at_us=acquired_at_us,
            fs_hz=ecg.fs_hz,
            lead_names=ecg.lead_names,
            samples=ecg.samples.astype(np.float32, copy=False),
            units=(ecg.units,) * ecg.n_leads,
            source=ecg.source,
        )

    @classmethod
    def from_wire(
        cls,
        wire: WireSamples,
        start: int,
        stop: int,
        *,
        patient_id: str,
        sequence: int,
        acquired_at_us: int,
        device_id: str = "",
        source: str | None = None,
    ) -> EcgChunk:
        """The chunk of samples ``start:stop`` of a recording prepared by :func:`wire_samples`."""
        return cls(
            patient_id=patient_id,
            device_id=device_id,
            sequence=sequence,
            acquired_at_us=acquired_at_us,
            fs_hz=wire.fs_hz,
            lead_names=wire.lead_names,
            samples=wire.samples[:, start:stop],
            units=wire.units,
            gains=wire.gains,
            baselines=wire.baselines,
            source=wire.source if source is None else source,
        )


# A stream repeats the same calibration and units in every chunk of a patient: the arrays are
# built once per distinct tuple (bounded: a handful of devices per worker).
@lru_cache(maxsize=1024)
def _calibration(gains: tuple[float, ...], baselines: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gains, dtype=np.float64)[:, None]
    b = np.asarray(baselines, dtype=np.float64)[:, None]
    g.flags.writeable = b.flags.writeable = False
    return g, b


@lru_cache(maxsize=256)
def _unit_scales(units: tuple[str, ...]) -> np.ndarray | None:
    """float32 factors to mV, ``(n_leads, 1)``; ``None`` when every lead is already in mV."""
    scales = []
    for unit in units:
        scale = UNIT_SCALE_TO_MV.get(unit.strip().lower())
        if scale is None:
            raise ECGInputError(InputErrorReason.BAD_UNITS, f"unknown physical unit {unit!r}")
        scales.append(scale)
    if all(scale == 1.0 for scale in scales):
        return None
    out = np.asarray(scales, dtype=np.float32)[:, None]
    out.flags.writeable = False
    return out


def _fields(chunk: EcgChunk) -> tuple:
    return (
        chunk.patient_id, chunk.device_id, chunk.sequence, chunk.acquired_at_us, chunk.fs_hz,
        chunk.lead_names, chunk.units, chunk.gains, chunk.baselines, chunk.source,
    )


@dataclass(frozen=True)
class WireSamples:
    """A whole recording in the form chunks carry it: int16 counts with gains, or float32."""

    samples: np.ndarray
    fs_hz: float
    lead_names: tuple[str, ...]
    units: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[int, ...]
    source: str

    @property
    def n_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def is_int16(self) -> bool:
        return self.samples.dtype == np.int16


def wire_samples(ecg: ECG, *, prefer_int16: bool = True) -> WireSamples:
    """``ecg`` as int16 ADC counts at its record's gain when that is exact, else float32 mV.

    A WFDB reader leaves the ADC gain (counts per original unit) and the original units in
    ``metadata``. Counts are recovered as ``round(samples / unit_scale * gain)`` and kept only if
    decoding them reproduces ``ecg.samples`` bit for bit and they fit in int16: frame-averaged
    multi-rate records, DICOM or filtered signals go as float32 instead.
    """
    name = Path(ecg.source).name if ecg.source else ""
    as_float = WireSamples(
        samples=np.ascontiguousarray(ecg.samples, dtype=np.float32),
        fs_hz=ecg.fs_hz,
        lead_names=ecg.lead_names,
        units=(ecg.units,) * ecg.n_leads,
        gains=(1.0,) * ecg.n_leads,
        baselines=(0,) * ecg.n_leads,
        source=name,
    )
    gains = ecg.metadata.get("adc_gain") or []
    units = ecg.metadata.get("units_original") or []
    if not prefer_int16 or ecg.units != "mV" or len(gains) != ecg.n_leads or len(units) != ecg.n_leads:
        return as_float
    scales = [UNIT_SCALE_TO_MV.get(str(u).strip().lower()) for u in units]
    if any(s is None for s in scales) or not all(math.isfinite(g) and g > 0 for g in gains):
        return as_float
    scale = np.asarray(scales, dtype=np.float64)[:, None]
    gain = np.asarray(gains, dtype=np.float64)[:, None]
    counts = np.rint(ecg.samples.astype(np.float64) / scale * gain)
    if counts.min() < -32768 or counts.max() > 32767:
        return as_float
    wire = replace(
        as_float,
        samples=counts.astype(np.int16),
        units=tuple(str(u) for u in units),
        gains=tuple(float(g) for g in gains),
    )
    probe = EcgChunk(
        patient_id="probe", sequence=0, acquired_at_us=0, fs_hz=wire.fs_hz, lead_names=wire.lead_names,
        samples=wire.samples, units=wire.units, gains=wire.gains, baselines=wire.baselines,
    )
    if not np.array_equal(probe.to_ecg().samples, ecg.samples):
        return as_float
    return wire


def message_key(patient_id: str) -> bytes:
    """Kafka key of a patient's messages (chunks, scores, alerts): the id in UTF-8."""
    return patient_id.encode("utf-8")


def datetime_to_us(at: datetime) -> int:
    """Microseconds since the Unix epoch; a naive ``at`` is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (at - _EPOCH) // timedelta(microseconds=1)


@lru_cache(maxsize=256)
def _check_leads(lead_names: tuple[str, ...]) -> None:
    # Cached: a stream sends the same lead list in every chunk, and the names are regex-parsed.
    seen: dict[str, str] = {}
    for raw in lead_names:
        name, _inverted = normalise_lead_name(raw)  # raises UNKNOWN_LEAD
        if name is None:
            continue  # a known non-lead channel (respiration, Frank leads): passed on, ignored later
        if name in seen:
            raise ECGInputError(
                InputErrorReason.DUPLICATE_LEAD,
                f"lead {name} appears twice (as {seen[name]!r} and {raw!r}) in {list(lead_names)}",
            )
        seen[name] = raw


@lru_cache(maxsize=1024)
def _check_calibration(units: tuple[str, ...], gains: tuple[float, ...], baselines: tuple[int, ...]) -> None:
    # Cached like _check_leads: the same per-lead calibration arrives with every chunk of a device.
    for unit in units:
        if unit.strip().lower() not in UNIT_SCALE_TO_MV:
            raise ECGInputError(InputErrorReason.BAD_UNITS, f"unknown physical unit {unit!r}; expected mV, uV or V")
    if not all(math.isfinite(g) and g > 0 for g in gains):
        raise _bad(f"gains must be finite and > 0, got {list(gains)}")
    if not all(_INT32[0] <= b <= _INT32[1] for b in baselines):
        raise _bad(f"baselines must fit in 32 bits, got {list(baselines)}")


def validate_chunk(chunk: EcgChunk, *, window: WindowSpec | None = None) -> EcgChunk:
    """Check the content rules of a chunk; return it. Raises :class:`ECGInputError`.

    ``window`` bounds the sampling rate (``min_fs_hz``/``max_fs_hz``; default the model card's).
    """
    window = window or _DEFAULT_WINDOW
    for what, value in (("patient_id", chunk.patient_id), ("device_id", chunk.device_id), ("source", chunk.source)):
        try:
            size = len(value.encode("utf-8"))
        except (AttributeError, UnicodeEncodeError):
            raise _bad(f"{what} must be a UTF-8 encodable string, got {value!r}") from None
        if what != "source" and size > _MAX_ID_BYTES:
            raise _bad(f"{what} is {size} UTF-8 bytes; at most {_MAX_ID_BYTES}")
    if not chunk.patient_id.strip():
        raise _bad("patient_id is empty; it is the message key and must name the patient")
    if not 0 <= chunk.sequence <= _INT64_MAX:
        raise _bad(f"sequence must be >= 0, got {chunk.sequence}")
    if not _MIN_US <= chunk.acquired_at_us <= _MAX_US:
        raise _bad(f"acquired_at_us {chunk.acquired_at_us} is outside the years 1-9999")
    if not (math.isfinite(chunk.fs_hz) and window.min_fs_hz <= chunk.fs_hz <= window.max_fs_hz):
        raise ECGInputError(
            InputErrorReason.BAD_SAMPLING_RATE,
            f"sampling rate {chunk.fs_hz} Hz is outside {window.min_fs_hz:g}-{window.max_fs_hz:g} Hz",
        )
    _check_leads(chunk.lead_names)
    _check_calibration(chunk.units, chunk.gains, chunk.baselines)
    if chunk.sample_dtype == "FLOAT32":
        bad = ~np.isfinite(chunk.samples)
        if bad.any():
            leads = [chunk.lead_names[i] for i in np.flatnonzero(bad.any(axis=1))]
            raise ECGInputError(InputErrorReason.NON_FINITE, f"{int(bad.sum())} NaN/inf samples in leads {leads}")
    _check_millivolts_finite(chunk)
    return chunk


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT16_SPAN = 32768  # the largest |count| an int16 holds


def _check_millivolts_finite(chunk: EcgChunk) -> None:
    """Refuse a chunk whose finite wire values overflow float32 on the way to millivolts.

    A tiny gain (1e-300 counts per mV) or float32 volts near 3e38 pass the per-field rules, but
    :meth:`EcgChunk.to_ecg` would turn them into inf and poison every window the chunk joins.
    """
    for i, gain, baseline, scale in _leads_that_may_overflow(
        chunk.sample_dtype, chunk.lead_names, chunk.units, chunk.gains, chunk.baselines
    ):
        _refuse_overflow(chunk.lead_names[i], float(np.abs(chunk.samples[i]).max()) + abs(baseline), gain, scale,
                         chunk.units[i])


@lru_cache(maxsize=1024)
def _leads_that_may_overflow(
    sample_dtype: str, lead_names: tuple[str, ...], units: tuple[str, ...], gains: tuple[float, ...],
    baselines: tuple[int, ...],
) -> tuple[tuple[int, float, int, float], ...]:
    # Cached on the calibration (the same in every chunk of a device), so a normal chunk costs one
    # lookup. int16 is judged on the whole ADC range, without looking at the samples; float32
    # leads are returned for a scan only where scaling can make values bigger than they are.
    suspects = []
    for i, (unit, gain, baseline) in enumerate(zip(units, gains, baselines)):
        scale = UNIT_SCALE_TO_MV[unit.strip().lower()]  # units were checked before
        if sample_dtype == "INT16":
            _refuse_overflow(lead_names[i], float(_INT16_SPAN + abs(baseline)), gain, scale, unit)
        elif not (scale <= 1.0 and gain >= 1.0 and baseline == 0):  # else |value| / gain * scale <= |value|
            suspects.append((i, gain, baseline, scale))
    return tuple(suspects)


def _refuse_overflow(lead: str, peak: float, gain: float, scale: float, unit: str) -> None:
    physical = peak / gain
    if max(physical, physical * scale) > _FLOAT32_MAX:
        raise ECGInputError(
            InputErrorReason.NON_FINITE,
            f"lead {lead}: values up to {peak:g} with gain {gain:g} in {unit!r} overflow float32 "
            f"in millivolts ({physical * scale:.3g} mV)",
        )


_DEFAULT_WINDOW = WindowSpec()


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
    out.write(_HEADER)
    fastavro.schemaless_writer(out, _SCHEMA, record)
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
        raise _bad(f"message value must be bytes, got {type(data).__name__}")
    limit = _max_bytes(max_bytes)
    if len(data) > limit:
        raise ECGInputError(InputErrorReason.OVERSIZED, f"message of {len(data)} bytes is above the {limit}-byte limit")
    if len(data) < HEADER_BYTES or data[0] != MAGIC:
        head = bytes(data[:HEADER_BYTES]).hex() or "empty"
        raise _bad(f"not an ECG chunk: header {head}, expected magic {MAGIC:02x} and a schema version")
    version = data[1]
    writer = WRITER_SCHEMAS.get(version)
    if writer is None:
        raise _bad(f"unknown ECG chunk schema version {version}; this build reads {sorted(WRITER_SCHEMAS)}")
    body = io.BytesIO(data)
    body.seek(HEADER_BYTES)
    try:
        record = fastavro.schemaless_reader(body, writer, _SCHEMA if version != SCHEMA_VERSION else None)
    except Exception as exc:  # EOFError on truncation, UnicodeDecodeError, IndexError on a bad enum, ...
        raise _bad(f"undecodable ECG chunk (schema version {version}): {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(data):
        raise _bad(f"{len(data) - body.tell()} bytes after the end of the ECG chunk record")

    n_leads, n_samples = len(record["lead_names"]), record["n_samples"]
    dtype = SAMPLE_DTYPES[record["sample_dtype"]]
    if n_leads == 0 or n_samples <= 0:
        raise _bad(f"chunk has {n_leads} leads and {n_samples} samples per lead; both must be > 0")
    expected = n_leads * n_samples * dtype.itemsize
    if len(record["samples"]) != expected:
        raise _bad(
            f"{len(record['samples'])} sample bytes, expected {n_leads} leads x {n_samples} samples x "
            f"{dtype.itemsize} bytes = {expected}"
        )
    chunk = EcgChunk(
        patient_id=record["patient_id"],
        device_id=record["device_id"],
        sequence=record["sequence"],
        acquired_at_us=record["acquired_at_us"],
        fs_hz=record["fs_hz"],
        lead_names=tuple(record["lead_names"]),
        samples=np.frombuffer(record["samples"], dtype=dtype).reshape(n_leads, n_samples),
        units=tuple(record["units"]),
        gains=tuple(record["gains"]),
        baselines=tuple(record["baselines"]),
        source=record["source"],
        schema_version=version,
    )
    return validate_chunk(chunk, window=window)
