"""Standard ECG measurements of a 10-s 12-lead strip (rate, intervals, axes, voltages): the Cox baseline's inputs.

PTB-XL ships no device measurements, so they are measured here with NeuroKit2 (R peaks on lead II,
delineation on every lead, global fiducials across leads, medians over beats); each step and why
it is done that way: docs/training/data.md. Units are in the names (:data:`MEASUREMENTS`).

>>> from hfrisk.model.readers.dispatch import read_ecg
>>> m = measure_ecg(read_ecg("tests/data/ecg/ptbxl/records500/00000/00001_hr"))  # doctest: +SKIP
>>> round(m["heart_rate_bpm"]), 60 < m["qrs_ms"] < 120                         # doctest: +SKIP
(64, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.filters import resample
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.frontend.preprocessing import select_window

from hfrisk.core.logs import get_logger

__all__ = ["MEASUREMENTS", "RHYTHM_LEADS", "measure_ecg", "measure_record", "measure_records", "frontal_axis_deg"]

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
# R peaks are found on the first of these that the record has (II is the classic rhythm strip).
RHYTHM_LEADS: tuple[str, ...] = ("II", "I", "V5", "V2", "aVF", "V6")

# Percentile across leads that makes each fiducial global (see the module docstring, step 4).
_GLOBAL_PERCENTILE = {
    "P_Onsets": 15.0, "P_Offsets": 50.0, "R_Onsets": 15.0, "R_Offsets": 85.0, "T_Onsets": 50.0, "T_Offsets": 50.0,
}
_MIN_QRS_MS, _MAX_QRS_MS = 40.0, 250.0
# Fewer valid beats than this fraction makes a measurement NaN.
_MIN_BEAT_FRACTION = 0.5
# Half-width (ms) around each R peak where a lead's polarity (upright or inverted QRS) is judged.
_POLARITY_HALF_WIDTH_MS = 60.0
# The average beat used for axes and voltages spans this much before and after the R peak.
_BEAT_PRE_MS, _BEAT_POST_MS = 400.0, 700.0
# Isoelectric reference: the mean of this stretch just before the QRS onset (the PR segment).
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


def _robust_median(values: np.ndarray, n_beats: int) -> float:
    """Median of the finite values, NaN when fewer than half the beats have one."""
    finite = values[np.isfinite(values)]
    if n_beats == 0 or finite.size < _MIN_BEAT_FRACTION * n_beats:
        return float("nan")
    return float(np.median(finite))


def _rhythm_lead(leads: Sequence[str], mask: np.ndarray) -> int | None:
    for name in RHYTHM_LEADS:
        if name in leads and mask[leads.index(name)]:
            return leads.index(name)
    present = np.flatnonzero(mask)
    return int(present[0]) if present.size else None


def _upright(signal: np.ndarray, r_peaks: np.ndarray, fs_hz: float) -> np.ndarray:
    """The lead turned so that its QRS points up (largest deflection around the R peaks positive)."""
    half = int(round(_POLARITY_HALF_WIDTH_MS * fs_hz / 1000.0))
    window = np.clip(r_peaks[:, None] + np.arange(-half, half + 1), 0, signal.size - 1)
    around = signal[window]
    return -signal if np.median(around.min(axis=1)) < -np.median(around.max(axis=1)) else signal


def _delineate(signal: np.ndarray, r_peaks: np.ndarray, fs_hz: float) -> dict[str, np.ndarray] | None:
    """Prominence delineation of one lead: fiducial → sample per beat (NaN where not found)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, waves = nk.ecg_delineate(signal, r_peaks, sampling_rate=int(round(fs_hz)), method="prominence")
    except Exception:  # noqa: BLE001 - NeuroKit raises bare errors on flat or odd leads
        return None
    out = {}
    for key in ("P_Onsets", "P_Offsets", "R_Onsets", "R_Offsets", "T_Onsets", "T_Offsets"):
        values = waves.get(f"ECG_{key}")
        if values is None or len(values) != len(r_peaks):
            values = [np.nan] * len(r_peaks)
        out[key] = np.asarray(values, dtype=np.float64)
    return out


