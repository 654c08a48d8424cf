"""The per-window front end the batched one replaced, kept as its reference.

:func:`prepare_reference` is the implementation of ``prepare`` before the batch engine
(:mod:`hfrisk.model.frontend.batch`): one window at a time on SciPy's zero-phase IIR filters
(``sosfiltfilt``), polyphase resampling (``resample_poly``) and ``find_peaks``. It is not on any
product path: ``tests/model/test_batch_vs_reference.py`` holds the batch engine to it on real
records, and ``bench/bench_preprocessing.py`` measures the speed-up against it in the same run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.frontend.batch import Stopwatch
from hfrisk.model.frontend.beats import (
    detect_r_peaks,
    extract_beats,
    heart_rate_bpm,
    median_beat,
    reference_lead,
    select_beats,
)
from hfrisk.model.frontend.filters import filter_leads, resample
from hfrisk.model.frontend.preprocessing import ModelInput, pad_beat, select_window, zscore_leads
from hfrisk.model.frontend.quality import assess, beats_disagree, flag_leads, noisiest_lead

__all__ = ["prepare_reference"]


def prepare_reference(
    ecg: ECG, card: ModelCard, *, window_start_s: float = 0.0, timings: dict[str, float] | None = None
) -> ModelInput:
    """:func:`~hfrisk.model.frontend.preprocessing.prepare` as it was before the batched front end:
    one window, SciPy's ``sosfiltfilt`` and ``resample_poly``, ``find_peaks``.

    ``timings``, if given, accumulates seconds per step (for ``bench/bench_preprocessing.py``).
    """
    spec_in, fs_out = card.input, card.input.fs_hz
    clock = Stopwatch(timings)
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
