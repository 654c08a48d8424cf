"""The signal-quality index: may this window be scored, and if not, why.

Two kinds of evidence, both thresholded by the card's :class:`~hfrisk.model.contract.card.QualitySpec`:

* per lead, from the raw window (mV, source rate, before any filter): a **flat line** (std below
  ``flat_std_mv`` over any 2 s: a dead or intermittent electrode), a **lead off** (an excursion
  beyond ``lead_off_amplitude_mv``), **saturation** (more than ``saturation_fraction`` of samples
  pinned at the window's extreme values: ADC clipping) and **baseline wander** (the 1-s moving
  average spans more than ``baseline_wander_mv``).
  Flat, lead-off and saturated leads are *unusable*: preprocessing zeroes and masks them.
  Baseline wander is only reported: the high-pass filter removes it, and if it leaks into the
  beats the template correlation drops.
* per lead, from the beats: a **noisy lead** (muscle noise, electrode motion in one or two leads).
  Only looked for when the window would otherwise be noisy: preprocessing then masks the lead
  whose beats agree least with its own median (:func:`noisiest_lead`) and selects the beats again,
  up to ``max_noisy_leads`` leads, so one bad electrode does not cost the whole ECG while a clean
  window is never touched.
* per window, from the beats: too few beats for a median (``min_beats``), too many for the window
  (a heart rate above ``max_beats`` per ``window_s``: 300 bpm by default), too few usable leads
  (``min_usable_leads``, and every one of ``required_leads``), and **noisy**: fewer than half of
  the beats agree with the template formed by the other beats (correlation at least
  ``min_template_correlation``), or the agreeing beats' mean correlation is below it (NeuroKit's
  ``ecg_quality`` measures the same thing per lead at ~6 ms a lead, too slow for a 12-lead
  stream). Beats that disagree in a minority are ectopics or artefacts: the beat selection leaves
  them out of the median and the window is scored.

The score is ``consistency × usable / present``: the mean beat-to-template correlation of the
agreeing beats (of all beats when fewer than two agree; clipped to [0, 1]) times the fraction of
the source's leads that are usable; 0 when there is no beat. A window
is ``fit_to_score`` when no blocking reason applies and ``score >= min_score``.

Reason codes (:class:`QualityReason`) are stable strings: the stream stores them with every
window, dashboards count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import lru_cache

from typing import Any

import array_api_compat
import numpy as np

from hfrisk.model.contract.card import QualitySpec, WindowSpec
from hfrisk.model.frontend.arrays import device_of, masked_quantile

__all__ = [
    "QualityReason", "BLOCKING_REASONS", "MIN_AGREEING_SHARE", "LeadFlags", "flag_leads", "flag_leads_batch", "QualityReport",
    "assess", "assess_batch",
    "beats_disagree", "noisiest_lead",
]


class QualityReason(str, Enum):
    FLAT_LINE = "flat_line"
    LEAD_OFF = "lead_off"
    SATURATION = "saturation"
    BASELINE_WANDER = "baseline_wander"
    NOISY_LEAD = "noisy_lead"
    TOO_FEW_BEATS = "too_few_beats"
    TOO_MANY_BEATS = "too_many_beats"
    TOO_FEW_LEADS = "too_few_leads"
    NOISY = "noisy"
    LOW_SCORE = "low_score"


# Reasons that on their own make a window unfit. Lead-level reasons only mask their leads; they
# block through TOO_FEW_LEADS or the score when too many leads are lost.
BLOCKING_REASONS = frozenset(
    {
        QualityReason.TOO_FEW_BEATS,
        QualityReason.TOO_MANY_BEATS,
        QualityReason.TOO_FEW_LEADS,
        QualityReason.NOISY,
        QualityReason.LOW_SCORE,
    }
)

# Samples within this fraction of the window's range from its max (min) count as pinned there;
# real ADC clipping holds one code exactly, a clean R peak touches its maximum for 1–3 samples.
_SATURATION_TOLERANCE = 1e-3
# A lead is flat if it is flat over any stretch this long: at 30 bpm or faster every such stretch
# holds a QRS complex. On PTB-XL records 1-500 the smallest 2-s std of any lead is 0.018 mV.
_FLAT_SEGMENT_S = 2.0
# Window (s) of the moving average that estimates the baseline: longer than any QRS-T; and the
# spacing (s, at most) of the points where its range is taken.
_BASELINE_WINDOW_S = 1.0
_BASELINE_STEP_S = 0.02
# A window is noisy when fewer than this share of its beats agree with the template: ectopic
# beats are dropped from the median, but they must not outnumber the beats it is made of
# (bigeminy, half and half, still passes).
MIN_AGREEING_SHARE = 0.5


@dataclass(frozen=True)
class LeadFlags:
    """Per-lead findings on the raw window, each ``(n_leads,)`` bool (False for absent leads)."""

    flat: np.ndarray
    lead_off: np.ndarray
    saturated: np.ndarray
    baseline_wander: np.ndarray
    # Set by preprocessing from the beats (see noisiest_lead); None: nothing masked for noise.
    noisy: np.ndarray | None = field(default=None)

    @property
    def unusable(self) -> np.ndarray:
        bad = self.flat | self.lead_off | self.saturated
        return bad if self.noisy is None else bad | self.noisy

    def reported(self, present: np.ndarray) -> tuple[np.ndarray, ...]:
        """What a quality report names, in its order: the usable leads of ``present``, then the
        flat, lead-off, saturated, wandering and noisy ones (none noisy when ``noisy`` is None).
        One window (L,) or a batch (B, L)."""
        noisy = self.noisy if self.noisy is not None else np.zeros_like(present)
        return present & ~self.unusable, self.flat, self.lead_off, self.saturated, self.baseline_wander, noisy


def _min_segment_std(xp: Any, raw: Any, fs_hz: float) -> Any:
    """Per lead, the smallest std over consecutive stretches of _FLAT_SEGMENT_S covering the window
    (the last one ends at the window's end); the whole window's std if it is shorter."""
    n = raw.shape[-1]
    size = int(round(_FLAT_SEGMENT_S * fs_hz))
    if n <= size:
        return xp.std(raw, axis=-1)
    # Whole stretches from the start are a reshape (a view, not a gathered copy), then the one
    # that ends at the window's end.
    whole = (n - 1) // size
    stds = xp.std(xp.reshape(raw[..., : whole * size], raw.shape[:-1] + (whole, size)), axis=-1)
    return xp.minimum(xp.min(stds, axis=-1), xp.std(raw[..., n - size :], axis=-1))


def _max_deviation_from_median(xp: Any, raw: Any, hi: Any, lo: Any, limit: float) -> Any:
    """``max |raw - median|`` per lead compared with ``limit`` (True above it).

    The deviation lies between half the range and the range (the median is inside it), so the
    median, a sort of every lead, is only computed for leads that this does not settle.
    """
    span = hi - lo
    above = span / 2 > limit
    unsure = ~above & (span > limit)
    if bool(xp.any(unsure)):
        part = raw[unsure]  # (n_unsure, n)
        med = masked_quantile(xp, part, xp.ones(part.shape, dtype=xp.bool, device=device_of(part)), 0.5)
        far = xp.max(xp.abs(part - med[:, None]), axis=-1) > limit
        above = xp.where(unsure, _scatter(xp, unsure, far), above)
    return above


def _scatter(xp: Any, where: Any, values: Any) -> Any:
    """An array shaped like boolean ``where`` holding ``values`` at its True places (in order)."""
    flat = xp.reshape(where, (-1,))
    rank = xp.cumulative_sum(xp.astype(flat, xp.int64)) - 1
    picked = xp.take(values, xp.clip(rank, min=0), axis=0)
    return xp.reshape(flat & picked, where.shape)


def _baseline_span(xp: Any, raw: Any, fs_hz: float) -> Any:
    """Range of the _BASELINE_WINDOW_S moving average where it is two-sided (``ptp`` of
    ``uniform_filter1d(raw, size)[edge:-edge]``), taken at every _BASELINE_STEP_S rather than at
    every sample: block sums, then moving sums of whole blocks (one pass over the signal instead of
    a cumulative sum and two copies; the 1-s average moves by less than a thousandth of its range
    between two such points)."""
    n = raw.shape[-1]
    size = max(1, int(round(_BASELINE_WINDOW_S * fs_hz)))
    if n < size:
        return xp.max(raw, axis=-1) - xp.min(raw, axis=-1)
    block = max(d for d in range(1, max(1, int(_BASELINE_STEP_S * fs_hz)) + 1) if size % d == 0)
    n_blocks = n // block
    blocks = xp.reshape(raw[..., : n_blocks * block], raw.shape[:-1] + (n_blocks, block))
    # a sum over a short last axis runs row by row; as a matrix product it is one call
    sums = xp.matmul(blocks, xp.ones((block, 1), dtype=raw.dtype, device=device_of(raw)))[..., 0]
    zero = xp.zeros(raw.shape[:-1] + (1,), dtype=sums.dtype, device=device_of(raw))
    csum = xp.concat((zero, xp.cumulative_sum(sums, axis=-1)), axis=-1)
    per = size // block
    base = (csum[..., per:] - csum[..., :-per]) / size
    return xp.max(base, axis=-1) - xp.min(base, axis=-1)


def flag_leads_batch(xp: Any, raw: Any, fs_hz: float, present: Any, spec: QualitySpec) -> LeadFlags:
    """Flag flat, disconnected, clipped and wandering leads of ``raw`` (B, L, n) in mV; the flags
    are (B, L) arrays of ``xp``."""
    flat = _min_segment_std(xp, raw, fs_hz) < spec.flat_std_mv
    hi, lo = xp.max(raw, axis=-1), xp.min(raw, axis=-1)
    lead_off = _max_deviation_from_median(xp, raw, hi, lo, spec.lead_off_amplitude_mv)
    tol = (_SATURATION_TOLERANCE * (hi - lo))[..., None]
    pinned = xp.mean(xp.astype((raw >= hi[..., None] - tol) | (raw <= lo[..., None] + tol), xp.float32), axis=-1)
    saturated = (pinned > spec.saturation_fraction) & ~flat  # a flat line is pinned everywhere
    wander = _baseline_span(xp, raw, fs_hz) > spec.baseline_wander_mv
    return LeadFlags(
        flat=flat & present,
        lead_off=lead_off & present & ~flat,
        saturated=saturated & present,
        baseline_wander=wander & present & ~(flat | lead_off | saturated),
    )


def flag_leads(raw: np.ndarray, fs_hz: float, present: np.ndarray, spec: QualitySpec) -> LeadFlags:
    """Flag flat, disconnected, clipped and wandering leads of ``raw`` (n_leads, n) in mV: one
    window of :func:`flag_leads_batch` on numpy."""
    xp = array_api_compat.array_namespace(np.zeros(0))
    flags = flag_leads_batch(xp, xp.asarray(raw, dtype=xp.float64)[None], fs_hz, xp.asarray(present)[None], spec)
    return LeadFlags(
        flat=flags.flat[0], lead_off=flags.lead_off[0], saturated=flags.saturated[0], baseline_wander=flags.baseline_wander[0]
    )


def _consistency(beat_correlation: np.ndarray, min_correlation: float) -> tuple[float, int]:
    """Mean beat-to-template correlation (clipped to [0, 1]) of the beats that agree with the
    template (correlation ``>= min_correlation``, the beats that form the median), or of all beats
    when fewer than two agree; and how many agree. ``(0, 0)`` without beats."""
    if beat_correlation.size == 0:
        return 0.0, 0
    agree = beat_correlation >= min_correlation
    chosen = beat_correlation[agree] if agree.sum() >= 2 else beat_correlation
    return float(np.clip(chosen, 0.0, 1.0).mean()), int(agree.sum())


def beats_disagree(beat_correlation: np.ndarray, spec: QualitySpec) -> bool:
    """Whether the beats make the window ``noisy``: no dominant beat shape for a median.

    One beat says nothing about noise: it is reported as too few beats instead. Ectopic beats
    (PVCs, aberrant or paced beats, an irregular rhythm's varying T waves) disagree with the
    template too; the beat selection drops them, so they only make a window noisy when they are
    the majority.
    """
    consistency, agreeing = _consistency(beat_correlation, spec.min_template_correlation)
    return _disagree(consistency, agreeing, beat_correlation.size, spec)


def _disagree(consistency: float, agreeing: int, n_beats: int, spec: QualitySpec) -> bool:
    """:func:`beats_disagree` from :func:`_consistency`'s figures (``assess`` has them already)."""
    return n_beats >= 2 and (consistency < spec.min_template_correlation or agreeing < MIN_AGREEING_SHARE * n_beats)


def noisiest_lead(lead_correlation: np.ndarray, usable: np.ndarray) -> int | None:
    """The usable lead whose beats agree least with the lead's own median beat: the one to mask
    when the window's beats disagree. The beat correlation is energy-weighted over the leads, so
    a lead carrying noise at the QRS's scale drags every beat down while its own beat-to-beat
    correlation is the lowest of the window; None without usable leads."""
    if not usable.any():
        return None
    return int(np.flatnonzero(usable)[np.argmin(lead_correlation[usable])])


@dataclass(frozen=True)
class QualityReport:
    """Quality of one window; ``to_dict()`` is what the stream stores."""

    score: float
    fit_to_score: bool
    reasons: tuple[str, ...]
    usable_leads: tuple[str, ...]
    flat_leads: tuple[str, ...]
    lead_off_leads: tuple[str, ...]
    saturated_leads: tuple[str, ...]
    baseline_wander_leads: tuple[str, ...]
    # Masked because their beats disagreed with their median while the others agreed.
    noisy_leads: tuple[str, ...]
    # Mean correlation of the kept beats with the median beat, per lead (0 = unusable/absent).
    lead_correlation: dict[str, float]
    template_correlation: float
    n_beats_detected: int
    n_beats_used: int

    def to_dict(self) -> dict:
        return asdict(self)


def _names(leads: tuple[str, ...], flags: np.ndarray) -> tuple[str, ...]:
    # tolist: iterating the array itself makes a numpy scalar of every flag.
    return tuple(name for name, on in zip(leads, flags.tolist()) if on)


@lru_cache(maxsize=4096)
def _names_of(leads: tuple[str, ...], mask: int) -> tuple[str, ...]:
    return tuple(name for i, name in enumerate(leads) if mask >> i & 1)


def _row_names(leads: tuple[str, ...], flags: np.ndarray) -> list[tuple[str, ...]]:
    """:func:`_names` of each row of ``flags`` (B, L): one matrix product for the batch, then a
    remembered tuple per combination of leads (a ward's windows share a few)."""
    masks = flags.astype(np.int64) @ (np.int64(1) << np.arange(len(leads), dtype=np.int64))
    return [_names_of(leads, mask) for mask in masks.tolist()]


# The reasons a lead flag gives, in the order a report lists them.
_FLAG_REASONS = (
    QualityReason.FLAT_LINE, QualityReason.LEAD_OFF, QualityReason.SATURATION, QualityReason.BASELINE_WANDER,
    QualityReason.NOISY_LEAD,
)


def _report(
    *,
    leads: tuple[str, ...],
    names: tuple[tuple[str, ...], ...],
    flagged: tuple[bool, ...],
    n_usable: int,
    n_present: int,
    beat_correlation: np.ndarray,
    lead_correlation: list[float],
    n_beats_detected: int,
    n_beats_used: int,
    heart_rate_bpm: float | None,
    spec: QualitySpec,
    window: WindowSpec,
) -> QualityReport:
    """The rules of :func:`assess`, from a window's figures: ``names`` the usable, flat, lead-off,
    saturated, wandering and noisy leads; ``flagged`` whether any lead is each of the last five."""
    usable_names = names[0]
    reasons = [reason for reason, on in zip(_FLAG_REASONS, flagged) if on]
    if n_usable < spec.min_usable_leads or not set(spec.required_leads) <= set(usable_names):
        reasons.append(QualityReason.TOO_FEW_LEADS)
    if n_beats_used < spec.min_beats:
        reasons.append(QualityReason.TOO_FEW_BEATS)
    # max_beats is stated per card window: a rate. The median R-R interval measures it even when
    # a detector misses some beats of a fast rhythm.
    if heart_rate_bpm is not None and heart_rate_bpm > spec.max_beats * 60.0 / window.window_s:
        reasons.append(QualityReason.TOO_MANY_BEATS)

    consistency, agreeing = _consistency(beat_correlation, spec.min_template_correlation)
    if _disagree(consistency, agreeing, beat_correlation.size, spec):
        reasons.append(QualityReason.NOISY)
    score = consistency * (n_usable / n_present) if n_present else 0.0
    if score < spec.min_score and not any(r in BLOCKING_REASONS for r in reasons):
        reasons.append(QualityReason.LOW_SCORE)

    return QualityReport(
        score=round(score, 4),
        fit_to_score=not any(r in BLOCKING_REASONS for r in reasons),
        reasons=tuple(r.value for r in reasons),
        usable_leads=usable_names,
        flat_leads=names[1],
        lead_off_leads=names[2],
        saturated_leads=names[3],
        baseline_wander_leads=names[4],
        noisy_leads=names[5],
        lead_correlation={name: round(c, 4) for name, c in zip(leads, lead_correlation)},
        template_correlation=round(consistency, 4),
        n_beats_detected=int(n_beats_detected),
        n_beats_used=int(n_beats_used),
    )


def assess(
    *,
    leads: tuple[str, ...],
    present: np.ndarray,
    flags: LeadFlags,
    beat_correlation: np.ndarray,
    lead_correlation: np.ndarray,
    n_beats_detected: int,
    n_beats_used: int,
    heart_rate_bpm: float | None,
    spec: QualitySpec,
    window: WindowSpec,
) -> QualityReport:
    """Combine lead flags and beat statistics into a :class:`QualityReport`.

    ``beat_correlation`` holds, for every beat inside the window, its correlation with the
    provisional median beat over the usable leads.
    """
    usable, *on = flags.reported(present)
    return _report(
        leads=leads,
        names=tuple(_names(leads, a) for a in (usable, *on)),
        flagged=tuple(bool(a.any()) for a in on),
        n_usable=int(usable.sum()),
        n_present=int(present.sum()),
        beat_correlation=beat_correlation,
        lead_correlation=np.asarray(lead_correlation, float).tolist(),
        n_beats_detected=n_beats_detected,
        n_beats_used=n_beats_used,
        heart_rate_bpm=heart_rate_bpm,
        spec=spec,
        window=window,
    )


def assess_batch(
    *,
    leads: tuple[str, ...],
    present: np.ndarray,
    flags: LeadFlags,
    beat_correlation: Sequence[np.ndarray],
    lead_correlation: np.ndarray,
    n_beats_detected: Sequence[int],
    n_beats_used: Sequence[int],
    heart_rate_bpm: Sequence[float | None],
    spec: QualitySpec,
    window: WindowSpec,
) -> list[QualityReport]:
    """:func:`assess` for each row of a batch (``present``, the flags, ``lead_correlation``:
    (B, L); the rest one per window): the same reports, with the lead names, flags and counts
    taken for the whole batch at once instead of window by window (~80 µs a window of per-window
    numpy calls before; ``tests/model/test_quality.py`` holds it to :func:`assess`)."""
    usable, *on = flags.reported(present)
    names = list(zip(*(_row_names(leads, a) for a in (usable, *on))))
    flagged = list(zip(*(a.any(axis=-1).tolist() for a in on)))
    n_usable, n_present = usable.sum(axis=-1).tolist(), present.sum(axis=-1).tolist()
    correlations = np.asarray(lead_correlation, float).tolist()
    return [
        _report(
            leads=leads, names=names[row], flagged=flagged[row], n_usable=n_usable[row], n_present=n_present[row],
            beat_correlation=beat_correlation[row], lead_correlation=correlations[row],
            n_beats_detected=n_beats_detected[row], n_beats_used=n_beats_used[row],
            heart_rate_bpm=heart_rate_bpm[row], spec=spec, window=window,
        )
        for row in range(len(beat_correlation))
    ]
