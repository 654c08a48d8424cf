"""The one preprocessing pipeline: raw ECG window → model input, for training, streaming and screening.

Every number comes from the :class:`~hfrisk.model.contract.card.ModelCard`:

1. :func:`select_window` — ``card.window.window_s`` from ``window_start_s``; refuses rates outside
   ``[min_fs_hz, max_fs_hz]`` and windows shorter than ``min_duration_s``.
2. :func:`~hfrisk.model.contract.leads.conform_leads` — the card's lead order, limb leads derived, rest masked.
3. :func:`~hfrisk.model.frontend.quality.flag_leads` — flat, lead-off and saturated leads become unusable
   (and, when the beats disagree, up to ``max_noisy_leads`` noisy leads: step 6).
4. :func:`~hfrisk.model.frontend.filters.resample` to ``card.input.fs_hz``, then
   :func:`~hfrisk.model.frontend.filters.filter_leads` (high-pass, powerline notches, low-pass).
5. :func:`~hfrisk.model.frontend.beats.detect_r_peaks` on all usable leads, aligned on ``card.input.r_peak_lead``.
6. :func:`~hfrisk.model.frontend.beats.extract_beats` (``r_peak_index`` samples before the R peak,
   ``beat_samples`` in all), :func:`~hfrisk.model.frontend.beats.select_beats` drops outliers, median per lead.
7. :func:`zscore_leads` per lead over the beat (unusable leads exactly 0), :func:`pad_beat`
   symmetric zero padding to ``length_samples``.

A window that is unfit to score still yields a :class:`ModelInput` (the stream records the quality
of every window). When no beat can be cut out (no usable lead, no QRS, all beats at the edges),
``x`` is all zeros, ``lead_mask`` all False and the quality says ``too_few_beats``: nothing is raised
for content. :class:`~hfrisk.model.contract.errors.ECGInputError` is raised only for input that is not a
valid window at all (sampling rate, duration, lead names, NaN).

>>> from hfrisk.model.contract.card import default_card
>>> from hfrisk.model.contract.ecg import ECG
>>> import numpy as np
>>> flat = ECG(samples=np.zeros((12, 5000)), fs_hz=500, lead_names=default_card().input.leads)
>>> item = prepare(flat, default_card())
>>> item.x.shape, item.quality.fit_to_score, item.quality.reasons[0]
((12, 608), False, 'flat_line')
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import neurokit2 as nk
import numpy as np

from hfrisk.model.frontend.beats import (
    detect_r_peaks,
    extract_beats,
    heart_rate_bpm,
    median_beat,
    reference_lead,
    select_beats,
)
from hfrisk.model.contract.card import ModelCard, WindowSpec
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.frontend.filters import filter_leads, resample
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.frontend.quality import QualityReport, assess, beats_disagree, flag_leads, noisiest_lead

__all__ = [
    "ModelInput",
    "prepare",
    "prepare_many",
    "select_window",
    "zscore_leads",
    "pad_beat",
    "cleaned_beat",
]

# Standard deviation (mV) under which a median beat is treated as empty rather than divided by.
_ZSCORE_EPS = 1e-6


@dataclass(frozen=True)
class ModelInput:
    """One window, ready for the network, with what was learnt on the way.

    ``x`` (len(leads), length_samples) float32: z-scored median beat, zero-padded.
    ``lead_mask`` (len(leads),) bool: True where ``x`` carries a real or derived lead; absent and
    unusable (flat, lead-off, saturated, masked as noisy) leads are False and exactly zero in ``x``.
    ``median_beat_mv`` (len(leads), beat_samples): the filtered median beat in mV before scaling
    (for plots and :func:`cleaned_beat`). ``fs_hz``: the source's sampling rate.

    Beats are counted twice, because they answer different questions: ``n_beats_detected`` R peaks
    were found in the window (``detected_r_peaks_s``, seconds from the window start), and
    ``n_beats_used`` of them formed the median beat (``r_peaks_s``): beats that run past the
    window's edges and outlier beats are detected but not used. ``heart_rate_bpm`` comes from the
    detected beats (the median R-R interval, so dropping an ectopic does not halve the rate) and is
    ``None`` with fewer than two.
    """

    x: np.ndarray
    lead_mask: np.ndarray
    quality: QualityReport
    r_peaks_s: np.ndarray
    detected_r_peaks_s: np.ndarray
    n_beats_detected: int
    n_beats_used: int
    heart_rate_bpm: float | None
    fs_hz: float
    derived_leads: tuple[str, ...]
    leads: tuple[str, ...]
    median_beat_mv: np.ndarray
    window_start_s: float
    duration_s: float


def select_window(ecg: ECG, spec: WindowSpec, window_start_s: float = 0.0) -> ECG:
    """The ``spec.window_s`` stretch of ``ecg`` from ``window_start_s`` (less if the record ends
    first); raises ``ECGInputError`` for unusable rates and for less than ``min_duration_s``."""
    if ecg.fs_hz < spec.min_fs_hz:
        raise ECGInputError(
            InputErrorReason.LOW_SAMPLING_RATE,
            f"sampling rate {ecg.fs_hz:g} Hz is below the {spec.min_fs_hz:g} Hz the model card accepts",
        )
    if ecg.fs_hz > spec.max_fs_hz:
        raise ECGInputError(
            InputErrorReason.BAD_SAMPLING_RATE,
            f"sampling rate {ecg.fs_hz:g} Hz is above the {spec.max_fs_hz:g} Hz the model card accepts",
        )
    if window_start_s < 0:
        raise ValueError(f"window_start_s must be >= 0, got {window_start_s}")
    available_s = ecg.duration_s - window_start_s
    # Half a sample of slack: 8 s at a rate like 257 Hz is not a whole number of samples.
    if available_s + 0.5 / ecg.fs_hz < spec.min_duration_s:
        raise ECGInputError(
            InputErrorReason.TOO_SHORT,
            f"{max(available_s, 0.0):.2f} s of signal from {window_start_s:g} s "
            f"(record is {ecg.duration_s:.2f} s); a window needs at least {spec.min_duration_s:g} s",
        )
    return ecg.slice_s(window_start_s, window_start_s + min(spec.window_s, available_s))


def zscore_leads(beat: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-lead z-score along time; leads not in ``keep``, or without variance, are exactly 0."""
    beat = beat.astype(np.float64)
    mean = beat.mean(axis=1, keepdims=True)
    std = beat.std(axis=1, keepdims=True)
    ok = keep[:, None] & (std > _ZSCORE_EPS)
    out = np.divide(beat - mean, std, out=np.zeros_like(beat), where=ok)
    return out.astype(np.float32)