def _global(fiducials: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    """One sample per beat for fiducial ``key`` from all leads' values (NaN where no lead has it)."""
    stacked = np.stack([f[key] for f in fiducials])  # (leads, beats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN beats stay NaN
        return np.nanpercentile(stacked, _GLOBAL_PERCENTILE[key], axis=0)


def _average_beat(signal: np.ndarray, r_peaks: np.ndarray, pre: int, post: int) -> np.ndarray | None:
    inside = r_peaks[(r_peaks - pre >= 0) & (r_peaks + post <= signal.shape[-1])]
    if inside.size == 0:
        return None
    return np.median(np.stack([signal[:, r - pre : r + post] for r in inside]), axis=0)


def _empty() -> dict[str, float]:
    return {name: float("nan") for name in MEASUREMENTS}


def measure_ecg(ecg: ECG, card: ModelCard | None = None, *, window_start_s: float = 0.0) -> dict[str, float]:
    """All :data:`MEASUREMENTS` of one recording (see the module docstring); NaN where not measurable.

    Raises :class:`~hfrisk.model.contract.errors.ECGInputError` only for input that is not a valid window
    (rate, duration, lead names), like the model's own preprocessing.
    """
    card = card or default_card()
    leads = tuple(card.input.leads)
    fs = float(card.input.fs_hz)
    window = select_window(ecg, card.window, window_start_s)
    conformed = conform_leads(window, leads)
    samples = resample(conformed.samples.astype(np.float64), conformed.fs_hz, fs)
    mask = conformed.mask & (samples.std(axis=1) > 1e-6)
    out = _empty()
    rhythm = _rhythm_lead(leads, mask)
    if rhythm is None:
        return out
    cleaned = np.zeros_like(samples)
    for i in np.flatnonzero(mask):
        cleaned[i] = nk.ecg_clean(samples[i], sampling_rate=int(round(fs)), method="neurokit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ecg_peaks(cleaned[rhythm], sampling_rate=int(round(fs)))
    except Exception:  # noqa: BLE001
        return out
    r_peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    if r_peaks.size < 2:
        return out
    ms = 1000.0 / fs
    rr_ms = float(np.median(np.diff(r_peaks))) * ms
    out["rr_ms"], out["heart_rate_bpm"] = rr_ms, 60_000.0 / rr_ms
    if r_peaks.size < 3:
        return out

    fiducials = []
    for i in np.flatnonzero(mask):
        found = _delineate(_upright(cleaned[i], r_peaks, fs), r_peaks, fs)
        if found is None:
            continue
        qrs_ms = (found["R_Offsets"] - found["R_Onsets"]) * ms
        failed = ~((qrs_ms >= _MIN_QRS_MS) & (qrs_ms <= _MAX_QRS_MS))
        for key in ("R_Onsets", "R_Offsets"):
            found[key][failed] = np.nan
        fiducials.append(found)
    if not fiducials:
        return out
    n = r_peaks.size
    qrs_on, qrs_off = _global(fiducials, "R_Onsets"), _global(fiducials, "R_Offsets")
    p_on, p_off = _global(fiducials, "P_Onsets"), _global(fiducials, "P_Offsets")
    t_on, t_off = _global(fiducials, "T_Onsets"), _global(fiducials, "T_Offsets")
    # A P wave must end before the QRS starts, a T wave start after it ends; anything else is a
    # mis-delineation (flutter waves, a P found inside the QRS) and counts as not measured.
    p_ok = (p_on < p_off) & (p_off <= qrs_on)
    t_ok = (t_off > qrs_off) & (t_on >= qrs_off)
    out["qrs_ms"] = _robust_median((qrs_off - qrs_on) * ms, n)
    out["p_duration_ms"] = _robust_median(np.where(p_ok, p_off - p_on, np.nan) * ms, n)
    out["pr_ms"] = _robust_median(np.where(p_ok, qrs_on - p_on, np.nan) * ms, n)
    out["qt_ms"] = _robust_median(np.where(t_ok, t_off - qrs_on, np.nan) * ms, n)
    if np.isfinite(out["qt_ms"]):
        out["qtc_ms"] = out["qt_ms"] / math.sqrt(rr_ms / 1000.0)
    out.update(_axes_and_voltages(cleaned, mask, leads, r_peaks, fs, p_on, p_off, qrs_on, qrs_off, t_on, t_off, p_ok, t_ok))
    return out


def _axes_and_voltages(
    cleaned, mask, leads, r_peaks, fs, p_on, p_off, qrs_on, qrs_off, t_on, t_off, p_ok, t_ok
) -> dict[str, float]:
    """Axes and voltages from the median beat, its wave boundaries the median fiducials (re R)."""
    out: dict[str, float] = {}
    pre = int(round(_BEAT_PRE_MS * fs / 1000.0))
    post = int(round(_BEAT_POST_MS * fs / 1000.0))
    beat = _average_beat(cleaned, r_peaks, pre, post)
    if beat is None:
        return out

    def relative(values: np.ndarray, ok: np.ndarray | None = None) -> int | None:
        values = values - r_peaks
        if ok is not None:
            values = np.where(ok, values, np.nan)
        value = _robust_median(values, len(r_peaks))
        if not np.isfinite(value):
            return None
        return int(np.clip(round(value) + pre, 0, beat.shape[1] - 1))

    q_on, q_off = relative(qrs_on), relative(qrs_off)
    if q_on is None or q_off is None or q_off <= q_on:
        return out
    baseline_len = max(1, int(round(_BASELINE_MS * fs / 1000.0)))
    reference = beat[:, max(0, q_on - baseline_len) : q_on + 1].mean(axis=1, keepdims=True)
    level = beat - reference

    def net_area(lead: str, start: int | None, stop: int | None) -> float:
        if start is None or stop is None or stop <= start or lead not in leads or not mask[leads.index(lead)]:
            return float("nan")
        return float(level[leads.index(lead), start:stop].sum() / fs)

    def axis(start: int | None, stop: int | None) -> float:
        return frontal_axis_deg(net_area("I", start, stop), net_area("aVF", start, stop))

    out["qrs_axis_deg"] = axis(q_on, q_off)
    out["p_axis_deg"] = axis(relative(p_on, p_ok), relative(p_off, p_ok))
    out["t_axis_deg"] = axis(relative(t_on, t_ok), relative(t_off, t_ok))
    out["qrs_t_angle_deg"] = _angle_between_deg(out["qrs_axis_deg"], out["t_axis_deg"])

    qrs = level[:, q_on : q_off + 1]

    def present(lead: str) -> bool:
        return lead in leads and bool(mask[leads.index(lead)])

    if present("V1") and (present("V5") or present("V6")):
        s_v1 = max(0.0, -float(qrs[leads.index("V1")].min()))
        r_v56 = max(float(qrs[leads.index(lead)].max()) for lead in ("V5", "V6") if present(lead))
        out["sokolow_lyon_mv"] = s_v1 + max(0.0, r_v56)
    limb = [leads.index(lead) for lead in _LIMB_LEADS if present(lead)]
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

    ``cache``: a parquet (or CSV) file of earlier results keyed by record; records already there
    are not measured again, and the file is rewritten with the union. Measuring takes ~0.1 s of
    CPU per 10-s record.
    """
    paths = [str(p) for p in paths]
    cached = pd.DataFrame(columns=list(MEASUREMENTS), dtype=float)
    cache_path = Path(cache) if cache is not None else None
    if cache_path is not None and cache_path.exists():
        cached = pd.read_parquet(cache_path) if cache_path.suffix != ".csv" else pd.read_csv(cache_path, index_col=0)
        cached.index = cached.index.astype(str)
    todo = [p for p in dict.fromkeys(paths) if p not in cached.index]
    iterator: Iterable[str] = todo
    if progress and todo:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="measurements", unit="record")
    rows = {p: measure_record(p, card) for p in iterator}
    if rows:
        fresh = pd.DataFrame.from_dict(rows, orient="index", columns=list(MEASUREMENTS))
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
