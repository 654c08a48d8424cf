"""The ECG chunk record: :class:`EcgChunk`, one message on the ``ecg.chunks`` topic (a short stretch
of one patient's multi-lead ECG, samples as stored on the wire), and :func:`wire_samples`, which
prepares a recording in that form. Fields and units: docs/message-schema.md.

Example::

    ecg = read_ecg("tests/data/ecg/ptbxl/records500/00000/00001_hr")
    wire = wire_samples(ecg)                    # int16 counts at the record's ADC gain
    chunk = EcgChunk.from_wire(wire, 0, 500, patient_id="bed-0", sequence=0,
                               acquired_at_us=1_700_000_000_000_000)
    chunk.to_ecg().samples                      # == ecg.samples[:, :500], bit for bit
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.stream.messages.schema import SCHEMA_VERSION, WIRE_NAME
from hfrisk.stream.messages.validation import bad_message

__all__ = ["EcgChunk", "WireSamples", "wire_samples", "millivolts_from_counts", "message_key", "datetime_to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
        # map() with the builtin: the same values as a generator of str()/float()/int() calls, at a
        # fraction of the cost (every chunk is built once when decoded).
        lead_names = tuple(map(str, self.lead_names))
        n_leads = len(lead_names)
        if samples.dtype.newbyteorder("=") not in (np.dtype(np.int16), np.dtype(np.float32)):
            raise bad_message(f"samples must be int16 (ADC counts) or float32, got {samples.dtype}")
        if samples.ndim != 2 or samples.shape[0] != n_leads:
            raise bad_message(f"samples must be (n_leads={n_leads}, n_samples), got shape {samples.shape}")
        if n_leads == 0 or samples.shape[1] == 0:
            raise bad_message(f"a chunk needs at least one lead and one sample, got shape {samples.shape}")
        # Defaults describe a plain chunk in mV (gain 1, baseline 0).
        units = ("mV",) * n_leads if self.units is None else tuple(self.units)
        gains = (1.0,) * n_leads if self.gains is None else tuple(map(float, self.gains))
        baselines = (0,) * n_leads if self.baselines is None else tuple(map(int, self.baselines))
        for what, values in (("units", units), ("gains", gains), ("baselines", baselines)):
            if len(values) != n_leads:
                raise bad_message(f"{len(values)} {what} for {n_leads} leads {list(lead_names)}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "lead_names", lead_names)
        object.__setattr__(self, "units", tuple(map(str, units)))
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "baselines", baselines)
        object.__setattr__(self, "fs_hz", float(self.fs_hz))

    @classmethod
    def from_decoded(
        cls, *, lead_names: list[str], units: list[str], gains: list[float], baselines: list[int],
        samples: np.ndarray, **fields,
    ) -> EcgChunk:
        """A chunk from a decoded Avro record, whose schema already fixes every field's type and
        whose ``samples`` the decoder shaped ``(len(lead_names), n > 0)`` as int16 or float32: only
        the checks the types do not make (the per-lead lists' lengths) are made again. The
        constructor's normalising costs ~6 µs on each of a worker's chunks."""
        n_leads = len(lead_names)
        for what, values in (("units", units), ("gains", gains), ("baselines", baselines)):
            if len(values) != n_leads:
                raise bad_message(f"{len(values)} {what} for {n_leads} leads {lead_names}")
        chunk = object.__new__(cls)
        chunk.__dict__.update(fields, lead_names=tuple(lead_names), units=tuple(units), gains=tuple(gains),
                              baselines=tuple(baselines), samples=samples)
        return chunk

    def with_patient_id(self, patient_id: str) -> EcgChunk:
        """The same chunk under another id (a pseudonym); the rest is shared, not checked again."""
        chunk = object.__new__(type(self))
        chunk.__dict__.update(self.__dict__, patient_id=patient_id)
        return chunk

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
        return WIRE_NAME[self.samples.dtype.newbyteorder("=")]

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
        """Samples in each lead's own unit, float32: ``(samples - baseline) / gain``.

        Bit for bit what :mod:`hfrisk.model.readers.wfdb_io` reads from the same counts (float64,
        as WFDB computes physical values, then float32). Where that provably gives the same bits,
        the arithmetic is done in float32 instead, at a third of the cost (every chunk goes through
        here): see :func:`_calibration`.
        """
        return _physical(self.samples, _calibration(self.gains, self.baselines))

    def millivolts(self) -> np.ndarray:
        """``to_ecg().samples`` without building the :class:`ECG`. Raises what :meth:`to_ecg` raises
        (the same error, from ``to_ecg`` itself)."""
        return self.millivolts_and_counts()[0]

    def millivolts_and_counts(self) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`millivolts`, and the int16 counts they were computed from when
        :func:`millivolts_from_counts` gives them back bit for bit from those counts, ``gains`` and
        ``baselines`` (int16 samples, an exact calibration, every lead in mV), else ``None``: what a
        window buffer keeps of every chunk, and saves as counts at half the bytes."""
        calibration = _calibration(self.gains, self.baselines)
        mv = _physical(self.samples, calibration)
        scales = _unit_scales(self.units)
        if scales is not None:
            mv *= scales
        # int16 counts through an exact calibration are normal float32 numbers (_Calibration):
        # only other samples, or a scale to mV, can make a NaN or an inf worth scanning for.
        exact_counts = scales is None and calibration.exact and self.samples.dtype == np.int16
        finite = exact_counts or bool(np.isfinite(mv).all())
        if not (math.isfinite(self.fs_hz) and self.fs_hz > 0 and finite):
            return self.to_ecg().samples, None  # refuses it with the ECG's own reason and message
        return mv, (self.samples if exact_counts else None)

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


@dataclass(frozen=True, eq=False)
class _Calibration:
    """One lead list's gains and baselines as arrays ``(n_leads, 1)``: float64 for the reference
    arithmetic, and float32 copies where the float32 arithmetic gives the same bits.

    Why it can: an int16 count minus a baseline of at most ``2**24 - 32768`` is an integer a
    float32 holds exactly, and so is a gain equal to its float32 rounding. A quotient of two
    float32 numbers computed in float64 and rounded to float32 is the correctly rounded float32
    quotient (double rounding is innocuous when the wider format has at least ``2p + 2`` bits,
    53 >= 2 x 24 + 2; S. Figueroa, "When is double rounding innocuous?", SIGNUM 1995). Gains are kept
    within ``2**±100`` so that every quotient stays a normal float32.
    ``tests/stream/test_schema.py`` compares both paths on every int16 value.
    """

    gains: np.ndarray
    baselines: np.ndarray
    # Whether float32 arithmetic reproduces the float64 result for int16 counts.
    exact: bool
    # None: every gain is 1 (every baseline 0), nothing to divide by (subtract); or not exact.
    gains32: np.ndarray | None
    baselines32: np.ndarray | None

    def float32_exact(self, dtype: np.dtype) -> bool:
        # float32 samples are arbitrary reals: only the identity (gain 1, baseline 0) is exact for them.
        return self.exact and (dtype == np.int16 or (self.gains32 is None and self.baselines32 is None))


# Gains whose quotients with counts up to 2**24 stay normal float32 numbers.
_EXACT_GAIN_RANGE = (2.0**-100, 2.0**100)
_EXACT_BASELINE = 2**24 - 32768


# A stream repeats the same calibration and units in every chunk of a patient: the arrays are
# built once per distinct tuple (bounded: a handful of devices per worker).
@lru_cache(maxsize=1024)
def _calibration(gains: tuple[float, ...], baselines: tuple[int, ...]) -> _Calibration:
    g = np.asarray(gains, dtype=np.float64)[:, None]
    b = np.asarray(baselines, dtype=np.float64)[:, None]
    exact = bool(
        np.all((g >= _EXACT_GAIN_RANGE[0]) & (g <= _EXACT_GAIN_RANGE[1]))  # first: no overflow in the cast
        and np.all(g.astype(np.float32) == g)
        and np.all(np.abs(b) <= _EXACT_BASELINE)
    )
    g32 = None if not exact or np.all(g == 1.0) else g.astype(np.float32)
    b32 = None if not exact or np.all(b == 0.0) else b.astype(np.float32)
    for a in (g, b, g32, b32):
        if a is not None:
            a.flags.writeable = False
    return _Calibration(g, b, exact, g32, b32)


def _physical(samples: np.ndarray, calibration: _Calibration) -> np.ndarray:
    """``(samples - baselines) / gains`` in float32, as :meth:`EcgChunk.physical` documents."""
    if calibration.float32_exact(samples.dtype):
        # The cast to float32 inside the first ufunc: the same values as astype, in one pass
        # instead of two. Each numpy call on a chunk releases the GIL, and the worker's other
        # threads may keep it for a while (docs/bench/stream-tuning.md, "2026-12-06, late").
        baselines, gains = calibration.baselines32, calibration.gains32
        if baselines is not None:
            values = np.subtract(samples, baselines, dtype=np.float32)
            if gains is not None:
                values /= gains
            return values
        if gains is not None:
            return np.divide(samples, gains, dtype=np.float32)
        return samples.astype(np.float32)
    values = samples.astype(np.float64)
    values -= calibration.baselines
    values /= calibration.gains
    return values.astype(np.float32)


def millivolts_from_counts(
    counts: np.ndarray, gains: tuple[float, ...], baselines: tuple[int, ...]
) -> np.ndarray:
    """The millivolts of int16 ``counts`` ``(n_leads, n)`` whose leads are in mV and calibrated by
    ``gains`` and ``baselines``: bit for bit what :meth:`EcgChunk.millivolts_and_counts` gave
    with those counts. ``ValueError`` for anything else (another dtype or shape, or a calibration
    that is not exact), which that method never hands out."""
    gains, baselines = tuple(map(float, gains)), tuple(map(int, baselines))
    if counts.dtype != np.int16 or counts.ndim != 2 or counts.shape[0] != len(gains) or len(baselines) != len(gains):
        raise ValueError(f"expected int16 counts of {len(gains)} leads with as many baselines, got "
                         f"{counts.dtype} {counts.shape} and {len(baselines)} baselines")
    calibration = _calibration(gains, baselines)
    if not calibration.exact:
        raise ValueError(f"gains {gains} and baselines {baselines} are not an exact float32 calibration")
    return _physical(counts, calibration)


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
