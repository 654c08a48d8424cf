"""Global wave boundaries of a 12-lead median beat: QRS onset and offset, P onset and offset, T end.

The way ECG carts measure: one set of fiducials for the whole ECG, found on the median beat of all
leads at once rather than per lead and then reconciled. Two curves of the beat carry them:

- the **spatial velocity** ``v(t) = sqrt(sum_leads (dx_lead/dt)^2)`` over the independent leads
  (I, II, V1-V6; III, aVR, aVL and aVF are sums of I and II and would only weight the limb leads
  twice), the derivative a Savitzky-Golay one (``scipy.signal.savgol_filter``) over ~40 ms;
- the **spatial magnitude** ``m(t) = sqrt(sum_leads (x_lead(t) - b_lead)^2)``, the distance of the
  heart vector from its isoelectric value ``b`` (the mean of the 20 ms before the QRS onset).

A wave starts or ends where the velocity returns to the isoelectric level, read as: below
``iso + k (peak - iso)`` with ``iso`` the 10th percentile of ``v`` over the beat (the flat segments)
and ``peak`` the wave's own largest velocity:

- **QRS onset** walking back from the QRS's velocity peak, **offset** walking forward: the first
  sample where ``v`` stays below 3 % of the QRS peak for 6 ms, or where it is below 10 % and
  turns up again (the ST segment or the T wave starting: with ST elevation ``v`` never reaches 3 %);
  at the offset, not where ``v`` climbs back to a fifth of the QRS peak within 40 ms (the terminal
  R' or S of a right bundle branch block follows such a dip).
- **T end**: the T peak is the maximum of ``m`` between the J point and the next beat's P wave
  (R-R minus 250 ms after the R peak, at least 70 % of the R-R; none under 0.03 mV); from the steepest point after it, where
  ``v`` falls below 10 % of that steepest velocity.
- **P wave**: the maximum of ``m`` between the previous beat's T end and the QRS onset. It is no P
  wave when it is under 0.07 mV (fibrillation averages out of a median beat) or when ``m`` at its
  onset is above 60 % of its peak (a hump of flutter or a drifting baseline, not a wave that rises
  from the baseline). P onset by the velocity rule (10 % of the P's steepest upstroke, held 6 ms,
  at most 100 ms before the peak); P offset where ``m``, measured from the PR segment, is back
  under 10 % of the peak (the velocity rule ran on into the QRS on noisy PR segments).

The thresholds were chosen on LUDB, whose cardiologists mark the earliest onset and latest offset
over the leads (``bench/bench_frontend.py``, interval part; ``docs/training/data.md`` has the figures
against NeuroKit2's per-lead delineation and the choices that lost).

>>> import numpy as np
>>> from hfrisk.training.data.intervals import delineate_median_beat
>>> t = (np.arange(600) - 200) / 500.0                      # 1.2 s at 500 Hz, R peak at sample 200
>>> beat = np.zeros((12, 600))
>>> beat[0] = np.exp(-0.5 * (t / 0.015) ** 2)               # lead I: a QRS-like bump (sigma 15 ms)
>>> beat[1] = -t / 0.015 * beat[0]                          # lead II: the heart vector turns
>>> f = delineate_median_beat(beat, 500.0, r_index=200, lead_mask=np.ones(12, bool))
>>> {k: float(v) for k, v in f.intervals_ms().items()}      # no P wave, no T wave: NaN
{'qrs_ms': 124.0, 'pr_ms': nan, 'qt_ms': nan, 'p_duration_ms': nan}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

__all__ = ["BeatFiducials", "INDEPENDENT_LEADS", "delineate_median_beat", "spatial_velocity", "spatial_magnitude"]

# Leads that carry independent information; the other four limb leads are linear in I and II.
INDEPENDENT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Savitzky-Golay derivative span. Shorter spans put the boundaries inside LUDB's marks (QRS median
# |error| over thresholds of 1-3 %: 15-26 ms with a 14-ms span, 9-20 ms with 22 ms, 8-12 ms with 30 ms,
# 8 ms with 42 ms). On a built beat whose waves start with a kink the span moves each boundary
# 15-20 ms outward (tests/training/test_intervals.py): LUDB's marks sit that far out.
_DERIVATIVE_MS = 42.0
_SMOOTH_MS = 22.0
_ISO_PERCENTILE = 10.0
# QRS: where the search for its velocity peak and its boundaries is allowed to go, relative to R.
_QRS_PEAK_MS = 80.0
_QRS_ONSET_MAX_MS = 300.0
_QRS_OFFSET_MAX_MS = 240.0
_QRS_LOW, _QRS_HIGH = 0.03, 0.10
_HOLD_MS = 6.0
_QRS_RESUME, _QRS_RESUME_MS = 0.2, 40.0
# T end: the search stops this long before the next R peak (the next P wave lies there), but not
# before 70 % of the R-R: at 140 bpm the T wave ends after the next P wave has begun.
_NEXT_BEAT_GAP_MS = 250.0
_T_REACH_OF_RR = 0.7
_T_AFTER_QRS_MS = 40.0
_T_LOW = 0.10
_T_END_MAX_MS = 760.0
# A flatter T wave has no end to find.
_T_MIN_MV = 0.03
# P wave.
_P_SEARCH_MS = 360.0
_P_BEFORE_QRS_MS = 20.0
_P_MIN_MV = 0.07
_P_ONSET_LEVEL = 0.6
_P_ONSET_MAX_MS = 100.0
_P_LOW = 0.10
_P_END_FRACTION = 0.1
_DEFAULT_RR_MS = 1000.0


@dataclass(frozen=True)
class BeatFiducials:
    """Global fiducials of one median beat, in (fractional) samples of the beat; NaN where not found."""

    qrs_onset: float
    qrs_offset: float
    p_onset: float
    p_offset: float
    t_offset: float
    fs_hz: float

    def intervals_ms(self) -> dict[str, float]:
        """QRS duration, PR (P onset to QRS onset), QT (QRS onset to T end) and P duration, in ms."""
        ms = 1000.0 / self.fs_hz
        return {
            "qrs_ms": (self.qrs_offset - self.qrs_onset) * ms,
            "pr_ms": (self.qrs_onset - self.p_onset) * ms,
            "qt_ms": (self.t_offset - self.qrs_onset) * ms,
            "p_duration_ms": (self.p_offset - self.p_onset) * ms,
        }


def _independent(lead_mask: np.ndarray, lead_names: Sequence[str]) -> np.ndarray:
    """Indices of the usable independent leads; every usable lead when none of them is usable."""
    names = list(lead_names)
    chosen = [names.index(n) for n in INDEPENDENT_LEADS if n in names and lead_mask[names.index(n)]]
    return np.asarray(chosen if chosen else np.flatnonzero(lead_mask), dtype=np.int64)


def _odd(n: float) -> int:
    k = max(5, int(round(n)))
    return k if k % 2 else k + 1


def spatial_velocity(beat: np.ndarray, fs_hz: float, leads: np.ndarray | None = None) -> np.ndarray:
    """``sqrt(sum_leads (dx/dt)^2)`` of ``beat`` (leads × samples) in mV/s, over the rows ``leads``."""
    rows = beat if leads is None else beat[leads]
    window = _odd(_DERIVATIVE_MS * fs_hz / 1000.0)
    derivative = savgol_filter(rows, window, 2, deriv=1, delta=1.0 / fs_hz, axis=-1)
    return np.sqrt((derivative**2).sum(axis=0))


def spatial_magnitude(beat: np.ndarray, reference: np.ndarray, leads: np.ndarray | None = None) -> np.ndarray:
    """Distance (mV) of each sample's lead vector from ``reference`` (one value per lead)."""
    rows = beat if leads is None else beat[leads]
    ref = reference if leads is None else reference[leads]
    return np.sqrt(((rows - ref[:, None]) ** 2).sum(axis=0))


