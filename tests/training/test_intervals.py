"""Median-beat intervals against cardiologists (LUDB records in tests/data) and against beats whose
boundaries are known because they were built.

The LUDB reference is built as the benchmark builds it (``bench.references.ludb``): per beat the
earliest onset and latest offset over the 12 leads' marks, median over beats. The records are the
first LUDB record of three kinds: sinus rhythm with nothing else reported (119), complete left bundle
branch block (24; NeuroKit2's per-lead delineation measured its QRS 108 ms against 198), atrial
fibrillation (8: no P wave). Tolerances are about the 90th percentile of |error| over all 200 LUDB
records (docs/training/data.md), so a regression of the method shows while the normal spread
between a program and cardiologists does not.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.training.data.intervals import delineate_median_beat, spatial_velocity
from hfrisk.training.data.measurements import measure_ecg

from bench.references.ludb import LEADS, beats_from_waves, waves_from_marks

LUDB = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ludb"
TOLERANCE_MS = {"qrs_ms": 20.0, "pr_ms": 20.0, "qt_ms": 40.0}
STANDARD = default_card().input.leads


def _reference(name: str) -> dict[str, float]:
    by_lead = {}
    for lead in LEADS:
        ann = wfdb.rdann(str(LUDB / name), lead)
        by_lead[lead] = waves_from_marks(list(ann.sample), list(ann.symbol))
    return beats_from_waves(by_lead).intervals_ms()


@pytest.fixture(scope="module")
def ludb_measured() -> dict[str, dict[str, float]]:
    return {name: measure_ecg(read_ecg(LUDB / name)) for name in ("8", "24", "119")}


@pytest.mark.parametrize("name", ["119", "24", "8"])
def test_intervals_agree_with_the_cardiologists(name, ludb_measured):
    reference = _reference(name)
    measured = ludb_measured[name]
    for interval, tolerance in TOLERANCE_MS.items():
        if math.isnan(reference[interval]):
            continue
        assert abs(measured[interval] - reference[interval]) <= tolerance, (interval, measured[interval], reference)


def test_left_bundle_branch_block_is_wide(ludb_measured):
    # LBBB means a QRS of at least 120 ms; the cardiologists measured 198 ms on record 24.
    assert ludb_measured["24"]["qrs_ms"] >= 150


def test_atrial_fibrillation_has_no_p_wave(ludb_measured):
    assert math.isnan(_reference("8")["pr_ms"])  # the cardiologists marked none
    assert math.isnan(ludb_measured["8"]["pr_ms"]) and math.isnan(ludb_measured["8"]["p_duration_ms"])
    assert np.isfinite(ludb_measured["8"]["qrs_ms"]) and np.isfinite(ludb_measured["8"]["qt_ms"])


def test_heart_rate_is_the_front_ends():
    ecg = read_ecg(LUDB / "119")
    assert measure_ecg(ecg)["heart_rate_bpm"] == pytest.approx(prepare(ecg, default_card()).heart_rate_bpm)


# -- built beats: boundaries known exactly -------------------------------------------------------------

FS = 500.0
R_INDEX = 200


def _half_sine(t_ms: np.ndarray, start_ms: float, width_ms: float) -> np.ndarray:
    """A half sine over [start, start + width], zero outside: it leaves the baseline with a slope,
    as a QRS does, so its boundaries are where an eye would put them."""
    x = (t_ms - start_ms) / width_ms
    return np.where((x >= 0) & (x <= 1), np.sin(np.pi * np.clip(x, 0, 1)), 0.0)


def _loop(t_ms: np.ndarray, start_ms: float, width_ms: float, turn_rad: float, tilt_rad: float) -> np.ndarray:
    """A heart-vector loop (3, samples): half-sine magnitude over [start, start + width], its
    direction turning by ``turn_rad`` in a plane tilted by ``tilt_rad``; zero outside."""
    envelope = _half_sine(t_ms, start_ms, width_ms)
    angle = turn_rad * np.clip((t_ms - start_ms) / width_ms, 0, 1)
    return envelope * np.stack([np.cos(angle), np.sin(angle) * np.cos(tilt_rad), np.sin(angle) * np.sin(tilt_rad)])


def _built_beat(qrs_ms: float, pr_ms: float = 160.0, qt_ms: float | None = None, noise_mv: float = 0.0, seed: int = 0):
    """A 12-lead beat (R peak near sample 200) from a dipole whose loops have known boundaries.

    QRS: a 1.5-mV loop turning 250 degrees over [onset, onset + qrs_ms] (onset 45 % of it before the
    R index), as a vectorcardiogram does; P: 0.15 mV, 100 ms from ``pr_ms`` before the onset;
    T: 0.4 mV over the last 180 ms of the QT (by default QRS + 300 ms: a 120-ms ST segment). I, II and V1-V6 are projections of the dipole on fixed
    lead directions; III, aVR, aVL and aVF follow from I and II (Einthoven, Goldberger)."""
    t_ms = (np.arange(600) - R_INDEX) * 1000.0 / FS
    onset = -0.45 * qrs_ms
    qt_ms = qrs_ms + 300.0 if qt_ms is None else qt_ms
    dipole = (
        1.5 * _loop(t_ms, onset, qrs_ms, np.radians(250), 0.4)
        + 0.15 * _loop(t_ms, onset - pr_ms, 100.0, 0.3, 0.2)
        + 0.4 * _loop(t_ms, onset + qt_ms - 180.0, 180.0, 0.2, -0.3)
    )
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((8, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lead_i, lead_ii, *chest = directions @ dipole
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    beat = np.stack(limb + chest) + noise_mv * rng.standard_normal((12, t_ms.size))
    return beat, {"qrs_ms": qrs_ms, "pr_ms": pr_ms, "qt_ms": qt_ms}


# On a built beat the waves start with a kink, and the 42-ms derivative span that LUDB's marks call
# for (docs/training/data.md) makes the velocity leave its baseline up to half a span before the
# kink: every boundary moves outward by about the same 15-20 ms. A measurement program is judged
# on what that does to intervals: wide and narrow complexes must shift alike.
WIDENING_MS = (0.0, 45.0)


@pytest.mark.parametrize("noise_mv", [0.0, 0.02])
def test_built_beat_qrs_widths_shift_alike(noise_mv):
    widths = np.array([80.0, 100.0, 120.0, 140.0, 160.0, 180.0, 200.0])
    measured = []
    for width in widths:
        beat, _ = _built_beat(width, noise_mv=noise_mv, seed=3)
        found = delineate_median_beat(beat, FS, R_INDEX, np.ones(12, bool), rr_ms=1000.0, lead_names=STANDARD)
        measured.append(found.intervals_ms()["qrs_ms"])
    excess = np.asarray(measured) - widths
    assert np.all((excess > WIDENING_MS[0]) & (excess < WIDENING_MS[1])), excess
    # A 200-ms complex (LBBB) gains what an 80-ms one gains, within 12 ms.
    assert np.ptp(excess) <= 12.0, excess
    assert 0.9 < np.polyfit(widths, measured, 1)[0] < 1.1


@pytest.mark.parametrize("qrs_ms", [80.0, 160.0])
def test_built_beat_pr_and_qt(qrs_ms):
    beat, expected = _built_beat(qrs_ms, pr_ms=200.0, qt_ms=440.0)
    got = delineate_median_beat(beat, FS, R_INDEX, np.ones(12, bool), rr_ms=1000.0).intervals_ms()
    # Both ends of PR move outward alike, so PR keeps its length; QT gains one boundary's shift.
    assert got["pr_ms"] == pytest.approx(200.0, abs=10.0)
    assert WIDENING_MS[0] < got["qt_ms"] - 440.0 < WIDENING_MS[1]
    assert 80.0 < got["p_duration_ms"] < 100.0 + WIDENING_MS[1]


def test_built_beat_qt_follows_the_t_wave():
    qts = np.array([360.0, 400.0, 440.0, 480.0])
    measured = [delineate_median_beat(_built_beat(100.0, qt_ms=qt)[0], FS, R_INDEX, np.ones(12, bool),
                                      rr_ms=1100.0).intervals_ms()["qt_ms"] for qt in qts]
    assert 0.9 < np.polyfit(qts, measured, 1)[0] < 1.1, measured


def test_beat_without_p_wave_has_no_pr():
    beat, _ = _built_beat(100.0)
    t_ms = (np.arange(600) - R_INDEX) * 1000.0 / FS
    p_span = (t_ms >= -45.0 - 160.0) & (t_ms <= -45.0 - 60.0)
    rng = np.random.default_rng(1)
    beat[:, p_span] = 0.003 * rng.standard_normal((12, int(p_span.sum())))  # fibrillation averages out
    got = delineate_median_beat(beat, FS, R_INDEX, np.ones(12, bool)).intervals_ms()
    assert math.isnan(got["pr_ms"]) and np.isfinite(got["qrs_ms"])


def test_spatial_velocity_is_the_norm_of_the_lead_derivatives():
    # Two leads moving as a line: the velocity is the slope times sqrt(2), away from the edges.
    t = np.arange(200) / FS
    beat = np.stack([3.0 * t, -3.0 * t])
    v = spatial_velocity(beat, FS)
    np.testing.assert_allclose(v[20:-20], 3.0 * math.sqrt(2), rtol=1e-9)


def test_only_the_independent_leads_count():
    # Doubling the derived limb leads (III, aVR, aVL, aVF) changes nothing: they are not used.
    beat, _ = _built_beat(120.0)
    doubled = beat.copy()
    doubled[2:6] *= 2.0
    mask = np.ones(12, bool)
    assert delineate_median_beat(beat, FS, R_INDEX, mask) == delineate_median_beat(doubled, FS, R_INDEX, mask)


def test_no_usable_lead_gives_nan():
    found = delineate_median_beat(np.zeros((12, 600)), FS, R_INDEX, np.zeros(12, bool))
    assert all(math.isnan(v) for v in found.intervals_ms().values())


def test_sampling_rate_is_respected():
    # The same beat at 1000 Hz measures the same milliseconds.
    beat, _ = _built_beat(120.0)
    fine = np.stack([np.interp(np.arange(1200) / 2.0, np.arange(600), lead) for lead in beat])
    at_500 = delineate_median_beat(beat, FS, R_INDEX, np.ones(12, bool), rr_ms=1000.0).intervals_ms()
    at_1000 = delineate_median_beat(fine, 2 * FS, 2 * R_INDEX, np.ones(12, bool), rr_ms=1000.0).intervals_ms()
    for key in ("qrs_ms", "pr_ms", "qt_ms"):
        assert at_1000[key] == pytest.approx(at_500[key], abs=6.0), key
