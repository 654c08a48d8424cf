"""MIT-BIH Arrhythmia Database, the 22 "DS1" records: 2 leads (MLII and V1, V4 or V5), 360 Hz, 30 min,
with the reference beat annotations (``.atr``).

Only beat annotations count as reference R peaks: :data:`BEAT_SYMBOLS` is the ANSI/AAMI EC57 set of
beat labels (what ``bxb`` matches); rhythm changes, signal-quality notes and other non-beat marks
(``+ ~ | x [ ] ! " =`` …) are left out. ``!`` (ventricular flutter wave) is not a beat either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import wfdb

from hfrisk.model.contract.ecg import ECG

from bench.references.root import data_root

__all__ = ["DS1", "BEAT_SYMBOLS", "FS_HZ", "Recording", "read"]

DS1 = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
FS_HZ = 360.0


@dataclass(frozen=True)
class Recording:
    """One record (or its first minutes): the signal as an :class:`ECG` in mV and the reference
    beats (sample indices, with their labels)."""

    name: str
    ecg: ECG
    beats: np.ndarray
    labels: tuple[str, ...]
    # Ventricular flutter/fibrillation episodes, ``[`` to ``]`` (samples): EC57 leaves them out of
    # QRS detection statistics (a flutter wave is neither a beat nor a false detection).
    flutter: tuple[tuple[int, int], ...] = ()

    def outside_flutter(self, detections: np.ndarray) -> np.ndarray:
        """``detections`` without those inside a flutter/fibrillation episode."""
        keep = np.ones(len(detections), dtype=bool)
        for start, stop in self.flutter:
            keep &= (detections < start) | (detections > stop)
        return detections[keep]


def read(name: str, minutes: float | None = None, folder=None) -> Recording:
    """Record ``name`` from ``mitdb/`` (or ``folder``), cut to its first ``minutes`` when given."""
    path = str((folder or data_root() / "mitdb") / name)
    sampto = None if minutes is None else int(round(minutes * 60 * FS_HZ))
    rec = wfdb.rdrecord(path, sampto=sampto)
    ann = wfdb.rdann(path, "atr", sampto=sampto)
    is_beat = np.array([s in BEAT_SYMBOLS for s in ann.symbol], dtype=bool)
    ecg = ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name), source=path)
    labels = tuple(s for s, b in zip(ann.symbol, is_beat) if b)
    return Recording(name, ecg, np.asarray(ann.sample)[is_beat].astype(np.int64), labels,
                     _episodes(ann.symbol, ann.sample, rec.sig_len))


def _episodes(symbols, samples, n_samples: int) -> tuple[tuple[int, int], ...]:
    """``[`` … ``]`` spans; one still open at the end of the (cut) record runs to its end."""
    spans, start = [], None
    for symbol, sample in zip(symbols, samples):
        if symbol == "[":
            start = int(sample)
        elif symbol == "]" and start is not None:
            spans.append((start, int(sample)))
            start = None
    if start is not None:
        spans.append((start, n_samples))
    return tuple(spans)
