"""Beat selection on a fast, irregular rhythm: the beats agree on their QRS-T core while their
neighbours move about inside the 1.2-s beat window; they must be kept, not called outliers."""

import numpy as np

from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend.beats import extract_beats, select_beats

CARD = default_card()
FS = CARD.input.fs_hz


def _qrs_t(t: np.ndarray) -> np.ndarray:
    """A QRS (narrow Gaussian) and a T wave 0.25 s later, R at t = 0."""
    return np.exp(-0.5 * (t / 0.012) ** 2) + 0.3 * np.exp(-0.5 * ((t - 0.25) / 0.05) ** 2)


def test_irregular_fast_beats_are_kept_on_their_core():
    rng = np.random.default_rng(1)
    rr = rng.uniform(0.3, 0.55, size=30)  # atrial fibrillation at ~140 bpm
    peaks_s = 0.5 + np.cumsum(rr)
    peaks_s = peaks_s[peaks_s < 9.5]
    t = np.arange(int(10 * FS)) / FS
    lead = sum(_qrs_t(t - p) for p in peaks_s)
    samples = np.vstack([lead, 0.5 * lead, -lead]) + rng.normal(0, 0.01, (3, t.size))
    peaks = np.round(peaks_s * FS).astype(np.int64)
    beats, kept = extract_beats(
        samples, peaks, pre_samples=CARD.input.r_peak_index, beat_samples=CARD.input.beat_samples
    )
    selection = select_beats(beats, np.ones(3, bool), CARD.quality.min_template_correlation)
    assert len(kept) >= 15 and selection.keep.all()
    assert selection.correlation.min() > 0.8


def test_regular_beats_are_compared_over_the_whole_window():
    """A regular rhythm agrees over the whole window: the selection (and so the model's input)
    is what it was before the core existed."""
    t = np.arange(int(10 * FS)) / FS
    peaks_s = np.arange(0.6, 9.6, 0.8)
    lead = sum(_qrs_t(t - p) for p in peaks_s)
    odd = peaks_s[5]
    lead -= 2 * _qrs_t(t - odd)  # one beat upside down: an ectopic
    samples = np.vstack([lead, lead])
    peaks = np.round(peaks_s * FS).astype(np.int64)
    beats, kept = extract_beats(
        samples, peaks, pre_samples=CARD.input.r_peak_index, beat_samples=CARD.input.beat_samples
    )
    selection = select_beats(beats, np.ones(2, bool), CARD.quality.min_template_correlation)
    # The ectopic and the beat whose window holds it are dropped (the core alone would keep the latter).
    assert np.flatnonzero(~selection.keep).tolist() == [list(kept).index(peaks[5]) - 1, list(kept).index(peaks[5])]
