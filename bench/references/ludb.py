"""LUDB (Lobachevsky University ECG Database): 200 12-lead 10-s 500-Hz records, each lead annotated by
cardiologists with the onset ``(``, peak (``p``, ``N``, ``t``) and offset ``)`` of every P wave, QRS
complex and T wave.

The marks are per lead; the bench needs them per beat. :func:`reference_beats` groups them on the
QRS peaks of one anchor lead (lead ii, the rhythm strip; the first lead with QRS marks if ii has
none) and makes each fiducial *global* the way cardiologists read a 12-lead ECG: the earliest onset
and the latest offset over the leads that marked that wave.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from bench.references.root import data_root

__all__ = [
    "LEADS", "FS_HZ", "Wave", "ReferenceBeats", "records", "record_path", "diagnoses", "read_waves", "reference_beats",
]

LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
FS_HZ = 500.0
# A QRS marked in another lead is the anchor's beat when its peak lies this close (s): QRS peaks
# of one beat differ between leads by a few tens of milliseconds.
_SAME_BEAT_S = 0.1


@dataclass(frozen=True)
class Wave:
    """One annotated wave in one lead, in samples; onset/offset NaN where the mark is missing."""

    onset: float
    peak: int
    offset: float


@dataclass(frozen=True)
class ReferenceBeats:
    """Global fiducials per beat (samples, NaN where no lead marked them) and the annotated span.

    ``r_peaks``: the anchor lead's QRS peak marks. ``span``: first and last mark of the anchor lead;
    outside it the cardiologists marked nothing (LUDB leaves the first and last cycles out), so
    detections there can be neither confirmed nor refuted.
    """

    anchor_lead: str
    r_peaks: np.ndarray
    qrs_onset: np.ndarray
    qrs_offset: np.ndarray
    p_onset: np.ndarray
    t_offset: np.ndarray
    span: tuple[int, int]

    def intervals_ms(self) -> dict[str, float]:
        """Median over beats of QRS duration, PR and QT (ms); NaN where no beat has the wave."""
        ms = 1000.0 / FS_HZ
        per_beat = {
            "qrs_ms": self.qrs_offset - self.qrs_onset,
            "pr_ms": self.qrs_onset - self.p_onset,
            "qt_ms": self.t_offset - self.qrs_onset,
        }
        out = {}
        for name, values in per_beat.items():
            finite = values[np.isfinite(values)]
            out[name] = float(np.median(finite) * ms) if finite.size else float("nan")
        return out


def records() -> list[str]:
    """Record names (``"1"`` … ``"200"``) in the order of LUDB's ``RECORDS``."""
    return [line.split("/")[-1] for line in (data_root() / "ludb" / "RECORDS").read_text().split()]


def record_path(name: str) -> Path:
    return data_root() / "ludb" / "data" / name


def diagnoses(name: str) -> list[str]:
    """The header's diagnosis lines (rhythm first), e.g. ``["Rhythm: Sinus bradycardia.", ...]``."""
    comments = wfdb.rdheader(str(record_path(name))).comments
    lines = [c.strip() for c in comments if c.strip() and not c.startswith("<")]
    return sorted(lines, key=lambda line: not line.startswith("Rhythm"))


def read_waves(name: str, lead: str) -> dict[str, list[Wave]]:
    """The marked waves of one lead, by peak symbol (``"p"``, ``"N"``, ``"t"``), in time order."""
    ann = wfdb.rdann(str(record_path(name)), lead)
    return waves_from_marks(list(ann.sample), list(ann.symbol))


def waves_from_marks(samples: list[int], symbols: list[str]) -> dict[str, list[Wave]]:
    """Group a mark sequence ``( peak )`` into waves; a peak without its bracket gets NaN there."""
    out: dict[str, list[Wave]] = {"p": [], "N": [], "t": []}
    for i, symbol in enumerate(symbols):
        if symbol not in out:
            continue
        onset = float(samples[i - 1]) if i > 0 and symbols[i - 1] == "(" else np.nan
        offset = float(samples[i + 1]) if i + 1 < len(symbols) and symbols[i + 1] == ")" else np.nan
        out[symbol].append(Wave(onset, int(samples[i]), offset))
    return out


def reference_beats(name: str, anchor: str = "ii") -> ReferenceBeats:
    """Per-beat global fiducials of record ``name`` (see the module docstring)."""
    by_lead = {lead: read_waves(name, lead) for lead in LEADS}
    return beats_from_waves(by_lead, anchor)


def beats_from_waves(by_lead: dict[str, dict[str, list[Wave]]], anchor: str = "ii") -> ReferenceBeats:
    """:func:`reference_beats` from already parsed waves (``lead -> symbol -> waves``)."""
    if not by_lead[anchor]["N"]:
        anchor = next(lead for lead in by_lead if by_lead[lead]["N"])
    r_peaks = np.array([w.peak for w in by_lead[anchor]["N"]], dtype=np.int64)
    n = r_peaks.size
    near = _SAME_BEAT_S * FS_HZ
    qrs_on = np.full(n, np.nan)
    qrs_off = np.full(n, np.nan)
    for waves in by_lead.values():
        for w in waves["N"]:
            k = int(np.argmin(np.abs(r_peaks - w.peak))) if n else -1
            if k < 0 or abs(r_peaks[k] - w.peak) > near:
                continue
            qrs_on[k] = np.fmin(qrs_on[k], w.onset)
            qrs_off[k] = np.fmax(qrs_off[k], w.offset)
    p_on = np.full(n, np.nan)
    t_off = np.full(n, np.nan)
    for k in range(n):
        # A P wave belongs to the QRS it precedes, a T wave to the QRS it follows; in each lead the
        # closest one between the neighbouring complexes (AV block can leave a P without a QRS).
        before = qrs_off[k - 1] if k > 0 else -np.inf
        after = qrs_on[k + 1] if k + 1 < n else np.inf
        start = qrs_on[k] if np.isfinite(qrs_on[k]) else r_peaks[k]
        stop = qrs_off[k] if np.isfinite(qrs_off[k]) else r_peaks[k]
        for waves in by_lead.values():
            ps = [w for w in waves["p"] if (not before >= w.peak) and w.peak < start]
            if ps:
                p_on[k] = np.fmin(p_on[k], ps[-1].onset)
            ts = [w for w in waves["t"] if w.peak > stop and (not w.peak >= after)]
            if ts:
                t_off[k] = np.fmax(t_off[k], ts[0].offset)
    marks = [w for waves in by_lead[anchor].values() for w in waves]
    first = min(min(w.peak, np.nan_to_num(w.onset, nan=w.peak)) for w in marks)
    last = max(max(w.peak, np.nan_to_num(w.offset, nan=w.peak)) for w in marks)
    return ReferenceBeats(anchor, r_peaks, qrs_on, qrs_off, p_on, t_off, (int(first), int(last)))
