"""DICOM 12-lead ECG waveform objects (PS3.3 A.34) into the canonical :class:`ECG`.

An ECG DICOM file holds one or more multiplex groups in ``WaveformSequence``: usually the
10-s ``RHYTHM`` strip and a ``MEDIAN BEAT`` (representative beat). One group becomes one ECG.

Samples: pydicom's ``waveform_array`` returns ``stored * ChannelSensitivity *
ChannelSensitivityCorrectionFactor + ChannelBaseline``, which is what PS3.3 C.10.9.1.4 defines
(the baseline is in the *sensitivity* units, so it is added after scaling; pydicom issue #1667
fixed the order). The result is in each channel's ``ChannelSensitivityUnitsSequence`` unit
(UCUM ``uV`` in practice) and converted here to mV. Samples equal to ``WaveformPaddingValue``
are absent data and become NaN, so such a recording is refused as ``NON_FINITE``.

Lead names: the ``ChannelSourceSequence`` code meaning minimally cleaned, the word "Lead" and a
parenthesised remark removed: "Lead I (Einthoven)" -> "I", "Lead aVR" -> "aVR", "Lead V1" ->
"V1". The raw code meanings and codes are kept in ``metadata["channel_sources"]``.

Example::

    from pydicom.data import get_testdata_file
    ecg = read_dicom(get_testdata_file("waveform_ecg.dcm"))
    ecg.samples.shape, ecg.fs_hz      # (12, 10000), 1000.0
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.valuerep import DT
from pydicom.waveforms.numpy_handler import multiplex_array

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV, to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason

__all__ = ["read_dicom", "clean_lead_label", "is_dicom_file"]

# UCUM codes are case-sensitive, but "uV"/"mV" are the ones met; code meanings as fallback.
_UNIT_MEANINGS = {"microvolt": "uV", "millivolt": "mV", "volt": "V"}
_MEDIAN_LABELS = ("MEDIAN", "REPRESENTATIVE")
_LEAD_WORD = re.compile(r"^\s*lead\s+", re.IGNORECASE)
_REMARK = re.compile(r"\s*\(.*?\)\s*")


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` starts with the DICOM preamble and ``DICM`` magic (Part 10 file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def clean_lead_label(meaning: str) -> str:
    """A lead's code meaning without the word "Lead" and remarks: "Lead I (Einthoven)" -> "I".

    "Lead aVR" -> "aVR", "Lead -aVR" -> "-aVR" (the sign marks an inverted lead); anything else is
    only stripped of remarks in brackets.
    """
    return _REMARK.sub(" ", _LEAD_WORD.sub("", meaning)).strip()


def _unreadable(path: Path, what: str, exc: BaseException | None = None) -> ECGInputError:
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return ECGInputError(InputErrorReason.UNREADABLE, f"{path}: {what}{detail}")


def _group_label(group) -> str:
    return str(group.get("MultiplexGroupLabel", "") or "").strip()


def _choose_group(waveforms, waveform: str | int, path: Path) -> int:
    """Index of the multiplex group asked for: ``"rhythm"``, ``"median"`` or an index."""
    labels = [_group_label(g).upper() for g in waveforms]
    if isinstance(waveform, int) and not isinstance(waveform, bool):
        if 0 <= waveform < len(labels):
            return waveform
        raise _unreadable(path, f"no waveform group {waveform}; file has {len(labels)}: {labels}")
    kind = str(waveform).strip().lower()
    is_median = [any(m in lab for m in _MEDIAN_LABELS) for lab in labels]
    if kind == "median":
        candidates = [i for i, m in enumerate(is_median) if m]
    elif kind == "rhythm":
        named = [i for i, lab in enumerate(labels) if "RHYTHM" in lab]
        # Unlabelled files: the longest group that is not a median beat is the rhythm strip.
        others = sorted(
            (i for i, m in enumerate(is_median) if not m),
            key=lambda i: -int(waveforms[i].NumberOfWaveformSamples),
        )
        candidates = named or others
    else:
        raise ValueError(f"waveform must be 'rhythm', 'median' or a group index, got {waveform!r}")
    if not candidates:
        raise _unreadable(path, f"no {kind} waveform; multiplex groups are {labels}")
    return candidates[0]


def _channel_source(channel) -> tuple[str, dict]:
    """Lead label and the raw code of one ChannelDefinitionSequence item."""
    source = channel.get("ChannelSourceSequence")
    item = source[0] if source else None
    meaning = str(item.get("CodeMeaning", "")) if item is not None else ""
    code = str(item.get("CodeValue", "")) if item is not None else ""
    scheme = str(item.get("CodingSchemeDesignator", "")) if item is not None else ""
    label = str(channel.get("ChannelLabel", "") or "")
    text = meaning or label or code
    return clean_lead_label(text), {"meaning": meaning, "code": code, "scheme": scheme, "label": label}


def _channel_units(channel) -> str:
    """The channel's unit as a string ``to_millivolts`` knows, or what was found, or ''."""
    if "ChannelSensitivity" not in channel:
        return ""  # arbitrary units: not calibrated, so not usable as mV
    seq = channel.get("ChannelSensitivityUnitsSequence")
    if not seq:
        return ""
    code = str(seq[0].get("CodeValue", "")).strip()
    if code.lower() in UNIT_SCALE_TO_MV:
        return code
    return _UNIT_MEANINGS.get(str(seq[0].get("CodeMeaning", "")).strip().lower(), code)


