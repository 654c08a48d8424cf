"""EDF and EDF+ (and BDF) recordings in and out of the canonical :class:`ECG`, through pyedflib.

EDF is the format of long-term and ambulatory recorders (Holter, sleep labs). Reading keeps what
the file says and drops what is not an ECG lead:

* samples are pyedflib's physical values, ``(digital - digital_min) * (physical_max -
  physical_min) / (digital_max - digital_min) + physical_min``, in the signal's ``dimension``
  (``uV``, ``mV``, ``V``), then converted to mV; the quantisation step of a signal is
  ``(physical_max - physical_min) / (digital_max - digital_min)``;
* signals without a voltage dimension, or whose label names a non-ECG signal (``Resp``,
  ``SpO2``, ``EEG Fpz-Cz``), and the EDF+ annotation signal, are dropped and listed in
  ``metadata["dropped_channels"]``;
* labels are returned as written (``ECG I``, ``EKG V1``): :mod:`hfrisk.model.contract.leads`
  strips the ``ECG``/``EKG`` prefix and normalises them;
* EDF+ annotations (onset and duration in seconds from the start, text) are kept in
  ``metadata["annotations"]``.

The ECG leads kept must share one sampling rate (EDF allows one per signal); otherwise the file
is refused with ``BAD_SAMPLING_RATE`` rather than resampled behind the reader's back.

Example::

    path = write_edf(read_wfdb("tests/data/ecg/ptbxl/records500/00000/00001_hr"), "ecg.edf",
                     annotations=[(1.0, 0.0, "artefact")])
    ecg = read_edf(path)        # 12 leads, 500 Hz, within half a quantisation step of the source
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib

from hfrisk.model.contract.ecg import ECG, UNIT_SCALE_TO_MV, to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.wfdb_io import is_ecg_channel

__all__ = ["read_edf", "write_edf", "EDF_EXTENSIONS"]

EDF_EXTENSIONS = frozenset({".edf", ".bdf", ".rec"})

# EDF+ reserves this label for its annotation signal.
_ANNOTATION_LABELS = {"EDF ANNOTATIONS", "BDF ANNOTATIONS"}


def _unreadable(path: Path, what: str, exc: BaseException | None = None) -> ECGInputError:
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return ECGInputError(InputErrorReason.UNREADABLE, f"{path}: {what}{detail}")


def read_edf(
    path: str | Path,
    *,
    patient_id: str | None = None,
    device_id: str | None = None,
) -> ECG:
    """Read the ECG leads of an EDF/EDF+/BDF file as an :class:`ECG` in millivolts.

    ``patient_id`` defaults to the EDF+ patient code (else the file's stem); ``device_id`` to the
    EDF+ equipment field (else the file's stem). ``acquired_at`` is the header's start date and
    time (naive: EDF has no time zone). ``metadata`` holds ``annotations`` (``[onset_s,
    duration_s, text]``), ``dropped_channels``, per-lead ``units_original``,
    ``quantisation_mv``, ``prefilter`` and ``transducer``, and the ``edf_plus`` flag.

    Raises ``ECGInputError``: ``UNREADABLE`` (not EDF, truncated), ``BAD_UNITS`` (no ECG lead
    with a voltage dimension), ``BAD_SAMPLING_RATE`` (leads at different rates),
    ``NON_FINITE``.
    """
    path = Path(path)
    if not path.is_file():
        raise _unreadable(path, "no such file")
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:  # pyedflib raises OSError with its own reason for every bad header
        raise _unreadable(path, "cannot read EDF header", exc) from exc
    try:
        headers = reader.getSignalHeaders()
        keep, dropped = [], []
        for i, h in enumerate(headers):
            label, units = str(h["label"]).strip(), str(h["dimension"]).strip()
            if label.upper() in _ANNOTATION_LABELS:
                continue
            if is_ecg_channel(label, units) and units:
                keep.append(i)
            else:
                voltage = units.lower() in UNIT_SCALE_TO_MV
                dropped.append(
                    {"index": i, "name": label, "units": units,
                     "reason": "not an ECG signal" if voltage else "not a voltage"}
                )
        if not keep:
            raise ECGInputError(
                InputErrorReason.BAD_UNITS,
                f"{path}: no ECG lead with a voltage dimension among "
                f"{[(h['label'], h['dimension']) for h in headers]}",
            )
        rates = {float(reader.getSampleFrequency(i)) for i in keep}
        if len(rates) > 1:
            raise ECGInputError(
                InputErrorReason.BAD_SAMPLING_RATE,
                f"{path}: ECG leads are sampled at different rates {sorted(rates)} Hz; "
                "resample them to one rate before scoring",
            )
        try:
            signals = [reader.readSignal(i) for i in keep]
        except Exception as exc:  # a data record cut short
            raise _unreadable(path, "cannot read signal data", exc) from exc
        onsets, durations, texts = reader.readAnnotations()
        annotations = [
            [float(onset), float(duration), str(text)]
            for onset, duration, text in zip(onsets, durations, texts)
        ]
        started = reader.getStartdatetime()
        header = reader.getHeader()
        edf_plus = reader.filetype in (pyedflib.FILETYPE_EDFPLUS, pyedflib.FILETYPE_BDFPLUS)
    finally:
        reader.close()

    lengths = {len(s) for s in signals}
    if len(lengths) > 1:
        raise _unreadable(path, f"ECG leads hold different sample counts {sorted(lengths)}")
    units = [str(headers[i]["dimension"]).strip() for i in keep]
    samples = np.stack([to_millivolts(s, u) for s, u in zip(signals, units)])
    steps = [
        (headers[i]["physical_max"] - headers[i]["physical_min"])
        / (headers[i]["digital_max"] - headers[i]["digital_min"])
        * UNIT_SCALE_TO_MV[u.lower()]
        for i, u in zip(keep, units)
    ]
    metadata = {
        "format": "edf",
        "edf_plus": edf_plus,
        "annotations": annotations,
        "dropped_channels": dropped,
        "units_original": units,
        "quantisation_mv": steps,
        "prefilter": [str(headers[i].get("prefilter", "")).strip() for i in keep],
        "transducer": [str(headers[i].get("transducer", "")).strip() for i in keep],
        "header": {k: v for k, v in header.items() if k != "annotations" and isinstance(v, str) and v},
    }
    # EDF+ writes spaces inside a subfield as '_' and pyedflib reads them back as spaces.
    patient_code = str(header.get("patientcode", "") or "").strip().replace(" ", "_")
    equipment = str(header.get("equipment", "") or "").strip().replace(" ", "_")
    try:
        return ECG(
            samples=samples,
            fs_hz=rates.pop(),
            lead_names=tuple(str(headers[i]["label"]).strip() for i in keep),
            units="mV",
            patient_id=patient_id if patient_id is not None else (patient_code or path.stem),
            device_id=device_id if device_id is not None else (equipment or path.stem),
            acquired_at=started if isinstance(started, datetime) else None,
            source=str(path),
            metadata=metadata,
        )
    except ECGInputError as exc:
        raise ECGInputError(exc.reason, f"{path}: {exc.detail}") from exc


def _physical_range(lead_mv: np.ndarray) -> tuple[float, float]:
    """A symmetric physical range (µV) holding the lead, wide enough to be a valid EDF range.

    EDF header numbers are 8 characters, so the range is rounded up to a whole µV: the digital
    values are then computed against exactly what the header stores.
    """
    peak_uv = float(np.max(np.abs(lead_mv))) * 1000.0 if lead_mv.size else 0.0
    bound = float(max(np.ceil(peak_uv) + 1.0, 10.0))
    return -bound, bound


def write_edf(
    ecg: ECG,
    path: str | Path,
    *,
    annotations: Sequence[tuple[float, float, str]] = (),
    bdf: bool = False,
) -> Path:
    """Write ``ecg`` as EDF+ (or BDF+), 16 (24) bits per sample in µV, and return the path.

    Each lead gets the symmetric physical range that holds it, so its quantisation step is
    ``2 * range / 65535`` µV (0.06 µV for a ±2 mV lead). ``annotations`` are
    ``(onset_s, duration_s, text)``. Patient and device ids go to the EDF+ patient code and
    equipment fields, which :func:`read_edf` reads back.
    """
    path = Path(path)
    ecg = ecg.in_millivolts()
    digital_max = 8388607 if bdf else 32767
    signal_headers, digital = [], []
    for name, lead in zip(ecg.lead_names, ecg.samples):
        low, high = _physical_range(lead)
        # Digital values rounded here: EDFlib's own physical->digital conversion truncates, which
        # would cost up to a whole quantisation step instead of half of one.
        step_uv = (high - low) / (2 * digital_max + 1)
        counts = np.round((lead.astype(np.float64) * 1000.0 - low) / step_uv) - digital_max - 1
        digital.append(np.clip(counts, -digital_max - 1, digital_max).astype(np.int32))
        signal_headers.append(
            pyedflib.highlevel.make_signal_header(
                name, dimension="uV", sample_frequency=ecg.fs_hz, physical_min=low, physical_max=high,
                digital_min=-digital_max - 1, digital_max=digital_max, transducer="ECG electrode",
            )
        )
    header = pyedflib.highlevel.make_header(
        patientcode=_edf_field(ecg.patient_id),
        equipment=_edf_field(ecg.device_id),
        startdate=ecg.acquired_at.replace(tzinfo=None) if ecg.acquired_at else None,
    )
    header["annotations"] = [[float(o), float(d), str(t)] for o, d, t in annotations]
    ok = pyedflib.highlevel.write_edf(
        str(path),
        digital,
        signal_headers,
        header,
        digital=True,
        file_type=pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS,
    )
    if not ok:
        raise OSError(f"pyedflib could not write {path}")
    return path


def _edf_field(text: str) -> str:
    # EDF+ subfields are separated by spaces; a space inside an id would split it.
    return str(text).replace(" ", "_")