def _held_below(v: np.ndarray, start: int, stop: int, threshold: float) -> bool:
    return bool(np.all(v[max(start, 0) : stop] < threshold))


def _qrs_bounds(v: np.ndarray, r: int, fs: float) -> tuple[int, int]:
    s = fs / 1000.0
    n = v.size
    lo, hi = max(1, r - int(_QRS_PEAK_MS * s)), min(n - 1, r + int(_QRS_PEAK_MS * s))
    peak = lo + int(np.argmax(v[lo:hi]))
    iso = float(np.percentile(v, _ISO_PERCENTILE))
    low = iso + _QRS_LOW * (v[peak] - iso)
    high = iso + _QRS_HIGH * (v[peak] - iso)
    hold = max(1, int(round(_HOLD_MS * s)))
    look = int(_QRS_RESUME_MS * s)
    resume = iso + _QRS_RESUME * (v[peak] - iso)
    onset, first = peak, max(1, r - int(_QRS_ONSET_MAX_MS * s))
    # Below 3 % for the hold, or below 10 % at a local minimum (a P wave or a slurred upstroke joins).
    while onset > first and not (
        _held_below(v, onset - hold, onset + 1, low) or (v[onset] < high and v[onset] <= v[onset - 1])
    ):
        onset -= 1
    # The same at the end (the ST segment or the T wave joins), unless the velocity climbs back to a
    # fifth of the QRS's within 40 ms: the dip then lies between two parts of one complex (the
    # terminal R' or S of a right bundle branch block). Not at the onset: there the climb is a pacing spike.
    offset, last = peak, min(n - 2, r + int(_QRS_OFFSET_MAX_MS * s))
    while offset < last and not (
        (_held_below(v, offset, offset + hold + 1, low) or (v[offset] < high and v[offset] <= v[offset + 1]))
        and v[offset + 1 : offset + 1 + look].max() < resume
    ):
        offset += 1
    return onset, offset