def _acquired_at(ds, group) -> datetime | None:
    """AcquisitionDateTime (else AcquisitionDate + Time), moved on by the group's time offset."""
    text = str(ds.get("AcquisitionDateTime", "") or "").strip()
    if not text and ds.get("AcquisitionDate"):
        text = f"{ds.AcquisitionDate}{ds.get('AcquisitionTime', '') or ''}".strip()
    if not text:
        return None
    try:
        parsed = DT(text)
    except ValueError:
        return None
    started = datetime(
        parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second,
        parsed.microsecond, tzinfo=parsed.tzinfo,
    )
    offset_ms = float(group.get("MultiplexGroupTimeOffset", 0) or 0)
    return started + timedelta(milliseconds=offset_ms)


def read_dicom(
    path: str | Path,
    *,
    waveform: str | int = "rhythm",
    patient_id: str | None = None,
    device_id: str | None = None,
) -> ECG:
    """Read one waveform of a DICOM ECG file as an :class:`ECG` in millivolts.

    ``waveform``: ``"rhythm"`` (the rhythm strip), ``"median"`` (the median/representative beat)
    or the index of a multiplex group. ``patient_id`` defaults to PatientID; ``device_id`` to
    DeviceSerialNumber, else StationName. ``acquired_at`` is AcquisitionDateTime (time-zone
    aware when the file gives an offset) plus MultiplexGroupTimeOffset.

    Channels without a voltage unit are dropped and listed in ``metadata["dropped_channels"]``.
    Raises ``ECGInputError``: ``UNREADABLE`` (not DICOM, truncated, no waveform, no such group),
    ``BAD_UNITS`` (no channel in volts), ``NON_FINITE`` (padding samples).
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        waveforms = ds.WaveformSequence
    except AttributeError as exc:
        what = "DICOM file has no WaveformSequence (not an ECG waveform object)"
        raise _unreadable(path, what, exc) from exc
    except Exception as exc:  # InvalidDicomError, EOF in a truncated file, bad tags, ...
        raise _unreadable(path, "cannot read DICOM file", exc) from exc
    if len(waveforms) == 0:
        raise _unreadable(path, "WaveformSequence is empty")

    index = _choose_group(waveforms, waveform, path)
    group = waveforms[index]
    try:
        values = ds.waveform_array(index).astype(np.float64, copy=False)  # (n_samples, n_channels)
        channels = list(group.ChannelDefinitionSequence)
        fs_hz = float(group.SamplingFrequency)
        padding = group.get("WaveformPaddingValue")
        if padding is not None:
            raw = multiplex_array(ds, index, as_raw=True)
            pad = np.frombuffer(padding, dtype=raw.dtype)[0] if isinstance(padding, bytes) else padding
            values = np.where(raw == pad, np.nan, values)
    except Exception as exc:  # truncated WaveformData, sample count/bits mismatch, ...
        raise _unreadable(path, f"cannot decode waveform group {index}", exc) from exc
    if values.ndim != 2 or values.shape[1] != len(channels):
        raise _unreadable(
            path, f"waveform group {index} has {values.shape} samples for {len(channels)} channels"
        )

    leads, rows, sources, dropped, filters = [], [], [], [], []
    for j, channel in enumerate(channels):
        label, source = _channel_source(channel)
        units = _channel_units(channel)
        if units.strip().lower() not in UNIT_SCALE_TO_MV:
            dropped.append({"index": j, "name": label, "units": units, "reason": "not a voltage"})
            continue
        leads.append(label)
        rows.append(to_millivolts(values[:, j], units))
        sources.append(source)
        filters.append(
            {
                "low_hz": _float_or_none(channel.get("FilterLowFrequency")),
                "high_hz": _float_or_none(channel.get("FilterHighFrequency")),
                "notch_hz": _float_or_none(channel.get("NotchFilterFrequency")),
            }
        )
    if not rows:
        raise ECGInputError(
            InputErrorReason.BAD_UNITS, f"{path}: no channel of waveform group {index} is in volts"
        )

    metadata = {
        "format": "dicom",
        "waveform": _group_label(group) or str(index),
        "waveform_index": index,
        "waveforms_available": [_group_label(g) for g in waveforms],
        "channel_sources": sources,
        "dropped_channels": dropped,
        "filters": filters,
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "manufacturer": _text(ds, "Manufacturer"),
        "model": _text(ds, "ManufacturerModelName"),
        "patient_age": _text(ds, "PatientAge"),
        "patient_sex": _text(ds, "PatientSex"),
    }
    device = _text(ds, "DeviceSerialNumber") or _text(ds, "StationName")
    try:
        return ECG(
            samples=np.stack(rows),
            fs_hz=fs_hz,
            lead_names=tuple(leads),
            units="mV",
            patient_id=patient_id if patient_id is not None else _text(ds, "PatientID"),
            device_id=device_id if device_id is not None else device,
            acquired_at=_acquired_at(ds, group),
            source=str(path),
            metadata=metadata,
        )
    except ECGInputError as exc:
        raise ECGInputError(exc.reason, f"{path}: {exc.detail}") from exc


def _text(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _float_or_none(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
