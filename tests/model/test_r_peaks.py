"""R-peak detection against libraries and reference annotations: the hand-written energy-envelope
detector (model/frontend/beats.py) must find the beats NeuroKit2's detector and wfdb's XQRS find on
clean records, and the cardiologists' beats of MIT-BIH 100. docs/bench/frontend.md measures it on
the full reference sets (LUDB, MIT-BIH DS1 with noise)."""

from functools import lru_cache
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pytest
import wfdb
from scipy import signal
from wfdb import processing

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.frontend.beats import detect_r_peaks
from hfrisk.model.frontend.filters import bandpass, filter_leads, resample
from hfrisk.model.frontend.preprocessing import prepare

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
CARD = default_card()
FS = CARD.input.fs_hz
II = CARD.input.leads.index("II")
TOLERANCE_S = 0.075  # the ±75 ms of EC57 beat matching


@lru_cache(maxsize=None)
def filtered(rel: str, sampto: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The card's filtered signal at its rate, the present leads, and the source rate."""
    rec = wfdb.rdrecord(str(DATA / rel), sampto=sampto)
    ecg = ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name))
    conformed = conform_leads(ecg, CARD.input.leads)
    at_rate = resample(conformed.samples, conformed.fs_hz, FS)
    return filter_leads(at_rate, FS, CARD.filters, source_fs_hz=conformed.fs_hz), conformed.mask, rec.fs


def matched(reference: np.ndarray, test: np.ndarray, fs_hz: float) -> tuple[int, int, int]:
    """(reference beats, test beats, matched) within TOLERANCE_S, as wfdb's bxb-style comparator."""
    comparison = processing.compare_annotations(reference, test, int(round(TOLERANCE_S * fs_hz)))
    return len(reference), len(test), comparison.tp


def inner(peaks: np.ndarray, n: int, margin: int) -> np.ndarray:
    """Peaks away from the window's edges (libraries differ on half-cut beats there)."""
    return peaks[(peaks >= margin) & (peaks < n - margin)]


@pytest.mark.parametrize("ecg_id", range(1, 25))
def test_agrees_with_neurokit_on_clean_ptbxl(ecg_id):
    samples, present, _ = filtered(f"ptbxl/records500/00000/{ecg_id:05d}_hr")
    ours = detect_r_peaks(samples, FS, present, II)
    lead = nk.ecg_clean(samples[II].astype(np.float64), sampling_rate=int(FS), method="neurokit")
    theirs = np.asarray(nk.ecg_findpeaks(lead, sampling_rate=int(FS), method="neurokit")["ECG_R_Peaks"])
    margin = int(0.3 * FS)
    n_ref, n_test, tp = matched(inner(theirs, samples.shape[1], margin), inner(ours, samples.shape[1], margin), FS)
    assert tp == n_ref == n_test, (theirs, ours)


def test_agrees_with_xqrs_and_the_annotations_of_mit_bih_100():
    """Two minutes of MIT-BIH 100 in 10-s windows: every annotated beat found, as XQRS finds them."""
    minutes, fs = 2, 360.0
    samples, present, _ = filtered("wfdb-samples/100", sampto=int(minutes * 60 * fs))
    ann = wfdb.rdann(str(DATA / "wfdb-samples/100"), "atr", sampto=int(minutes * 60 * fs))
    reference = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in "NLRBAaJSVFejE/fQ"])
    reference = np.round(reference * FS / fs).astype(np.int64)
    window = int(10 * FS)
    ours = np.concatenate([
        detect_r_peaks(samples[:, start : start + window], FS, present, II) + start
        for start in range(0, samples.shape[1], window)
    ])
    xqrs = processing.XQRS(sig=samples[II].astype(np.float64), fs=FS)
    xqrs.detect(verbose=False)
    margin = int(0.3 * FS)
    n_ref, n_test, tp = matched(inner(reference, samples.shape[1], margin), inner(ours, samples.shape[1], margin), FS)
    assert tp == n_ref and n_test - tp <= 1  # a beat cut by a window boundary may be found twice
    n = samples.shape[1]
    n_ref, n_x, tp_x = matched(inner(reference, n, margin), inner(xqrs.qrs_inds, n, margin), FS)
    assert tp >= tp_x


