"""R-peak detection, beat extraction and the median beat.

Detection finds the QRS complexes in one energy envelope that combines every usable lead,
band-passed to the QRS band (so a flat, missing or disconnected lead cannot hide the rhythm, and
P/T waves, baseline wander and muscle noise weigh little); each detection is then moved to the
R peak of one reference lead, because the model expects that lead's R peak at a fixed sample.
``docs/bench/frontend.md`` measures it against LUDB and MIT-BIH annotations.

>>> import numpy as np
>>> x = np.zeros((2, 1000), dtype=np.float32); x[:, [200, 600]] = 1.0
>>> beats, kept = extract_beats(x, np.array([30, 200, 600, 950]), pre_samples=50, beat_samples=120)
>>> beats.shape, kept.tolist()                      # beats too close to an edge are dropped
((2, 2, 120), [200, 600])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

# The reference runs on the tuning of the batched front end it is held against; each number is
# explained where it is defined.
from hfrisk.model.frontend.detection import (
    _ENVELOPE_S,
    _MIN_RELATIVE_ENERGY,
    _MIN_RELATIVE_SLOPE,
    _NEGATIVE_DOMINANCE,
    _QRS_HALF_WIDTH_S,
    _REFINE_HALF_WIDTH_S,
    _REFRACTORY_S,
    _SEARCH_BACK_ENERGY,
    _SEARCH_BACK_GAP,
    _SEARCH_BACK_NOISE,
    _TYPICAL_SHARE,
    heart_rate_bpm,
)
from hfrisk.model.frontend.filters import bandpass, lowpass
from hfrisk.model.frontend.quality import MIN_AGREEING_SHARE
from hfrisk.model.frontend.spectral import DETECTION_FS_HZ, FIDUCIAL_BAND_HZ, QRS_BAND_HZ
from hfrisk.model.frontend.templates import _CORE_AFTER, _CORE_BEFORE

__all__ = [
    "detect_r_peaks",
    "reference_lead",
    "extract_beats",
    "BeatSelection",
    "select_beats",
    "median_beat",
    "heart_rate_bpm",
]

def _slope(leads: np.ndarray) -> np.ndarray:
    """Root-mean-square across ``leads`` of the derivative, each scaled to unit std."""
    grad = np.gradient(leads, axis=1)
    grad /= grad.std(axis=1, keepdims=True)
    return np.sqrt(np.mean(grad**2, axis=0))


def _windows(peaks: np.ndarray, half: int, n: int) -> np.ndarray:
    """Indices ``(n_peaks, 2*half+1)`` around each peak, clipped to the signal."""
    return np.clip(peaks[:, None] + np.arange(-half, half + 1), 0, n - 1)


def _envelope_peaks(leads: np.ndarray, fs_hz: float) -> np.ndarray:
    """QRS complexes of QRS-band ``leads`` (n_usable, n): peaks of their energy envelope.

    Each lead is scaled to unit std (a lead's gain does not make it count more) and the energy
    averaged over the leads and over _ENVELOPE_S (Pan–Tompkins' integration step: one hump per
    QRS whatever its shape). Peaks at least _REFRACTORY_S apart are candidates; the beats are the
    candidates taller than _MIN_RELATIVE_ENERGY of the window's typical QRS: the median of the
    candidates above a fifth of the 90th percentile (the 90th percentile lies among the beats
    whether the window holds 4 or 50 of them; the fifth leaves out the noise humps between beats).
    """
    scale = leads.std(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    energy = uniform_filter1d(np.mean((leads / scale) ** 2, axis=0), max(1, int(round(_ENVELOPE_S * fs_hz))))
    candidates, _ = find_peaks(energy, distance=max(1, int(round(_REFRACTORY_S * fs_hz))))
    if candidates.size == 0:
        return candidates.astype(np.int64)
    height = energy[candidates]
    typical = np.median(height[height >= _TYPICAL_SHARE * np.percentile(height, 90)])
    beat = height >= _MIN_RELATIVE_ENERGY * typical
    if beat.sum() >= 3:
        _search_back(candidates, height, beat, typical)
    return candidates[beat].astype(np.int64)


def _search_back(candidates: np.ndarray, height: np.ndarray, beat: np.ndarray, typical: float) -> None:
    """Mark in ``beat`` (in place) the tallest candidate inside each pause longer than
    _SEARCH_BACK_GAP median R-R intervals, if it stands out of the noise.

    A wide beat (a PVC, an aberrant premature beat) has most of its energy below the QRS band and
    can fall under the main threshold; it is followed by a pause, which is where Pan–Tompkins
    searches back with a lower threshold too. "Out of the noise": at least
    _SEARCH_BACK_ENERGY of the typical QRS and _SEARCH_BACK_NOISE times the median candidate that
    is not a beat (the humps of P and T waves and noise), so that a noisy window adds nothing.
    """
    found = candidates[beat]
    rr = np.median(np.diff(found))
    noise = np.median(height[~beat]) if (~beat).any() else 0.0
    floor = max(_SEARCH_BACK_ENERGY * typical, _SEARCH_BACK_NOISE * noise)
    for before, after in zip(found[:-1], found[1:]):
        if after - before > _SEARCH_BACK_GAP * rr:
            inside = (candidates > before) & (candidates < after) & (height >= floor)
            if inside.any():
                beat[np.flatnonzero(inside)[np.argmax(height[inside])]] = True


def _drop_slow_waves(leads: np.ndarray, peaks: np.ndarray, fs_hz: float) -> np.ndarray:
    """Drop detections whose steepest slope is far below that of the typical QRS.

    A tall T wave can carry QRS-band energy near the envelope's threshold; it is several times less
    steep than a QRS complex, which this test uses (on the QRS-band leads, where a pacing spike is
    no steeper than the paced beat). The reference is the median of the steeper half of the
    detections, so up to half of them may be T waves without moving it.
    """
    if peaks.size < 2:
        return peaks
    slope = _slope(leads)
    steepest = slope[_windows(peaks, int(round(_QRS_HALF_WIDTH_S * fs_hz)), slope.size)].max(axis=1)
    typical = np.median(np.sort(steepest)[peaks.size // 2 :])
    return peaks[steepest >= _MIN_RELATIVE_SLOPE * typical]


def reference_lead(samples: np.ndarray, usable: np.ndarray, preferred: int | None) -> int | None:
    """Index of the lead to align beats on: ``preferred`` if usable, else the usable lead with
    the tallest positive deflection (the clearest R wave); ``None`` when no lead is usable."""
    if preferred is not None and usable[preferred]:
        return preferred
    if not usable.any():
        return None
    height = samples.max(axis=1) - np.median(samples, axis=1)
    return int(np.argmax(np.where(usable, height, -np.inf)))


def detect_r_peaks(
    samples: np.ndarray, fs_hz: float, usable: np.ndarray, reference: int | None
) -> np.ndarray:
    """Sample indices of R peaks in filtered ``samples`` (n_leads, n), aligned on ``reference``.

    Returns an empty int array when no lead is usable or no QRS complex is found.
    """
    if reference is None or not usable.any():
        return np.zeros(0, dtype=np.int64)
    # Every other sample of a 500-Hz window is plenty for a 25-Hz band (the card's low-pass has
    # already removed what would alias) and halves the cost; _refine works at the full rate.
    step = max(1, int(fs_hz // DETECTION_FS_HZ))
    rate = fs_hz / step
    leads = bandpass(samples[usable, ::step].astype(np.float64), rate, *QRS_BAND_HZ)
    peaks = _drop_slow_waves(leads, _envelope_peaks(leads, rate), rate)
    if peaks.size == 0:
        return peaks
    return _refine(samples[reference], peaks * step, fs_hz)


def _refine(lead: np.ndarray, peaks: np.ndarray, fs_hz: float) -> np.ndarray:
    """Move each detection to the R peak (largest positive deflection) of ``lead`` nearby, or to its
    trough where the window's typical beat or the beat itself is a QS complex.

    The lead is first smoothed to the band every accepted source rate shares, so a notched R wave
    gets the same fiducial point from a 100-Hz and a 500-Hz recording of the same heart.
    """
    smooth = lowpass(lead.astype(np.float64), fs_hz, FIDUCIAL_BAND_HZ)
    idx = _windows(peaks, max(1, int(round(_REFINE_HALF_WIDTH_S * fs_hz))), lead.size)
    near = smooth[idx] - np.median(smooth)
    rows = np.arange(len(peaks))
    up, down = np.argmax(near, axis=1), np.argmin(near, axis=1)
    # Decided on the typical beat, so that the window's beats are aligned on the same wave; a beat
    # that is a QS complex itself (a ventricular beat among upright ones) on its trough.
    deep, tall = -near[rows, down], near[rows, up]
    negative = np.median(deep) > _NEGATIVE_DOMINANCE * np.median(tall)
    qs_beat = (np.median(deep) <= np.median(tall)) & (deep > _NEGATIVE_DOMINANCE * tall)
    refined = idx[rows, np.where(negative | qs_beat, down, up)]
    return _dedupe(np.unique(refined), int(round(_REFRACTORY_S * fs_hz)))


def _dedupe(peaks: np.ndarray, min_gap: int) -> np.ndarray:
    keep = [peaks[0]] if peaks.size else []
    for p in peaks[1:]:
        if p - keep[-1] >= min_gap:
            keep.append(p)
    return np.asarray(keep, dtype=np.int64)


def extract_beats(
    samples: np.ndarray, peaks: np.ndarray, *, pre_samples: int, beat_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Beats ``(n_leads, n_beats, beat_samples)`` with each R peak at ``pre_samples``, and the peaks
    kept; beats that would run past either edge of the window are dropped."""
    n = samples.shape[-1]
    starts = peaks - pre_samples
    inside = (starts >= 0) & (starts + beat_samples <= n)
    kept = peaks[inside]
    idx = kept[:, None] - pre_samples + np.arange(beat_samples)
    return samples[:, idx], kept


@dataclass(frozen=True)
class BeatSelection:
    """Which beats form the median.

    ``correlation`` (n_beats,): each beat's correlation with the average of the *other* beats over
    the usable leads (leave-one-out, so that a window with two or three beats does not look
    consistent just because each beat is part of its own template; 0 with a single beat).
    ``keep`` (n_beats,) bool: the beats that form the median (all of them when fewer than two
    pass, so that a median still exists). ``lead_correlation`` (n_leads,):
    per lead, the same leave-one-out correlation averaged over the kept beats (0 for unusable).
    """

    keep: np.ndarray
    correlation: np.ndarray
    lead_correlation: np.ndarray


def _leave_one_out(beats: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out correlations of zero-mean ``beats`` (n_leads, n_beats, t) among the ``keep``
    beats: ``(overall (n_beats,), per_lead (n_leads, n_beats))``; each beat against the sum of
    the kept beats other than itself (the mean's scale does not matter to a correlation).

    Written with dot products, <b, S - b> = <b, S> - |b|², so nothing of size n_beats² is built.
    """
    total = beats[:, keep].sum(axis=1)  # (n_leads, t)
    dot = np.einsum("lbt,lt->lb", beats, total)
    own = np.einsum("lbt,lbt->lb", beats, beats)
    own_kept = np.where(keep, own, 0.0)  # a beat outside ``keep`` is not part of ``total``
    num = dot - own_kept
    rest = np.einsum("lt,lt->l", total, total)[:, None] - 2.0 * np.where(keep, dot, 0.0) + own_kept
    per_lead = np.divide(num, np.sqrt(own * rest), out=np.zeros_like(num), where=(own * rest) > 0)
    den = own.sum(axis=0) * rest.sum(axis=0)
    overall = np.divide(num.sum(axis=0), np.sqrt(den), out=np.zeros(beats.shape[1]), where=den > 0)
    return overall, per_lead


def _core(beats: np.ndarray) -> slice:
    """The QRS-T core of aligned ``beats`` (n_leads, n_beats, t): from _CORE_BEFORE to _CORE_AFTER
    of the beat's length around the QRS (the largest deflection of the average beat).

    The beat window is longer than a fast heart's R-R interval (1.2 s by default: three beats at
    150 bpm); outside the core it holds the neighbouring beats, whose place varies with the R-R
    interval, so that every beat of an irregular or fast rhythm looked like an outlier.
    """
    n = beats.shape[-1]
    average = np.abs(beats.mean(axis=1) - beats.mean(axis=(1, 2))[:, None]).sum(axis=0)
    qrs = int(np.argmax(average))
    return slice(max(0, qrs - int(round(_CORE_BEFORE * n))), min(n, qrs + int(round(_CORE_AFTER * n))))


def select_beats(beats: np.ndarray, usable: np.ndarray, min_correlation: float) -> BeatSelection:
    """Drop outlier beats (ectopics, artefacts): leave-one-out correlation below
    ``min_correlation``. If every beat is an outlier all are kept, and the low correlation is
    left for the quality index to report.

    Beats are compared over their whole window; when fewer than half of them agree there (a fast
    or irregular rhythm moves the neighbouring beats inside the window), over their QRS-T core
    only (:func:`_core`). A regular rhythm keeps the selection, and so the median beat, that the
    bundled model was trained on.
    """
    n_leads, n_beats, _ = beats.shape
    if n_beats < 2 or not usable.any():
        return BeatSelection(np.ones(n_beats, bool), np.zeros(n_beats), np.zeros(n_leads))
    use = beats[usable].astype(np.float64)  # (n_usable, n_beats, t)
    # Centre each lead of each beat so a lead's offset does not count as shape.
    centred = use - use.mean(axis=-1, keepdims=True)
    correlation, _ = _leave_one_out(centred, np.ones(n_beats, bool))
    if (correlation >= min_correlation).sum() < MIN_AGREEING_SHARE * n_beats:
        centred = use[..., _core(use)]
        centred -= centred.mean(axis=-1, keepdims=True)
        correlation, _ = _leave_one_out(centred, np.ones(n_beats, bool))
    keep = correlation >= min_correlation
    if keep.sum() < 2:
        keep = np.ones(n_beats, bool)
    _, per_lead = _leave_one_out(centred, keep)
    lead_correlation = np.zeros(n_leads)
    lead_correlation[usable] = per_lead[:, keep].mean(axis=1)
    return BeatSelection(keep, correlation, lead_correlation)


def median_beat(beats: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Sample-wise median of the kept beats per lead: ``(n_leads, beat_samples)`` float32."""
    if not keep.any():
        return np.zeros((beats.shape[0], beats.shape[2]), dtype=np.float32)
    # np.median over a short axis is several times slower than a sort of the same data.
    ordered = np.sort(beats[:, keep], axis=1)
    n = ordered.shape[1]
    middle = ordered[:, (n - 1) // 2 : n // 2 + 1]
    return middle.mean(axis=1, dtype=np.float64).astype(np.float32)
