"""The metric code of the front-end benchmark (bench/frontend_metrics.py, bench/references/ludb.py), on
records under tests/data and synthetic signals: never on ../shared."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from bench.frontend_metrics import (
    BeatMatch,
    add_noise,
    detect_long,
    detect_window,
    error_summary,
    gate_summary,
    match_beats,
    qrs_amplitude,
    window_plan,
)
from bench.references import mitdb
from bench.references.ludb import Wave, beats_from_waves, waves_from_marks
from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg


def _assignment_tp(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> int:
    """Largest one-to-one matching within ``tolerance`` samples, by scipy's assignment solver."""
    far = np.abs(reference[:, None] - detected[None, :]) > tolerance
    cost = np.where(far, 1e6, np.abs(reference[:, None] - detected[None, :]))
    rows, cols = linear_sum_assignment(cost)
    return int((~far[rows, cols]).sum())


def test_match_accepts_exactly_the_tolerance():
    fs = 360.0  # 75 ms = 27 samples
    assert match_beats(np.array([1000]), np.array([1027]), fs).tp == 1
    assert match_beats(np.array([1000]), np.array([973]), fs).tp == 1
    assert match_beats(np.array([1000]), np.array([1028]), fs).tp == 0


def test_match_counts_and_rates():
    m = match_beats(np.array([100, 500, 900, 1300]), np.array([105, 498, 700, 1301, 1500]), 500.0)
    assert (m.tp, m.fn, m.fp) == (3, 1, 2)
    assert m.sensitivity == pytest.approx(0.75) and m.positive_predictivity == pytest.approx(0.6)
    total = BeatMatch.total([m, BeatMatch(10, 10, 10)])
    assert (total.n_ref, total.n_test, total.tp) == (14, 15, 13)


def test_match_with_nothing_on_one_side():
    assert match_beats(np.array([1, 2, 3]), np.array([], dtype=int), 500.0).to_dict()["se"] == 0.0
    empty = match_beats(np.array([], dtype=int), np.array([10]), 500.0)
    assert empty.fp == 1 and np.isnan(empty.sensitivity)


def test_match_agrees_with_an_optimal_assignment():
    rng = np.random.default_rng(0)
    fs = 360.0
    for _ in range(20):
        reference = np.cumsum(rng.integers(150, 500, size=60))  # RR 0.4-1.4 s
        kept = reference[rng.random(reference.size) > 0.1]
        detected = np.sort(np.concatenate([
            kept + rng.integers(-40, 41, size=kept.size),  # some beyond ±27 samples
            rng.integers(0, reference[-1], size=5),  # false detections
        ]))
        detected = np.unique(detected)
        assert match_beats(reference, detected, fs).tp == _assignment_tp(reference, detected, 27)


def test_window_plan_tiles_the_recording_away_from_window_edges():
    fs, n = 360.0, int(360 * 95.3)
    spans = window_plan(n, fs, 10.0, 8.0)
    assert spans[0].keep_from == 0 and spans[-1].keep_to == n
    for a, b in zip(spans, spans[1:]):
        assert a.keep_to == b.keep_from
    for i, s in enumerate(spans):
        assert s.stop - s.start == 3600 and 0 <= s.start and s.stop <= n
        if i > 0:
            assert s.keep_from - s.start >= 360
        if i < len(spans) - 1:
            assert s.stop - s.keep_to >= 360
    assert window_plan(1000, fs, 10.0, 8.0)[0].keep_to == 1000  # shorter than a window: one window


def test_long_recording_detection_on_mitdb_100(ecg_data_dir):
    rec = mitdb.read("100", minutes=1.5, folder=ecg_data_dir / "wfdb-samples")
    found = detect_long(rec.ecg, default_card())
    m = match_beats(rec.beats, found, rec.ecg.fs_hz)
    assert m.sensitivity >= 0.99 and m.positive_predictivity >= 0.99
    assert np.all(np.diff(found) > 0)


def test_detect_window_holds_every_beat_prepare_uses(ptbxl_record_hr):
    """detect_window repeats prepare's steps; the R peaks prepare reports are among its detections."""
    ecg = read_ecg(ptbxl_record_hr)
    card = default_card()
    used = np.round(prepare(ecg, card).r_peaks_s * ecg.fs_hz).astype(int)
    found = detect_window(ecg, card)
    assert used.size >= 4
    assert np.abs(used[:, None] - found[None, :]).min(axis=1).max() <= 1


def test_add_noise_reaches_the_snr():
    fs = 360.0
    rng = np.random.default_rng(1)
    n = int(fs * 60)
    beats = np.arange(200, n - 200, 300)
    clean = np.zeros((2, n))
    clean[:, beats] = 2.0  # QRS peak-to-peak 2 mV
    noise = rng.normal(size=(2, n)) * 0.3 + 5.0  # offset must not count as noise
    assert qrs_amplitude(clean[0], beats, fs) == pytest.approx(2.0)
    for snr in (24.0, 6.0, 0.0):
        added = add_noise(clean, noise, beats, fs, snr) - clean
        achieved = 10 * np.log10((2.0**2 / 8) / added.var(axis=1))
        assert achieved == pytest.approx([snr, snr], abs=1e-6)
        assert abs(added.mean()) < 1e-9


def test_error_summary_ignores_missing_values():
    s = error_summary([100.0, 90.0, np.nan, 130.0], [100.0, 100.0, 120.0, np.nan])
    assert (s["n"], s["n_reference"], s["not_measured"]) == (2, 3, 1)
    assert s["median_abs_ms"] == pytest.approx(5.0) and s["bias_ms"] == pytest.approx(-5.0)


def test_gate_summary_counts_unacceptable_as_positive():
    s = gate_summary([True] * 8 + [False] * 2, [False] * 7 + [True] + [True, False])
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 1, 7)
    assert s["accuracy"] == pytest.approx(0.8) and s["acceptable_refused"] == pytest.approx(1 / 8)


def test_ludb_marks_become_global_fiducials():
    # Lead ii: two beats, each P ( p ), QRS ( N ), T ( t ); lead v2 starts its QRS earlier and ends
    # its T later, lead i marks only QRS complexes (and one without its opening bracket).
    ii = waves_from_marks(
        [100, 120, 140, 180, 200, 230, 300, 350, 400, 600, 620, 640, 680, 700, 730, 800, 850, 900],
        list("(p)(N)(t)" * 2),
    )
    v2 = waves_from_marks([170, 202, 236, 310, 360, 420, 672, 698, 734], list("(N)(t)(N)"))
    i = waves_from_marks([205, 224], list("N)"))
    assert ii["N"][0] == Wave(180.0, 200, 230.0)
    assert np.isnan(i["N"][0].onset) and i["N"][0].offset == 224.0
    beats = beats_from_waves({"ii": ii, "v2": v2, "i": i}, anchor="ii")
    assert beats.r_peaks.tolist() == [200, 700]
    assert beats.qrs_onset.tolist() == [170.0, 672.0]
    assert beats.qrs_offset.tolist() == [236.0, 734.0]
    assert beats.p_onset.tolist() == [100.0, 600.0]
    assert beats.t_offset.tolist() == [420.0, 900.0]
    assert beats.span == (100, 900)
    intervals = beats.intervals_ms()  # 500 Hz: 2 ms per sample
    assert intervals["qrs_ms"] == pytest.approx(2 * np.median([66, 62]))
    assert intervals["pr_ms"] == pytest.approx(2 * np.median([70, 72]))
    assert intervals["qt_ms"] == pytest.approx(2 * np.median([250, 228]))
