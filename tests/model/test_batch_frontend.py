"""The batched front end against libraries and against the per-window reference, on real records.

Each array-API piece is held to the library computation it replaces (SciPy's zero-phase filter,
``find_peaks``, ``np.median``, ``np.percentile``, ``maximum_filter1d``); the whole batch engine to
``prepare_reference`` (the SciPy implementation it replaced) on every real record in tests/data; the
same code on torch's CPU tensors to its numpy run (what a GPU runs is that torch code on CUDA); and a
window's output to itself prepared alone (a window must not depend on its batch-mates).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from scipy.ndimage import maximum_filter1d

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.frontend import detection, spectral
from hfrisk.model.frontend.arrays import ArrayBackend, compact, masked_quantile, sliding_max
from hfrisk.model.frontend.filters import design_filters
from hfrisk.model.frontend.preprocessing import ModelInput, prepare, prepare_windows
from hfrisk.model.frontend.reference import prepare_reference
from hfrisk.model.frontend.templates import median
from hfrisk.model.readers.dispatch import read_ecg

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
CARD = default_card()
NP = ArrayBackend("numpy")
XP = NP.namespace()


def _records() -> list[Path]:
    hr = sorted((DATA / "ptbxl" / "records500").rglob("*_hr.hea"))
    lr = sorted((DATA / "ptbxl" / "records100").rglob("*_lr.hea"))[:8]
    cinc = sorted((DATA / "cinc2021").glob("*.hea"))
    return [p.with_suffix("") for p in hr + lr + cinc]


RECORDS = _records()


@pytest.fixture(scope="module")
def ecgs():
    return [read_ecg(path) for path in RECORDS]


def test_filter_chain_is_the_zero_phase_filter_of_scipy():
    """Away from the first and last second (where any finite zero-phase filter has to guess the
    signal beyond the window), the FFT chain equals ``sosfiltfilt`` run with a window-long
    reflection: the steady-state answer both approximate."""
    ecg = conform_leads(read_ecg(DATA / "ptbxl" / "records500" / "00000" / "00001_hr"), CARD.input.leads)
    raw = ecg.samples.astype(np.float64)
    ideal = signal.sosfiltfilt(design_filters(500.0, CARD.filters, 250.0), raw, axis=-1, padlen=raw.shape[-1] - 1)
    p = spectral.plan(500.0, raw.shape[-1], 500.0, CARD.filters)
    got = spectral.filtered(XP, spectral.spectra(XP, raw[None].astype(np.float32), p), p)[0]
    assert got.dtype == np.float32 and got.shape == raw.shape
    inner = slice(500, -500)
    scale = np.abs(ideal).max()
    assert np.abs(got - ideal)[:, inner].max() < 3e-3 * scale
    # and the whole window stays within a few percent of it at the very edges
    assert np.abs(got - ideal).max() < 3e-2 * scale


def test_qrs_band_is_scipys_bandpass_of_the_filtered_signal():
    ecg = conform_leads(read_ecg(DATA / "ptbxl" / "records500" / "00000" / "00002_hr"), CARD.input.leads)
    raw = ecg.samples.astype(np.float32)
    p = spectral.plan(500.0, raw.shape[-1], 500.0, CARD.filters)
    spec = spectral.spectra(XP, raw[None], p)
    filt = spectral.filtered(XP, spec, p)[0].astype(np.float64)
    band = signal.butter(2, (5.0, 25.0), "bandpass", fs=250.0, output="sos")
    expected = signal.sosfiltfilt(band, filt[:, ::2], axis=-1, padlen=2499)
    got = spectral.band(XP, spec, p, "qrs")[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected)[:, 250:-250].max() < 2e-3 * np.abs(expected).max()


def test_candidates_are_find_peaks_with_distance():
    """On real envelopes the candidates are ``find_peaks(energy, distance=...)``'s; on random
    smooth signals (flat tops, chains of ever higher neighbours) at least 98 % of the time."""
    distance = 38
    for path in RECORDS[::4]:
        ecg = conform_leads(read_ecg(path), CARD.input.leads)
        p = spectral.plan(ecg.fs_hz, ecg.samples.shape[-1], 500.0, CARD.filters)
        qrs = spectral.band(XP, spectral.spectra(XP, ecg.samples[None].astype(np.float32), p), p, "qrs")
        energy = detection.envelope(XP, qrs, ecg.mask[None], p.fs_det)
        pos, valid = detection._candidates(XP, energy, distance)
        np.testing.assert_array_equal(pos[0][valid[0]], signal.find_peaks(energy[0], distance=distance)[0])
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(200):
        energy = np.convolve(rng.random(2500) ** 4, np.ones(25) / 25, mode="same").astype(np.float32)[None]
        pos, valid = detection._candidates(XP, energy, distance)
        same += np.array_equal(pos[0][valid[0]], signal.find_peaks(energy[0], distance=distance)[0])
    assert same >= 196


def test_array_helpers_match_numpy_and_scipy():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(9, 17)).astype(np.float32)
    valid = rng.random((9, 17)) < 0.6
    valid[0] = False
    for q in (0.0, 0.2, 0.5, 0.9, 1.0):
        got = masked_quantile(XP, values, valid, q)
        assert np.isnan(got[0])
        for row in range(1, 9):
            if valid[row].any():
                np.testing.assert_allclose(got[row], np.percentile(values[row][valid[row]], 100 * q), rtol=1e-5)
    flags = rng.random((7, 40)) < 0.3
    flags[2] = False
    pos, ok = compact(XP, flags)
    for row in range(7):
        np.testing.assert_array_equal(pos[row][ok[row]], np.flatnonzero(flags[row]))
    x = rng.normal(size=(4, 300)).astype(np.float32)
    for before in (0, 1, 5, 37):
        np.testing.assert_array_equal(sliding_max(XP, x, before, before), maximum_filter1d(x, 2 * before + 1, mode="constant", cval=-np.inf))
    waves = rng.normal(size=(5, 3, 13, 40)).astype(np.float32)
    keep = rng.random((5, 13)) < 0.7
    keep[1] = False
    got = median(XP, waves, keep)
    for b in range(5):
        expected = np.median(waves[b][:, keep[b]], axis=1) if keep[b].any() else np.zeros((3, 40))
        np.testing.assert_allclose(got[b], expected, atol=1e-6)


def test_slope_is_the_unit_power_of_numpys_gradient():
    rng = np.random.default_rng(5)
    qrs = rng.normal(size=(3, 12, 500)).astype(np.float32) * rng.uniform(0.1, 3, (3, 12, 1)).astype(np.float32)
    usable = rng.random((3, 12)) < 0.8
    grad = np.gradient(qrs.astype(np.float64), axis=-1)
    grad /= grad.std(axis=-1, keepdims=True)
    expected = np.sqrt(np.stack([np.mean(grad[b][usable[b]] ** 2, axis=0) for b in range(3)]))
    np.testing.assert_allclose(detection._slope(XP, qrs, usable), expected, rtol=1e-4)


def _same(a: ModelInput, b: ModelInput, atol: float) -> None:
    np.testing.assert_allclose(a.x, b.x, atol=atol)
    np.testing.assert_array_equal(a.lead_mask, b.lead_mask)
    np.testing.assert_array_equal(a.detected_r_peaks_s, b.detected_r_peaks_s)
    np.testing.assert_array_equal(a.r_peaks_s, b.r_peaks_s)
    assert a.quality.reasons == b.quality.reasons and a.quality.fit_to_score == b.quality.fit_to_score


def test_batched_front_end_agrees_with_the_reference_on_real_records(ecgs):
    """The SciPy per-window implementation and the batch engine on every real record here: the
    same verdicts, the same R peaks to 4 ms, and model inputs that correlate > 0.99 (the two
    filters differ only in how they guess the signal past the window's edges, and resample a
    100-Hz record differently). A QRS cut by the window's first tens of milliseconds may be
    detected by one only, and a beat whose correlation sits on the threshold kept by one only."""
    batched = prepare_windows([(ecg, 0.0) for ecg in ecgs], CARD, backend=NP)
    differ = 0
    for path, ecg, new in zip(RECORDS, ecgs, batched):
        ref = prepare_reference(ecg, CARD)
        assert isinstance(new, ModelInput), path
        assert new.quality.fit_to_score == ref.quality.fit_to_score, path
        assert abs(new.n_beats_used - ref.n_beats_used) <= 1, path
        assert abs(new.n_beats_detected - ref.n_beats_detected) <= 1, path
        if ref.n_beats_used:
            offsets = np.abs(new.r_peaks_s[:, None] - ref.detected_r_peaks_s[None, :]).min(axis=1)
            assert offsets.max() <= 0.004, path
            assert np.corrcoef(new.x.ravel(), ref.x.ravel())[0, 1] > 0.99, path
        differ += (new.n_beats_detected, new.n_beats_used) != (ref.n_beats_detected, ref.n_beats_used)
    assert differ <= len(RECORDS) // 4


def test_a_window_does_not_depend_on_its_batch_mates(ecgs):
    """Alone or among windows of other rates, lengths and heart rates: the same output."""
    mixed = [(ecg, 0.0) for ecg in ecgs] + [(ecgs[0], 1.5)]
    together = prepare_windows(mixed, CARD, backend=NP, batch_size=64)
    for (ecg, start), item in zip(mixed, together):
        _same(item, prepare(ecg, CARD, window_start_s=start, backend=NP), atol=1e-5)


def test_torch_runs_the_same_code(ecgs):
    """The array-API engine on torch's CPU tensors (a GPU runs this code on CUDA) gives the numpy
    answers, to float32 rounding."""
    torch = pytest.importorskip("torch")
    assert torch is not None
    requests = [(ecg, 0.0) for ecg in ecgs]
    on_numpy = prepare_windows(requests, CARD, backend=NP)
    on_torch = prepare_windows(requests, CARD, backend=ArrayBackend("torch", "cpu"))
    for a, b in zip(on_numpy, on_torch):
        _same(a, b, atol=2e-3)
        np.testing.assert_allclose(a.median_beat_mv, b.median_beat_mv, atol=2e-4)


def test_a_window_without_beats_beside_others_raises_no_overflow(ecgs):
    # Among detections of a window with none kept, the median slope was big + big: float overflow
    # (a RuntimeWarning on Challenge 2011's flat recordings). Halving first keeps it finite.
    from dataclasses import replace

    ecg = ecgs[0]
    spike = np.zeros_like(ecg.samples)
    spike[:, ecg.samples.shape[1] // 2] = 3.0  # one candidate, no QRS
    quiet = replace(ecg, samples=spike)
    flat = replace(ecg, samples=np.zeros_like(ecg.samples))
    with np.errstate(over="raise"):
        items = prepare_windows([(ecg, 0.0), (quiet, 0.0), (flat, 0.0)], default_card())
    alone = prepare_windows([(ecg, 0.0)], default_card())[0]
    np.testing.assert_array_equal(items[0].x, alone.x)  # the others leave it as it was