def test_a_qrs_that_points_down_is_found_at_its_trough():
    """A paced QRS points down in lead II (a QS complex): the fiducial is its trough, not the T
    wave after it. Lead II of a real record turned upside down, its positive waves cut (a QS
    complex), gives the original's samples; an rS complex keeps its small R wave."""
    samples, present, _ = filtered("ptbxl/records500/00000/00001_hr")
    upright = detect_r_peaks(samples, FS, present, II)
    qs = samples.copy()
    qs[II] = np.minimum(-samples[II], 0.02)
    trough = detect_r_peaks(qs, FS, present, II)
    assert len(trough) == len(upright) and np.abs(trough - upright).max() <= 2  # cut waves smooth differently
    rs = samples.copy()
    rs[II] *= -1  # the original S wave is now a small R wave before a deep S
    moved = detect_r_peaks(rs, FS, present, II)
    assert len(moved) == len(upright) and (rs[II, moved] > 0).all()


def test_muscle_noise_does_not_hide_or_add_beats():
    """Broadband noise at a third of the QRS amplitude in every lead (6-12 dB SNR): the QRS-band
    envelope still finds exactly the clean record's beats."""
    samples, present, _ = filtered("ptbxl/records500/00000/00005_hr")
    clean = detect_r_peaks(samples, FS, present, II)
    rng = np.random.default_rng(3)
    amplitude = np.ptp(samples, axis=1, keepdims=True)
    noisy = samples + (rng.standard_normal(samples.shape) * amplitude / 3.0 / 2.0).astype(np.float32)
    noisy = filter_leads(noisy, FS, CARD.filters)
    n_ref, n_test, tp = matched(clean, detect_r_peaks(noisy, FS, present, II), FS)
    assert tp == n_ref == n_test


def test_bandpass_matches_scipy_sosfiltfilt():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2500))
    sos = signal.butter(2, (5.0, 25.0), "bandpass", fs=250.0, output="sos")
    np.testing.assert_allclose(bandpass(x, 250.0, 5.0, 25.0), signal.sosfiltfilt(sos, x, axis=-1), atol=1e-10)


def _one_beat_made_qs(rel: str, beat: int) -> tuple[np.ndarray, int]:
    """Lead II of a real 500-Hz record (raw, mV) with one beat's QRS turned into a QS complex
    (inverted, its positive part cut), as a ventricular beat among upright ones looks; and where
    that beat's trough is."""
    rec = wfdb.rdrecord(str(DATA / rel))
    samples = rec.p_signal.T.copy()
    lead = list(rec.sig_name).index("II")
    samples_f, present, _ = filtered(rel)
    r = int(detect_r_peaks(samples_f, FS, present, II)[beat])
    half = int(0.06 * rec.fs)
    segment = samples[lead, r - half : r + half + 1]
    base = np.median(samples[lead])
    samples[lead, r - half : r + half + 1] = np.minimum(base - (segment - base), base)
    return samples, r


@pytest.mark.parametrize("engine", ["reference", "batched"])
def test_a_qs_beat_among_upright_ones_is_found_at_its_trough(engine):
    """A ventricular beat that points down in lead II among upright beats: its fiducial is its own
    trough (MIT-BIH's annotators mark it there), while the other beats keep their R waves. With the
    window's rule alone, the beat went to the largest positive deflection nearby, 42 ms off."""
    rel = "ptbxl/records500/00000/00001_hr"
    raw, trough = _one_beat_made_qs(rel, beat=4)
    rec = wfdb.rdrecord(str(DATA / rel))
    ecg = ECG(samples=raw, fs_hz=rec.fs, lead_names=tuple(rec.sig_name))
    samples_f, present, _ = filtered(rel)
    upright = detect_r_peaks(samples_f, FS, present, II)
    if engine == "reference":
        conformed = conform_leads(ecg, CARD.input.leads)
        at_rate = filter_leads(conformed.samples, FS, CARD.filters, source_fs_hz=conformed.fs_hz)
        found = detect_r_peaks(at_rate, FS, conformed.mask, II)
    else:
        found = np.round(prepare(ecg, CARD).detected_r_peaks_s * FS).astype(np.int64)
    assert len(found) == len(upright)
    assert abs(int(found[4]) - trough) <= int(0.01 * FS)
    others = np.delete(np.arange(len(upright)), 4)
    assert np.abs(found[others] - upright[others]).max() <= 1