def pad_beat(beat: np.ndarray, length_samples: int) -> np.ndarray:
    """Zero-pad along time to ``length_samples``, splitting the padding evenly (extra sample after)."""
    missing = length_samples - beat.shape[-1]
    before = missing // 2
    return np.pad(beat, ((0, 0), (before, missing - before))).astype(np.float32)


class _Stopwatch:
    """Adds each step's seconds to ``timings`` (a no-op without one): the benchmark's step split
    measures this very code, not a copy of it."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter() if timings is not None else 0.0

    def lap(self, step: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[step] = self.timings.get(step, 0.0) + now - self.last
            self.last = now


def prepare(
    ecg: ECG, card: ModelCard, *, window_start_s: float = 0.0, timings: dict[str, float] | None = None
) -> ModelInput:
    """Turn one window of ``ecg`` into the model's input; see the module docstring for the steps.

    ``timings``, if given, accumulates seconds per step (for ``bench/bench_preprocessing.py``).
    """
    spec_in, fs_out = card.input, card.input.fs_hz
    clock = _Stopwatch(timings)
    window = select_window(ecg, card.window, window_start_s)
    conformed = conform_leads(window, spec_in.leads)
    clock.lap("window_and_leads")
    flags = flag_leads(conformed.samples, conformed.fs_hz, conformed.mask, card.quality)
    usable = conformed.mask & ~flags.unusable
    clock.lap("lead_flags")
    at_rate = resample(conformed.samples, conformed.fs_hz, fs_out)
    clock.lap("resample")
    signal = filter_leads(at_rate, fs_out, card.filters, source_fs_hz=conformed.fs_hz)
    clock.lap("filter")
    preferred = spec_in.leads.index(spec_in.r_peak_lead) if spec_in.r_peak_lead in spec_in.leads else None
    noisy = np.zeros_like(usable)
    while True:
        peaks = detect_r_peaks(signal, fs_out, usable, reference_lead(signal, usable, preferred))
        clock.lap("r_peaks")
        beats, beat_peaks = extract_beats(
            signal, peaks, pre_samples=spec_in.r_peak_index, beat_samples=spec_in.beat_samples
        )
        selection = select_beats(beats, usable, card.quality.min_template_correlation)
        clock.lap("beats_and_median")  # else a second pass would book this under r_peaks
        # A window whose beats disagree may owe it to one or two noisy leads: mask the worst and
        # look again (from the R peaks: the noise may have moved them). A clean window never
        # enters this, so its input is what the model was trained on; nor does one with no lead to
        # spare (a 2-lead Holter strip), whose R peaks stay those of all its leads.
        if (
            noisy.sum() >= card.quality.max_noisy_leads
            or usable.sum() <= card.quality.min_usable_leads
            or not beats_disagree(selection.correlation, card.quality)
        ):
            break
        worst = noisiest_lead(selection.lead_correlation, usable)
        if worst is None:
            break
        noisy[worst] = True
        usable = usable & ~noisy
    if noisy.any():
        flags = replace(flags, noisy=noisy)
    median = median_beat(beats, selection.keep)
    n_used = int(selection.keep.sum())
    lead_mask = usable if n_used else np.zeros_like(usable)
    # From every detected beat: the used ones can have holes where outliers were dropped.
    rate_bpm = heart_rate_bpm(peaks, fs_out)
    clock.lap("beats_and_median")
    quality = assess(
        leads=spec_in.leads,
        present=conformed.mask,
        flags=flags,
        beat_correlation=selection.correlation,
        lead_correlation=selection.lead_correlation,
        n_beats_detected=len(peaks),
        n_beats_used=n_used,
        heart_rate_bpm=rate_bpm,
        spec=card.quality,
        window=card.window,
    )
    clock.lap("quality")
    x = pad_beat(zscore_leads(median, lead_mask), spec_in.length_samples)
    clock.lap("normalise_and_pad")
    return ModelInput(
        x=x,
        lead_mask=lead_mask,
        quality=quality,
        r_peaks_s=beat_peaks[selection.keep] / fs_out,
        detected_r_peaks_s=peaks / fs_out,
        n_beats_detected=len(peaks),
        n_beats_used=n_used,
        heart_rate_bpm=rate_bpm,
        fs_hz=ecg.fs_hz,
        derived_leads=conformed.derived,
        leads=spec_in.leads,
        median_beat_mv=np.where(lead_mask[:, None], median, 0.0).astype(np.float32),
        window_start_s=float(window_start_s),
        duration_s=window.duration_s,
    )


def prepare_many(
    ecgs: Iterable[ECG], card: ModelCard, *, window_start_s: float = 0.0
) -> tuple[np.ndarray, list[ModelInput]]:
    """:func:`prepare` each ECG; returns the stacked batch ``(B, len(leads), length_samples)`` and the
    inputs in the same order. The first ``ECGInputError`` propagates (call :func:`prepare` per
    record to skip bad ones)."""
    items = [prepare(ecg, card, window_start_s=window_start_s) for ecg in ecgs]
    shape = (0, len(card.input.leads), card.input.length_samples)
    batch = np.stack([item.x for item in items]) if items else np.zeros(shape, np.float32)
    return batch, items


def cleaned_beat(item: ModelInput, card: ModelCard) -> np.ndarray:
    """The pretraining reconstruction target (paper §1.1): the median beat cleaned with NeuroKit2's
    ``ecg_clean`` ("neurokit": 0.5 Hz high-pass and powerline filter), z-scored per lead and padded
    like ``x``. Masked leads stay exactly 0."""
    fs = int(round(card.input.fs_hz))
    cleaned = np.zeros_like(item.median_beat_mv, dtype=np.float64)
    for i in np.flatnonzero(item.lead_mask):
        cleaned[i] = nk.ecg_clean(item.median_beat_mv[i].astype(np.float64), sampling_rate=fs, method="neurokit")
    return pad_beat(zscore_leads(cleaned, item.lead_mask), card.input.length_samples)