def _t_end(v: np.ndarray, magnitude: np.ndarray, qrs_offset: int, r: int, rr_ms: float, fs: float) -> float:
    s = fs / 1000.0
    reach_ms = max(rr_ms - _NEXT_BEAT_GAP_MS, _T_REACH_OF_RR * rr_ms)
    limit = min(v.size - 1, r + int(min(reach_ms, _T_END_MAX_MS) * s))
    start = qrs_offset + int(_T_AFTER_QRS_MS * s)
    if limit <= start + int(20 * s):
        return float("nan")
    smooth = savgol_filter(magnitude, _odd(_SMOOTH_MS * s), 2)
    peak = start + int(np.argmax(smooth[start:limit]))
    if smooth[peak] < _T_MIN_MV:
        return float("nan")
    steepest = peak + int(np.argmax(v[peak:limit]))
    iso = float(np.percentile(v, _ISO_PERCENTILE))
    threshold = iso + _T_LOW * (v[steepest] - iso)
    end = steepest
    while end < limit - 1 and v[end] > threshold:
        end += 1
    return float(end)


def _p_wave(
    v: np.ndarray, magnitude: np.ndarray, qrs_onset: int, t_end: float, rr_ms: float, fs: float
) -> tuple[float, float]:
    s = fs / 1000.0
    first = max(2, qrs_onset - int(_P_SEARCH_MS * s))
    if math.isfinite(t_end):  # the previous beat's T wave ends one R-R before this one's
        first = max(first, int(t_end - rr_ms * s + 10 * s))
    last = qrs_onset - int(_P_BEFORE_QRS_MS * s)
    if last <= first + int(20 * s):
        return float("nan"), float("nan")
    smooth = savgol_filter(magnitude, _odd(_SMOOTH_MS * s), 2)
    peak = first + int(np.argmax(smooth[first:last]))
    if smooth[peak] < _P_MIN_MV:
        return float("nan"), float("nan")
    iso = float(np.percentile(v, _ISO_PERCENTILE))
    hold = max(1, int(round(_HOLD_MS * s)))
    rise = first + int(np.argmax(v[first : peak + 1]))
    threshold = iso + _P_LOW * (v[rise] - iso)
    onset, earliest = rise, max(hold, peak - int(_P_ONSET_MAX_MS * s))
    while onset > earliest and not _held_below(v, onset - hold, onset + 1, threshold):
        onset -= 1
    # A P wave rises from the baseline; the largest hump of fibrillation or of a drifting baseline
    # in front of the QRS starts as high as it peaks.
    if smooth[onset] > _P_ONSET_LEVEL * smooth[peak]:
        return float("nan"), float("nan")
    # The magnitude is measured from the PR segment's level, so the P wave ends where it returns
    # there; the velocity rule used for the onset runs on into the QRS on noisy PR segments.
    below = np.flatnonzero(smooth[peak:qrs_onset] < _P_END_FRACTION * smooth[peak])
    offset = peak + int(below[0]) if below.size else qrs_onset
    return float(onset), float(offset)


def delineate_median_beat(
    beat_mv: np.ndarray,
    fs_hz: float,
    r_index: int,
    lead_mask: np.ndarray,
    *,
    rr_ms: float | None = None,
    lead_names: Sequence[str] = _STANDARD_LEADS,
) -> BeatFiducials:
    """The global fiducials of a median beat (leads × samples, mV, R peak at ``r_index``).

    ``rr_ms``: the rhythm's R-R interval; it bounds the T-wave search (the next beat's P wave) and
    the P-wave search (the previous beat's T wave). ``lead_names`` name the rows of ``beat_mv``.
    A beat without a usable lead gives all-NaN fiducials.
    """
    beat = np.asarray(beat_mv, dtype=np.float64)
    mask = np.asarray(lead_mask, dtype=bool)
    nan = float("nan")
    if not mask.any() or beat.shape[-1] < _odd(_DERIVATIVE_MS * fs_hz / 1000.0) + 2:
        return BeatFiducials(nan, nan, nan, nan, nan, fs_hz)
    rr = rr_ms if rr_ms is not None and math.isfinite(rr_ms) and rr_ms > 0 else _DEFAULT_RR_MS
    leads = _independent(mask, lead_names)
    v = spatial_velocity(beat, fs_hz, leads)
    onset, offset = _qrs_bounds(v, int(r_index), fs_hz)
    baseline = beat[:, max(0, onset - int(round(20 * fs_hz / 1000.0))) : onset + 1].mean(axis=1)
    magnitude = spatial_magnitude(beat, baseline, leads)
    t_end = _t_end(v, magnitude, offset, int(r_index), rr, fs_hz)
    p_on, p_off = _p_wave(v, magnitude, onset, t_end, rr, fs_hz)
    return BeatFiducials(float(onset), float(offset), p_on, p_off, t_end, fs_hz)
