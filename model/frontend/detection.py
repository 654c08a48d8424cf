"""R-peak detection on a batch of windows at once, in array-API operations.

The detector of ``docs/bench/frontend.md``: the QRS-band energy of every usable lead (each scaled
to unit std) averaged into one envelope per window; its local maxima at least ``_REFRACTORY_S``
apart are candidates (``find_peaks`` with a distance); a candidate at the crest of its own hump
(no higher sample within the refractory period) is a beat when it holds ``_MIN_RELATIVE_ENERGY``
of the window's typical QRS energy; pauses longer than ``_SEARCH_BACK_GAP`` R-R intervals are searched again at a
lower threshold (Pan–Tompkins' search-back, for wide ectopic beats); detections much less steep
than the typical QRS (tall T waves) are dropped; each survivor moves to the R peak of the
reference lead. ``tests/model/test_detection.py`` compares it with ``scipy.signal.find_peaks``
and with the annotations of real records.

Windows are rows; a window's candidates and beats are a row of a ``(B, K)`` array padded to the
longest row with a validity mask, so every step is one operation for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hfrisk.model.frontend.arrays import compact, device_of, gather_time, masked_quantile, sliding_max

__all__ = ["Peaks", "envelope", "detect", "heart_rate_bpm"]

# Width (s) of the moving average that turns QRS-band energy into one hump per complex.
_ENVELOPE_S = 0.1
# Two R peaks closer than this are one beat (400 bpm): above the card's largest rate (max_beats
# per window, 300 bpm by default) so that such rates are measured and reported, not hidden.
_REFRACTORY_S = 0.15
# A candidate with less than this fraction of the typical QRS energy is a P or T wave or noise.
# Chosen on LUDB and 8 MIT-BIH DS1 records (5 min, clean and with muscle noise): 0.25 let noise
# through at 6 dB (+P 88 %), 0.55 dropped small ectopic beats (Se 97 %); 0.4 keeps both >= 95 %.
_MIN_RELATIVE_ENERGY = 0.4
# The typical QRS energy: the median of the candidates above this share of the 90th percentile
# (which lies among the beats whether the window holds 4 or 50 of them; the share leaves out the
# noise humps between beats).
_TYPICAL_SHARE = 0.2
# Search-back: pauses longer than this many median R-R intervals are searched again, for a
# candidate of at least this share of the typical QRS energy and this many times the noise's.
# On MIT-BIH 201 and 223 the missed aberrant and ventricular beats had 0.1-0.2 of the typical
# energy, the humps between beats of a clean record 0.01-0.02.
_SEARCH_BACK_GAP = 1.5
_SEARCH_BACK_ENERGY = 0.1
_SEARCH_BACK_NOISE = 4.0
# Half-width (s) of the window in which a detection's QRS slope is measured.
_QRS_HALF_WIDTH_S = 0.05
# A detection less steep than this fraction of the typical QRS is a T wave; so is one within
# _T_WAVE_S of its neighbour and less than _T_WAVE_SLOPE times as steep as it (Pan–Tompkins;
# a tall P wave before its QRS likewise).
_MIN_RELATIVE_SLOPE = 0.3
_T_WAVE_S = 0.36
_T_WAVE_SLOPE = 0.5
# How far (s) the R peak of the reference lead may lie from the QRS peak of the envelope.
_REFINE_HALF_WIDTH_S = 0.06
# The fiducial point is the largest positive deflection of the reference lead, unless the
# window's typical QRS there is this many times deeper than tall (a QS complex, as a paced beat in
# lead II: the largest positive deflection is then the T wave's upstroke), or the beat itself is
# (a QS-shaped ventricular beat among upright ones). Large, so that an ordinary rS complex keeps
# the R wave the bundled model was trained on; on LUDB a factor 3, for the window or per beat,
# moved the fiducial of more paced beats away from the cardiologists' mark than it corrected. Per
# beat (among upright beats) it took 16 false detections and 15 misses off MIT-BIH DS1 (wide
# ventricular beats found 80-140 ms from their annotation): +P 99.49 -> 99.52 %, Se 99.58 ->
# 99.61 %; LUDB unchanged.
_NEGATIVE_DOMINANCE = 8.0
# The baseline of the fiducial lead is the median of every this-many-th sample (a 100-Hz view of
# a 500-Hz lead: the same median to a few microvolts at a fifth of the sort).
_BASELINE_STRIDE = 5


@dataclass(frozen=True)
class Peaks:
    """R peaks per window: ``index`` (B, K) int sample indices at the output rate, ascending and
    left-aligned, ``valid`` (B, K) which of them are real."""

    index: Any
    valid: Any


def _moving_average(xp: Any, x: Any, size: int) -> Any:
    """``scipy.ndimage.uniform_filter1d(x, size, mode="reflect")`` along the last axis."""
    if size <= 1:
        return x
    left, right = size // 2, size - 1 - size // 2
    padded = xp.concat((xp.flip(x[..., :left], axis=-1), x, xp.flip(x[..., x.shape[-1] - right :], axis=-1)), axis=-1)
    wide = xp.astype(padded, xp.float64)
    zero = xp.zeros(wide.shape[:-1] + (1,), dtype=xp.float64, device=device_of(wide))
    csum = xp.concat((zero, xp.cumulative_sum(wide, axis=-1)), axis=-1)
    return xp.astype((csum[..., size:] - csum[..., :-size]) / size, x.dtype)


def _unit_power(xp: Any, x: Any, usable: Any) -> Any:
    """Mean over the usable leads of ``(x / std(x))²`` for ``x`` (B, L, n) → (B, n): each lead
    scaled to unit std, so a lead's gain does not make it count more. One squared copy and one
    matrix product: the per-lead scale goes into the weights (a lead without variance is not scaled)."""
    n = x.shape[-1]
    square = x * x
    mean = xp.sum(x, axis=-1) / n
    var = xp.sum(square, axis=-1) / n - mean * mean  # band-passed signals: mean ~0, no cancellation
    one = xp.asarray(1.0, dtype=x.dtype)
    weight = xp.astype(usable, x.dtype) / xp.where(var > 0, var, one)
    weight = weight / xp.clip(xp.sum(xp.astype(usable, x.dtype), axis=-1, keepdims=True), min=1.0)
    return xp.matmul(weight[:, None, :], square)[:, 0, :]


def envelope(xp: Any, qrs: Any, usable: Any, fs_det: float) -> Any:
    """QRS-band energy averaged over the usable leads and over ``_ENVELOPE_S``: (B, n_det)."""
    return _moving_average(xp, _unit_power(xp, qrs, usable), max(1, round(_ENVELOPE_S * fs_det)))


def _local_maxima(xp: Any, energy: Any) -> Any:
    """Samples higher than the one before and at least the one after (the first sample of a
    plateau; ``find_peaks`` takes its middle, a difference of a sample or two on a flat top)."""
    high = xp.full(energy.shape[:-1] + (1,), xp.inf, dtype=energy.dtype, device=device_of(energy))
    before = xp.concat((high, energy[..., :-1]), axis=-1)
    after = xp.concat((energy[..., 1:], high), axis=-1)
    return (energy > before) & (energy >= after)


# Neighbouring maxima compared on each side by the candidate search: a 150-ms reach on a 100-ms
# moving average holds a handful; more than this many (flat ripples) leave the extra ones unjudged,
# as if they were farther than the reach.
_NEIGHBOURS = 16


def _candidates(xp: Any, energy: Any, distance: int) -> tuple[Any, Any]:
    """``find_peaks(energy, distance=distance)`` per row: the local maxima that no higher kept
    maximum lies within ``distance - 1`` samples of; compacted to (B, K) positions and validity.

    SciPy removes peaks in order of height; the same fixed point is reached here by passes over
    each maximum's nearest neighbours on either side (a pass settles one more link of a chain of
    ever higher neighbours; on an energy envelope chains are one or two long)."""
    pos, valid = compact(xp, _local_maxima(xp, energy))
    b, m = pos.shape
    if m == 0:
        return pos, valid
    height = xp.where(valid, _take(xp, energy, pos), xp.asarray(-xp.inf, dtype=energy.dtype))
    reach = min(_NEIGHBOURS, m - 1)

    def padded(x: Any, fill: Any) -> Any:
        edge = xp.full((b, reach), fill, dtype=x.dtype, device=device_of(x))
        return xp.concat((edge, x, edge), axis=-1)

    # Neighbour d places away is column reach + d of the padded rows; padding is never a rival.
    far = padded(pos, xp.asarray(-(2**40), dtype=pos.dtype))
    tall = padded(height, xp.asarray(-xp.inf, dtype=height.dtype))
    rivals = []
    for d in [*range(1, reach + 1), *range(-reach, 0)]:
        other, other_h = far[:, reach + d : reach + d + m], tall[:, reach + d : reach + d + m]
        # ties go to the later maximum, as in SciPy's stable sort by height
        higher = (other_h > height) | ((other_h == height) & (d > 0))
        rivals.append((d, (xp.abs(other - pos) < distance) & higher))
    kept = valid
    for _ in range(m):
        around = padded(kept, xp.asarray(False))
        beaten = xp.zeros(pos.shape, dtype=xp.bool, device=device_of(pos))
        for d, rival in rivals:
            beaten = beaten | (rival & around[:, reach + d : reach + d + m])
        now = valid & ~beaten
        if bool(xp.all(now == kept)):
            break
        kept = now
    return compact(xp, kept, pos)


def _take(xp: Any, x: Any, idx: Any) -> Any:
    """``x[b, idx[b, k]]`` for (B, n) ``x`` and (B, K) ``idx``."""
    if idx.shape[-1] == 0:
        return xp.zeros(idx.shape, dtype=x.dtype, device=device_of(x))
    return xp.take_along_axis(x, idx, axis=-1)


def _search_back(xp: Any, pos: Any, height: Any, valid: Any, beat: Any, typical: Any) -> Any:
    """``beat`` with, inside each pause longer than _SEARCH_BACK_GAP median R-R intervals, the
    tallest candidate that stands out of the noise (at least _SEARCH_BACK_ENERGY of the typical
    QRS and _SEARCH_BACK_NOISE times the median non-beat candidate). Windows with < 3 beats as is."""
    n_beats = xp.sum(xp.astype(beat, xp.int64), axis=-1)
    beat_pos, beat_valid = compact(xp, beat, pos)
    if beat_pos.shape[-1] < 3:
        return beat
    rr = masked_quantile(
        xp, xp.astype(beat_pos[..., 1:] - beat_pos[..., :-1], height.dtype), beat_valid[..., 1:], 0.5
    )
    noise = masked_quantile(xp, height, valid & ~beat, 0.5)
    noise = xp.where(xp.isnan(noise), xp.asarray(0.0, dtype=height.dtype), noise)
    floor = xp.maximum(_SEARCH_BACK_ENERGY * typical, _SEARCH_BACK_NOISE * noise)
    # A non-beat candidate lies between beat number `rank - 1` and `rank` (counted from 0).
    rank = xp.cumulative_sum(xp.astype(beat, xp.int64), axis=-1)
    last = beat_pos.shape[-1] - 1
    before = xp.take_along_axis(beat_pos, xp.clip(rank - 1, min=0, max=last), axis=-1)
    after = xp.take_along_axis(beat_pos, xp.clip(rank, max=last), axis=-1)
    inside = (rank >= 1) & (rank < n_beats[:, None])
    eligible = (
        valid
        & ~beat
        & inside
        & (height >= floor[:, None])
        & (xp.astype(after - before, height.dtype) > _SEARCH_BACK_GAP * rr[:, None])
        & (n_beats >= 3)[:, None]
    )
    # The tallest eligible candidate of each pause (ties to the earlier one).
    k = xp.arange(pos.shape[-1], device=device_of(pos))
    same_pause = rank[:, :, None] == rank[:, None, :]
    taller = (height[:, None, :] > height[:, :, None]) | (
        (height[:, None, :] == height[:, :, None]) & (k[None, None, :] < k[None, :, None])
    )
    outdone = xp.any(same_pause & eligible[:, None, :] & taller, axis=-1)
    return beat | (eligible & ~outdone)


def _slope(xp: Any, qrs: Any, usable: Any) -> Any:
    """Root-mean-square over the usable leads of each lead's derivative scaled to unit std
    (B, n): :func:`_unit_power` of ``numpy.gradient`` (central differences, one-sided at the
    ends), without building the gradient's copy with its two end samples (they enter the std as
    two scalars per lead). ``tests/model/test_batch_frontend.py`` holds it to that formula."""
    n = qrs.shape[-1]
    inner = (qrs[..., 2:] - qrs[..., :-2]) / 2
    first, last = qrs[..., 1] - qrs[..., 0], qrs[..., -1] - qrs[..., -2]
    square = inner * inner
    mean = (xp.sum(inner, axis=-1) + first + last) / n
    var = (xp.sum(square, axis=-1) + first * first + last * last) / n - mean * mean
    one = xp.asarray(1.0, dtype=qrs.dtype)
    weight = xp.astype(usable, qrs.dtype) / xp.where(var > 0, var, one)
    weight = weight / xp.clip(xp.sum(xp.astype(usable, qrs.dtype), axis=-1, keepdims=True), min=1.0)
    power = xp.matmul(weight[:, None, :], square)[:, 0, :]
    ends = xp.matmul(weight[:, None, :], xp.stack((first * first, last * last), axis=-1))[:, 0, :]
    power = xp.concat((ends[:, :1], power, ends[:, 1:]), axis=-1)
    return xp.sqrt(xp.clip(power, min=0.0))


def _drop_slow_waves(xp: Any, qrs: Any, usable: Any, pos: Any, beat: Any, fs_det: float) -> Any:
    """``beat`` without the detections whose steepest slope is below _MIN_RELATIVE_SLOPE of the
    typical QRS: the median of the steeper half of the window's detections, so up to half of
    them may be T waves without moving it."""
    slope = _slope(xp, qrs, usable)
    half = round(_QRS_HALF_WIDTH_S * fs_det)
    steepest = _take(xp, sliding_max(xp, slope, half, half), pos)
    n = xp.sum(xp.astype(beat, xp.int64), axis=-1)
    big = xp.asarray(xp.finfo(steepest.dtype).max, dtype=steepest.dtype)
    ordered = xp.sort(xp.where(beat, steepest, big), axis=-1)
    upper = n - n // 2
    last = max(ordered.shape[-1] - 1, 0)
    lo = xp.clip(n // 2 + (upper - 1) // 2, min=0, max=last)
    hi = xp.clip(n // 2 + upper // 2, min=0, max=last)
    # Halves first: a window without beats holds only ``big`` there, and big + big overflows
    # (halving is exact, so for every other value this is (a + b) / 2 to the bit).
    typical = _take(xp, ordered, lo[:, None]) / 2 + _take(xp, ordered, hi[:, None]) / 2
    steep_enough = steepest >= _MIN_RELATIVE_SLOPE * typical
    kept = beat & (steep_enough | (n < 2)[:, None])
    return kept & ~_t_waves(xp, pos, steepest, kept, fs_det)


def _t_waves(xp: Any, pos: Any, steepest: Any, beat: Any, fs_det: float) -> Any:
    """Of two detections closer than _T_WAVE_S, the one less than _T_WAVE_SLOPE times as steep as
    the other: the T wave after a beat (Pan–Tompkins' rule) or a tall P wave before it. An R-on-T
    ectopic this early is rare, and a premature QRS is at least half as steep as its neighbour.
    On MIT-BIH 101, 106, 108, 203 and 208 it removed 30 of 205 false detections for 3 beats."""
    beat_pos, ok = compact(xp, beat, pos)
    if beat_pos.shape[-1] < 2:
        return xp.zeros(beat.shape, dtype=xp.bool, device=device_of(beat))
    beat_steep, _ = compact(xp, beat, steepest)
    gap = beat_pos[:, 1:] - beat_pos[:, :-1]
    early = ok[:, 1:] & (xp.astype(gap, steepest.dtype) < _T_WAVE_S * fs_det)
    shallow = beat_steep[:, 1:] < _T_WAVE_SLOPE * beat_steep[:, :-1]
    # and the other way round: a tall P wave just before a QRS far steeper than it
    leading = beat_steep[:, :-1] < _T_WAVE_SLOPE * beat_steep[:, 1:]
    none = xp.zeros((beat.shape[0], 1), dtype=xp.bool, device=device_of(beat))
    t_wave = xp.concat((none, early & shallow), axis=-1) | xp.concat((early & leading, none), axis=-1)
    rank = xp.clip(xp.cumulative_sum(xp.astype(beat, xp.int64), axis=-1) - 1, min=0, max=t_wave.shape[-1] - 1)
    return beat & xp.take_along_axis(t_wave, rank, axis=-1)


def _refine(xp: Any, smooth: Any, pos: Any, keep: Any, fs_out: float) -> Any:
    """Move each detection (output-rate index) to the R peak of the reference lead ``smooth``
    (B, n_out) nearby: its largest positive deflection, or its deepest for windows whose typical
    QRS there is a QS complex (decided on the typical beat) and for a beat that is one itself."""
    n = smooth.shape[-1]
    half = max(1, round(_REFINE_HALF_WIDTH_S * fs_out))
    offsets = xp.arange(-half, half + 1, dtype=xp.int64, device=device_of(pos))
    idx = xp.clip(pos[:, :, None] + offsets, min=0, max=n - 1)  # (B, K, 2h+1)
    b, k, w = idx.shape
    values = xp.reshape(gather_time(xp, smooth, xp.reshape(idx, (b, k * w))), (b, k, w))
    thinned = smooth[..., ::_BASELINE_STRIDE]
    baseline = masked_quantile(xp, thinned, xp.ones(thinned.shape, dtype=xp.bool, device=device_of(thinned)), 0.5)
    near = values - baseline[:, None, None]
    up, down = xp.argmax(near, axis=-1), xp.argmin(near, axis=-1)
    tall = xp.max(near, axis=-1)
    deep = -xp.min(near, axis=-1)
    typical_deep, typical_tall = masked_quantile(xp, deep, keep, 0.5), masked_quantile(xp, tall, keep, 0.5)
    negative = typical_deep > _NEGATIVE_DOMINANCE * typical_tall
    # Only among upright beats: in a window of rS complexes, beats near the factor would flip
    # between the two waves and blur the median beat.
    qs_beat = (typical_deep <= typical_tall)[:, None] & (deep > _NEGATIVE_DOMINANCE * tall)
    chosen = xp.where(negative[:, None] | qs_beat, down, up)
    return xp.take_along_axis(idx, chosen[..., None], axis=-1)[..., 0]


def _dedupe(xp: Any, pos: Any, keep: Any, min_gap: int) -> tuple[Any, Any]:
    """Sorted ``pos`` with each kept one at least ``min_gap`` after the previous kept one
    (greedy from the left, as a sequential pass would keep them)."""
    big = xp.asarray(2**62, dtype=pos.dtype)
    order = xp.argsort(xp.where(keep, pos, big), axis=-1)
    pos = xp.take_along_axis(pos, order, axis=-1)
    valid = xp.take_along_axis(keep, order, axis=-1)
    k = xp.arange(pos.shape[-1], device=device_of(pos))
    earlier = k[None, :, None] > k[None, None, :]  # [.., k, j]: j before k
    kept = valid
    # Each pass settles at least the next detection of every chain of close ones; a chain longer
    # than two (three detections within 150 ms) is rare, so this loops once or twice.
    for _ in range(pos.shape[-1]):
        previous = xp.max(xp.where(earlier & kept[:, None, :], pos[:, None, :], -big), axis=-1)
        now = valid & (pos - previous >= min_gap)
        if bool(xp.all(now == kept)):
            break
        kept = now
    return pos, kept


def detect(
    xp: Any, qrs: Any, usable: Any, smooth: Any, *, fs_det: float, step: int, fs_out: float
) -> Peaks:
    """R peaks of each window: ``qrs`` (B, L, n_det) the QRS band at ``fs_det``, ``usable``
    (B, L) bool, ``smooth`` (B, n_out) each window's reference lead in the fiducial band at
    ``fs_out = fs_det * step``. Windows without a usable lead or a QRS complex get none."""
    batch = qrs.shape[0]
    none = Peaks(xp.zeros((batch, 0), dtype=xp.int64, device=device_of(qrs)),
                 xp.zeros((batch, 0), dtype=xp.bool, device=device_of(qrs)))
    energy = envelope(xp, qrs, usable, fs_det)
    distance = max(1, round(_REFRACTORY_S * fs_det))
    pos, valid = _candidates(xp, energy, distance)
    if pos.shape[-1] == 0:
        return none
    height = _take(xp, energy, pos)
    p90 = masked_quantile(xp, height, valid, 0.9)
    typical = masked_quantile(xp, height, valid & (height >= _TYPICAL_SHARE * p90[:, None]), 0.5)
    # A candidate with a higher sample within the refractory period sits on the flank of a larger
    # hump (find_peaks keeps it when that hump's top is farther away): it counts for the noise
    # level and may be found by the search-back, but is not a beat on its own energy.
    crest = _take(xp, sliding_max(xp, energy, distance - 1, distance - 1), pos) <= height
    beat = valid & crest & (height >= _MIN_RELATIVE_ENERGY * typical[:, None])
    beat = _search_back(xp, pos, height, valid, beat, typical)
    beat = _drop_slow_waves(xp, qrs, usable, pos, beat, fs_det)
    beat = beat & xp.any(usable, axis=-1)[:, None]
    full = pos * step
    refined = _refine(xp, smooth, full, beat, fs_out)
    refined, kept = _dedupe(xp, refined, beat, max(1, round(_REFRACTORY_S * fs_out)))
    index, ok = compact(xp, kept, refined)
    return Peaks(index, ok)


def heart_rate_bpm(peaks: np.ndarray, fs_hz: float) -> float | None:
    """Rate from the median R–R interval of consecutive detections (host sample indices);
    ``None`` with < 2 beats."""
    if peaks.size < 2:
        return None
    # np.median's answer (the middle interval, or the mean of the two middle ones) from a sorted
    # list: a window's dozen intervals took np.median ~15 µs, most of a batch's per-window loop.
    rr = sorted(np.diff(peaks).tolist())
    mid = len(rr) // 2
    median = rr[mid] if len(rr) % 2 else (rr[mid - 1] + rr[mid]) / 2
    return float(60.0 * fs_hz / median)
