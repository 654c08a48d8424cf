"""What the front-end benchmark measures, kept apart from the datasets (:mod:`bench.references`) and the
report (:mod:`bench.bench_frontend`) so that tests can check each metric on small signals.

- :func:`detect_window` returns *every* R peak :func:`~hfrisk.model.frontend.preprocessing.prepare`
  detects in a window (not only those of the beats it used).
- :func:`detect_long` does so for a long recording window by window (:func:`window_plan`), all
  windows in one batch.
- :func:`match_beats` scores detections against reference beats with wfdb's ``compare_annotations``
  (:func:`compare_beats` also says which ones failed).
- :func:`add_noise` mixes an ``nstdb`` noise record in at a chosen SNR.
- :func:`error_summary` and :func:`gate_summary` reduce interval errors and gate decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from wfdb.processing import compare_annotations

from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import prepare, prepare_windows

__all__ = [
    "TOLERANCE_S",
    "BeatMatch",
    "match_beats",
    "compare_beats",
    "detect_window",
    "WindowSpan",
    "window_plan",
    "detect_long",
    "qrs_amplitude",
    "add_noise",
    "error_summary",
    "gate_summary",
]

# The usual beat-matching tolerance of the R-peak literature (and of EC57's 150-ms window, ±75 ms).
TOLERANCE_S = 0.075
# Half-width (s) around a reference beat in which its QRS peak-to-peak amplitude is measured.
_QRS_HALF_WIDTH_S = 0.05


@dataclass(frozen=True)
class BeatMatch:
    """Reference beats, detections and matched pairs; Se = tp / n_ref, +P = tp / n_test."""

    n_ref: int
    n_test: int
    tp: int

    @property
    def fn(self) -> int:
        return self.n_ref - self.tp

    @property
    def fp(self) -> int:
        return self.n_test - self.tp

    @property
    def sensitivity(self) -> float:
        return self.tp / self.n_ref if self.n_ref else float("nan")

    @property
    def positive_predictivity(self) -> float:
        return self.tp / self.n_test if self.n_test else float("nan")

    def __add__(self, other: "BeatMatch") -> "BeatMatch":
        return BeatMatch(self.n_ref + other.n_ref, self.n_test + other.n_test, self.tp + other.tp)

    def to_dict(self) -> dict:
        return {**asdict(self), "fp": self.fp, "fn": self.fn, "se": self.sensitivity, "ppv": self.positive_predictivity}

    @staticmethod
    def total(matches: Sequence["BeatMatch"]) -> "BeatMatch":
        """Gross statistics: the sum over records (each beat counts once, as EC57 reports them)."""
        return sum(matches, BeatMatch(0, 0, 0))


def match_beats(reference: np.ndarray, detected: np.ndarray, fs_hz: float, tolerance_s: float = TOLERANCE_S) -> BeatMatch:
    """Match ``detected`` to ``reference`` beats (sample indices at ``fs_hz``) within ±``tolerance_s``.

    wfdb's comparator pairs each reference beat with the closest free detection and accepts a pair
    whose distance is *strictly* below its window, so the window is one sample more than the
    tolerance: a pair exactly ``tolerance_s`` apart matches.

    >>> m = match_beats(np.array([100, 500, 900]), np.array([110, 520, 700]), 360.0)
    >>> m.tp, m.fn, m.fp
    (2, 1, 1)
    """
    return compare_beats(reference, detected, fs_hz, tolerance_s)[0]


def compare_beats(
    reference: np.ndarray, detected: np.ndarray, fs_hz: float, tolerance_s: float = TOLERANCE_S
) -> tuple[BeatMatch, np.ndarray, np.ndarray]:
    """:func:`match_beats` and which beats failed: indices (into the sorted inputs) of the missed
    reference beats and of the unmatched detections."""
    reference = np.sort(np.asarray(reference, dtype=np.int64))
    detected = np.sort(np.asarray(detected, dtype=np.int64))
    if reference.size == 0 or detected.size == 0:
        return BeatMatch(int(reference.size), int(detected.size), 0), np.arange(reference.size), np.arange(detected.size)
    window = int(np.floor(tolerance_s * fs_hz + 1e-9)) + 1
    comparison = compare_annotations(reference, detected, window)
    match = BeatMatch(int(reference.size), int(detected.size), int(comparison.tp))
    return match, np.asarray(comparison.unmatched_ref_inds), np.asarray(comparison.unmatched_test_inds)


def detect_window(ecg: ECG, card: ModelCard) -> np.ndarray:
    """Every R peak the front end detects in one window ``ecg`` (at most ``card.window.window_s``), as
    sample indices at ``ecg.fs_hz`` from the window start: ``prepare``'s own detections
    (``detected_r_peaks_s``: all of them, not only the beats it used)."""
    return _at_source(prepare(ecg, card).detected_r_peaks_s, ecg)


def _at_source(peaks_s: np.ndarray, ecg: ECG) -> np.ndarray:
    at_source = np.round(peaks_s * ecg.fs_hz).astype(np.int64)
    return np.clip(at_source, 0, ecg.n_samples - 1)


@dataclass(frozen=True)
class WindowSpan:
    """One analysis window ``[start, stop)`` and the part ``[keep_from, keep_to)`` whose detections count
    (sample indices of the long recording)."""

    start: int
    stop: int
    keep_from: int
    keep_to: int


def window_plan(n_samples: int, fs_hz: float, window_s: float, hop_s: float) -> list[WindowSpan]:
    """Windows of ``window_s`` every ``hop_s`` (the last one moved back to end with the recording), each
    keeping its detections up to the middle of the overlap with the next window.

    With a 10-s window and an 8-s hop every kept part is the window's central 8 s (the first also
    keeps its first second, the last, moved back, from the middle of its larger overlap to the
    end): no detection is taken from the 1 s next to a window edge, where the filters' transients
    are, unless the recording itself ends there.

    >>> [(w.start, w.stop, w.keep_from, w.keep_to) for w in window_plan(2500, 100.0, 10.0, 8.0)]
    [(0, 1000, 0, 900), (800, 1800, 900, 1650), (1500, 2500, 1650, 2500)]
    """
    size = int(round(window_s * fs_hz))
    hop = int(round(hop_s * fs_hz))
    if hop <= 0 or hop > size:
        raise ValueError("hop_s must be in (0, window_s]")
    if n_samples <= size:
        return [WindowSpan(0, n_samples, 0, n_samples)]
    starts = list(range(0, n_samples - size, hop)) + [n_samples - size]
    spans = []
    for i, start in enumerate(starts):
        keep_from = 0 if i == 0 else spans[-1].keep_to
        keep_to = n_samples if i == len(starts) - 1 else (starts[i + 1] + start + size) // 2
        spans.append(WindowSpan(start, start + size, keep_from, keep_to))
    return spans


def detect_long(ecg: ECG, card: ModelCard, *, window_s: float = 10.0, hop_s: float = 8.0) -> np.ndarray:
    """R peaks of a long recording: the front end's detections in each window of :func:`window_plan`
    (all windows in one call of the batched front end), the kept parts joined. Two detections of
    one beat on either side of a boundary (closer than the detector's own 150-ms refractory
    period) are counted once."""
    spans = window_plan(ecg.n_samples, ecg.fs_hz, window_s, hop_s)
    windows = [ECG(samples=ecg.samples[:, s.start : s.stop], fs_hz=ecg.fs_hz, lead_names=ecg.lead_names) for s in spans]
    found = []
    for span, window, item in zip(spans, windows, prepare_windows([(w, 0.0) for w in windows], card)):
        if isinstance(item, Exception):
            raise item
        peaks = _at_source(item.detected_r_peaks_s, window) + span.start
        found.append(peaks[(peaks >= span.keep_from) & (peaks < span.keep_to)])
    peaks = np.concatenate(found) if found else np.zeros(0, np.int64)
    if peaks.size < 2:
        return peaks
    gap = 0.15 * ecg.fs_hz
    return peaks[np.concatenate([[True], np.diff(peaks) >= gap])]


def qrs_amplitude(signal: np.ndarray, beats: np.ndarray, fs_hz: float) -> float:
    """Median peak-to-peak amplitude of ``signal`` within ±50 ms of each reference beat."""
    half = int(round(_QRS_HALF_WIDTH_S * fs_hz))
    idx = np.clip(beats[:, None] + np.arange(-half, half + 1), 0, signal.size - 1)
    return float(np.median(np.ptp(signal[idx], axis=1)))


def add_noise(samples: np.ndarray, noise: np.ndarray, beats: np.ndarray, fs_hz: float, snr_db: float) -> np.ndarray:
    """``samples + a·noise`` per lead, ``a`` chosen so that the SNR is ``snr_db``.

    The SNR is defined as the MIT-BIH Noise Stress Test defines it (``nst``): signal power
    ``S = A²/8`` with ``A`` the QRS peak-to-peak amplitude (here the median over the reference beats,
    :func:`qrs_amplitude`), noise power ``N`` the variance of the noise channel over the recording;
    ``SNR = 10·log10(S / (a²N))``. Noise channel ``i`` goes to lead ``i``; it is added over the whole
    recording (``nst`` alternates 2-min noisy and clean stretches after the first 5 min).
    """
    out = np.asarray(samples, dtype=np.float64).copy()
    for lead in range(out.shape[0]):
        channel = noise[lead % noise.shape[0], : out.shape[1]]
        power = channel.var()
        signal_power = qrs_amplitude(out[lead], beats, fs_hz) ** 2 / 8.0
        scale = np.sqrt(signal_power / (power * 10.0 ** (snr_db / 10.0))) if power > 0 else 0.0
        out[lead] += scale * (channel - channel.mean())
    return out


def error_summary(measured: Sequence[float], reference: Sequence[float]) -> dict:
    """Errors ``measured − reference`` where both are finite: count, median and 95th percentile of
    |error|, median signed error (bias); how many references had no measurement, and how many
    measurements had no reference (a PR interval measured where the cardiologists saw no P wave)."""
    measured = np.asarray(measured, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    both = np.isfinite(measured) & np.isfinite(reference)
    error = measured[both] - reference[both]
    summary = {
        "n": int(both.sum()),
        "n_reference": int(np.isfinite(reference).sum()),
        "not_measured": int((np.isfinite(reference) & ~np.isfinite(measured)).sum()),
        "measured_without_reference": int((~np.isfinite(reference) & np.isfinite(measured)).sum()),
    }
    if error.size:
        summary |= {
            "median_abs_ms": float(np.median(np.abs(error))),
            "p95_abs_ms": float(np.percentile(np.abs(error), 95)),
            "bias_ms": float(np.median(error)),
        }
    else:
        summary |= {"median_abs_ms": float("nan"), "p95_abs_ms": float("nan"), "bias_ms": float("nan")}
    return summary


def gate_summary(acceptable: Sequence[bool], refused: Sequence[bool]) -> dict:
    """The gate against reference labels, "unacceptable" the positive class: a refused unacceptable
    record is a true positive.

    >>> s = gate_summary([True, True, False, False], [False, True, True, True])
    >>> s["accuracy"], s["sensitivity_unacceptable"], s["acceptable_refused"]
    (0.75, 1.0, 0.5)
    """
    acceptable = np.asarray(acceptable, dtype=bool)
    refused = np.asarray(refused, dtype=bool)
    tp = int((~acceptable & refused).sum())
    tn = int((acceptable & ~refused).sum())
    fp = int((acceptable & refused).sum())
    fn = int((~acceptable & ~refused).sum())
    n_bad, n_good = tp + fn, tn + fp
    return {
        "n": int(acceptable.size),
        "n_acceptable": n_good,
        "n_unacceptable": n_bad,
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
        "accuracy": (tp + tn) / acceptable.size if acceptable.size else float("nan"),
        "sensitivity_unacceptable": tp / n_bad if n_bad else float("nan"),
        "specificity": tn / n_good if n_good else float("nan"),
        "acceptable_refused": fp / n_good if n_good else float("nan"),
    }
