"""Standard ECG measurements of a 10-s 12-lead strip (rate, intervals, axes, voltages): the Cox baseline's inputs.

PTB-XL ships no device measurements, so they are measured here the way ECG carts do: the front end's
:func:`~hfrisk.model.frontend.preprocessing.prepare` gives the R peaks (heart rate from the detected
beats) and the 12-lead median beat, and :mod:`hfrisk.training.data.intervals` finds one set of
global wave boundaries on that beat (spatial velocity of the leads). Intervals, axes and voltages
all come from the median beat; docs/training/data.md says why and how well (against LUDB's
cardiologists). Units are in the names (:data:`MEASUREMENTS`).

>>> from hfrisk.model.readers.dispatch import read_ecg
>>> m = measure_ecg(read_ecg("tests/data/ecg/ptbxl/records500/00000/00001_hr"))  # doctest: +SKIP
>>> round(m["heart_rate_bpm"]), 60 < m["qrs_ms"] < 120                         # doctest: +SKIP
(64, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.training.data.intervals import BeatFiducials, delineate_median_beat

from hfrisk.core.logs import get_logger

__all__ = ["MEASUREMENTS", "METHOD", "measure_ecg", "measure_record", "measure_records", "frontal_axis_deg"]

log = get_logger(__name__)

MEASUREMENTS: tuple[str, ...] = (
    "heart_rate_bpm",
    "rr_ms",
    "p_duration_ms",
    "pr_ms",
    "qrs_ms",
    "qt_ms",
    "qtc_ms",
    "p_axis_deg",
    "qrs_axis_deg",
    "t_axis_deg",
    "qrs_t_angle_deg",
    "sokolow_lyon_mv",
    "limb_qrs_mv",
)
# Written beside every cached row, so that a cache of another method is not reused.
METHOD = "median-beat-spatial-velocity/1"
# A median beat of fewer beats than this is not measured (its intervals would be one beat's).
_MIN_BEATS = 3
# Boundaries outside these ranges are a failed delineation, not a measurement.
_QRS_RANGE_MS = (40.0, 250.0)
_PR_RANGE_MS = (60.0, 400.0)
_QT_RANGE_MS = (200.0, 700.0)
# Isoelectric reference for axes and voltages: the mean of this stretch just before the QRS onset.
_BASELINE_MS = 20.0
_LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")


def frontal_axis_deg(net_lead_i: float, net_lead_avf: float) -> float:
    """Frontal-plane axis (degrees, (−180, 180]) from the net deflections of leads I and aVF.

    Einthoven/Goldberger: I = E·cos θ and aVF = (√3/2)·E·sin θ, hence θ = atan2(2·aVF/√3, I).

    >>> frontal_axis_deg(1.0, 0.0), round(frontal_axis_deg(0.0, 1.0)), round(frontal_axis_deg(-1.0, 0.0))
    (0.0, 90, 180)
    """
    if not (np.isfinite(net_lead_i) and np.isfinite(net_lead_avf)) or (net_lead_i == 0 and net_lead_avf == 0):
        return float("nan")
    return float(math.degrees(math.atan2(2.0 * net_lead_avf / math.sqrt(3.0), net_lead_i)))


def _angle_between_deg(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("nan")
    d = abs(a - b) % 360.0
    return float(min(d, 360.0 - d))


def _within(value: float, bounds: tuple[float, float]) -> float:
    return value if bounds[0] <= value <= bounds[1] else float("nan")


def _empty() -> dict[str, float]:
    return {name: float("nan") for name in MEASUREMENTS}


def measure_ecg(ecg: ECG, card: ModelCard | None = None, *, window_start_s: float = 0.0) -> dict[str, float]:
    """All :data:`MEASUREMENTS` of one window (see the module docstring); NaN where not measurable.

    Raises :class:`~hfrisk.model.contract.errors.ECGInputError` only for input that is not a valid window
    (rate, duration, lead names), like the model's own preprocessing.
    """
    card = card or default_card()
    item = prepare(ecg, card, window_start_s=window_start_s)
    out = _empty()
    if item.heart_rate_bpm is None:
        return out
    out["heart_rate_bpm"] = float(item.heart_rate_bpm)
    out["rr_ms"] = 60_000.0 / out["heart_rate_bpm"]
    if item.n_beats_used < _MIN_BEATS or not item.lead_mask.any():
        return out
    fs = float(card.input.fs_hz)
    fiducials = delineate_median_beat(
        item.median_beat_mv, fs, card.input.r_peak_index, item.lead_mask, rr_ms=out["rr_ms"], lead_names=item.leads
    )
    intervals = fiducials.intervals_ms()
    out["qrs_ms"] = _within(intervals["qrs_ms"], _QRS_RANGE_MS)
    if not np.isfinite(out["qrs_ms"]):
        return out
    out["pr_ms"] = _within(intervals["pr_ms"], _PR_RANGE_MS)
    out["p_duration_ms"] = intervals["p_duration_ms"] if np.isfinite(out["pr_ms"]) else float("nan")
    out["qt_ms"] = _within(intervals["qt_ms"], _QT_RANGE_MS)
    if np.isfinite(out["qt_ms"]):
        out["qtc_ms"] = out["qt_ms"] / math.sqrt(out["rr_ms"] / 1000.0)
    out.update(_axes_and_voltages(item.median_beat_mv, item.lead_mask, item.leads, fiducials, fs))
    return out


def _axes_and_voltages(
    beat: np.ndarray, mask: np.ndarray, leads: Sequence[str], fiducials: BeatFiducials, fs: float
) -> dict[str, float]:
    """Axes (net areas of I and aVF over each wave) and voltages (QRS extremes) of the median beat,
    against its PR-segment level. The T axis is taken over the whole ST-T (J point to T end)."""
    out: dict[str, float] = {}
    beat = np.asarray(beat, dtype=np.float64)

    def index(value: float) -> int | None:
        return int(np.clip(round(value), 0, beat.shape[1] - 1)) if np.isfinite(value) else None

    q_on, q_off = index(fiducials.qrs_onset), index(fiducials.qrs_offset)
    if q_on is None or q_off is None or q_off <= q_on:
        return out
    baseline_len = max(1, int(round(_BASELINE_MS * fs / 1000.0)))
    reference = beat[:, max(0, q_on - baseline_len) : q_on + 1].mean(axis=1, keepdims=True)
    level = beat - reference

    def present(lead: str) -> bool:
        return lead in leads and bool(mask[list(leads).index(lead)])

    def net_area(lead: str, start: int | None, stop: int | None) -> float:
        if start is None or stop is None or stop <= start or not present(lead):
            return float("nan")
        return float(level[list(leads).index(lead), start:stop].sum() / fs)

    def axis(start: int | None, stop: int | None) -> float:
        return frontal_axis_deg(net_area("I", start, stop), net_area("aVF", start, stop))

    out["qrs_axis_deg"] = axis(q_on, q_off)
    out["p_axis_deg"] = axis(index(fiducials.p_onset), index(fiducials.p_offset))
    out["t_axis_deg"] = axis(q_off, index(fiducials.t_offset))
    out["qrs_t_angle_deg"] = _angle_between_deg(out["qrs_axis_deg"], out["t_axis_deg"])

    qrs = level[:, q_on : q_off + 1]
    names = list(leads)
    if present("V1") and (present("V5") or present("V6")):
        s_v1 = max(0.0, -float(qrs[names.index("V1")].min()))
        r_v56 = max(float(qrs[names.index(lead)].max()) for lead in ("V5", "V6") if present(lead))
        out["sokolow_lyon_mv"] = s_v1 + max(0.0, r_v56)
    limb = [names.index(lead) for lead in _LIMB_LEADS if present(lead)]
    if limb:
        out["limb_qrs_mv"] = float(np.ptp(qrs[limb], axis=1).max())
    return out


def measure_record(path: str | Path, card: ModelCard | None = None) -> dict[str, float]:
    """:func:`measure_ecg` of a WFDB record or DICOM file; unreadable or invalid input gives all-NaN."""
    from hfrisk.model.readers.dispatch import read_ecg

    try:
        return measure_ecg(read_ecg(path), card)
    except ECGInputError as error:
        log.warning("measurements.unusable_record", record=str(path), reason=str(error))
        return _empty()


def measure_records(
    paths: Iterable[str | Path],
    card: ModelCard | None = None,
    *,
    cache: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row of :data:`MEASUREMENTS` per record (index: the path as given, in order).

    ``cache``: a parquet (or CSV) file of earlier results keyed by record; records already there,
    measured by this :data:`METHOD`, are not measured again, and the file is rewritten with the
    union. Measuring costs about what ``prepare`` costs (a few ms of CPU per 10-s record) plus
    reading the record.
    """
    paths = [str(p) for p in paths]
    cached = pd.DataFrame(columns=[*MEASUREMENTS, "method"])
    cache_path = Path(cache) if cache is not None else None
    if cache_path is not None and cache_path.exists():
        cached = pd.read_parquet(cache_path) if cache_path.suffix != ".csv" else pd.read_csv(cache_path, index_col=0)
        cached.index = cached.index.astype(str)
        # Rows of another method (or of the NeuroKit2 one, which wrote none) are measured again.
        current = cached["method"] == METHOD if "method" in cached else pd.Series(False, index=cached.index)
        if not current.all():
            log.info("measurements.cache_stale", cache=str(cache_path), rows=int((~current).sum()), method=METHOD)
        cached = cached[current]
    todo = [p for p in dict.fromkeys(paths) if p not in cached.index]
    iterator: Iterable[str] = todo
    if progress and todo:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="measurements", unit="record")
    rows = {p: measure_record(p, card) for p in iterator}
    if rows:
        fresh = pd.DataFrame.from_dict(rows, orient="index", columns=list(MEASUREMENTS))
        fresh["method"] = METHOD
        cached = fresh if cached.empty else pd.concat([cached, fresh])
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            if cache_path.suffix == ".csv":
                cached.to_csv(cache_path)
            else:
                cached.to_parquet(cache_path)
    frame = cached.loc[paths, list(MEASUREMENTS)].astype(float)
    frame.index.name = "record"
    return frame
