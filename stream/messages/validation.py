"""The content rules of a chunk, checked on both sides: :func:`validate_chunk` runs in
``encode_chunk`` and ``decode_chunk``, so a producer cannot send what the worker would refuse.
Each refusal is an :class:`~hfrisk.model.contract.errors.ECGInputError` whose reason becomes the
dead letter's (docs/message-schema.md, "What a decoder refuses")."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hfrisk.model.contract.card import WindowSpec
from hfrisk.model.contract.ecg import UNIT_SCALE_TO_MV
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import normalise_lead_name

if TYPE_CHECKING:
    from hfrisk.stream.messages.chunk import EcgChunk

__all__ = ["validate_chunk", "bad_message"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The acquisition times a datetime can hold (years 1-9999): beyond them to_ecg could not work.
_MIN_US = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
_INT32 = (-(2**31), 2**31 - 1)
_INT64_MAX = 2**63 - 1
# A Kafka key is hashed by every partitioner call; ids are short, this only bounds garbage.
_MAX_ID_BYTES = 256
_DEFAULT_WINDOW = WindowSpec()
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT16_SPAN = 32768  # the largest |count| an int16 holds


def bad_message(message: str) -> ECGInputError:
    """The error for a message that breaks the format (reason ``BAD_MESSAGE``)."""
    return ECGInputError(InputErrorReason.BAD_MESSAGE, message)


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
        raise bad_message(f"gains must be finite and > 0, got {list(gains)}")
    if not all(_INT32[0] <= b <= _INT32[1] for b in baselines):
        raise bad_message(f"baselines must fit in 32 bits, got {list(baselines)}")


def validate_chunk(chunk: EcgChunk, *, window: WindowSpec | None = None) -> EcgChunk:
    """Check the content rules of a chunk; return it. Raises :class:`ECGInputError`.

    ``window`` bounds the sampling rate (``min_fs_hz``/``max_fs_hz``; default the model card's).
    """
    window = window or _DEFAULT_WINDOW
    for what, value in (("patient_id", chunk.patient_id), ("device_id", chunk.device_id), ("source", chunk.source)):
        try:
            size = len(value.encode("utf-8"))
        except (AttributeError, UnicodeEncodeError):
            raise bad_message(f"{what} must be a UTF-8 encodable string, got {value!r}") from None
        if what != "source" and size > _MAX_ID_BYTES:
            raise bad_message(f"{what} is {size} UTF-8 bytes; at most {_MAX_ID_BYTES}")
    if not chunk.patient_id.strip():
        raise bad_message("patient_id is empty; it is the message key and must name the patient")
    if not 0 <= chunk.sequence <= _INT64_MAX:
        raise bad_message(f"sequence must be >= 0, got {chunk.sequence}")
    if not _MIN_US <= chunk.acquired_at_us <= _MAX_US:
        raise bad_message(f"acquired_at_us {chunk.acquired_at_us} is outside the years 1-9999")
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
