"""The front end on a batch of windows at once: raw leads → median beat, peaks and quality.

Every window of a batch has the same rate and length (:func:`~hfrisk.model.frontend.preprocessing.
prepare_many` groups them). The steps are those of the module docstring of
:mod:`hfrisk.model.frontend.preprocessing`, each one operation over the whole batch on the array
library of the :class:`~hfrisk.model.frontend.arrays.ArrayBackend` (numpy on a CPU, CuPy or torch on
a GPU); only the quality report, a handful of Python values per window, is assembled per window.

A window whose beats disagree may owe it to one or two noisy leads: those windows, and only
those, go round again with their worst lead masked (detection included: the noise may have moved
the R peaks), up to ``card.quality.max_noisy_leads`` times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.leads import ConformedECG
from hfrisk.model.frontend import detection, spectral, templates
from hfrisk.model.frontend.arrays import ArrayBackend, device_of, masked_quantile, to_numpy
from hfrisk.model.frontend.normalise import pad_beat, zscore_leads
from hfrisk.model.frontend.quality import LeadFlags, beats_disagree, flag_leads_batch, noisiest_lead

__all__ = ["BatchOutput", "run_batch", "Stopwatch"]


class Stopwatch:
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


@dataclass(frozen=True)
class BatchOutput:
    """Per window (row), host numpy arrays: ``x`` (B, L, length_samples) the network's input,
    ``lead_mask`` (B, L), ``median_mv`` (B, L, beat_samples) the median beat (0 on masked
    leads), ``flags`` the lead flags (noise-masked leads included), ``lead_correlation`` (B, L),
    and per-window lists: detected R peaks, used R peaks (output-rate samples), beat
    correlations, heart rate."""

    x: np.ndarray
    lead_mask: np.ndarray
    flags: LeadFlags
    median_mv: np.ndarray
    detected: list[np.ndarray]
    used: list[np.ndarray]
    beat_correlation: list[np.ndarray]
    lead_correlation: np.ndarray
    heart_rate_bpm: list[float | None]


def _reference_leads(xp: Any, signal: Any, usable: Any, preferred: int | None) -> Any:
    """Per window, the lead to align beats on: ``preferred`` where usable, else the usable lead
    with the tallest positive deflection (max minus median); 0 where no lead is usable."""
    b, n_leads, _ = signal.shape
    fallback = xp.zeros((b,), dtype=xp.int64, device=device_of(signal))
    need = ~usable[:, preferred] if preferred is not None else xp.ones((b,), dtype=xp.bool, device=device_of(signal))
    if bool(xp.any(need & xp.any(usable, axis=-1))):
        thinned = signal[..., :: detection._BASELINE_STRIDE]
        med = masked_quantile(xp, thinned, xp.ones(thinned.shape, dtype=xp.bool, device=device_of(thinned)), 0.5)
        height = xp.max(signal, axis=-1) - med
        height = xp.where(usable, height, xp.asarray(-xp.inf, dtype=height.dtype))
        fallback = xp.argmax(height, axis=-1)
    if preferred is None:
        return fallback
    return xp.where(need, fallback, xp.asarray(preferred, dtype=xp.int64))


# Windows whose detected beat counts differ by more than this factor (plus one) are cut and
# compared in separate groups: a batch padded to its one 180-bpm window would sort and correlate
# twice the beats of a batch of 60-bpm windows.
_BUCKET_GROWTH = 1.3


def _take_rows(xp: Any, a: Any, rows: Any | None) -> Any:
    """``a``'s rows ``rows`` (all of them, uncopied, for None)."""
    return a if rows is None else xp.take(a, rows, axis=0)


def _buckets(counts: np.ndarray) -> list[np.ndarray]:
    """Row indices grouped by similar beat counts (ascending within each group)."""
    order = np.argsort(counts, kind="stable")
    groups, first = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or counts[order[i]] > _BUCKET_GROWTH * counts[order[first]] + 1:
            groups.append(np.sort(order[first:i]))
            first = i
    return groups


def _beat_pass(
    xp: Any, backend: ArrayBackend, spec: Any, qrs: Any, filt: Any, usable: Any, card: ModelCard, p: Any,
    clock: Stopwatch,
) -> list[dict[str, np.ndarray]]:
    """Detect, cut, select and median the beats of some windows; per window, host arrays."""
    leads = card.input.leads
    preferred = leads.index(card.input.r_peak_lead) if card.input.r_peak_lead in leads else None
    ref = _reference_leads(xp, filt, usable, preferred)
    own = xp.take_along_axis(spec, xp.broadcast_to(ref[:, None, None], (spec.shape[0], 1, spec.shape[-1])), axis=1)
    smooth = spectral.band(xp, own[:, 0, :], p, "fiducial")
    peaks = detection.detect(xp, qrs, usable, smooth, fs_det=p.fs_det, step=p.step, fs_out=p.fs_out)
    clock.lap("r_peaks")
    # Unusable leads cut as zeros weigh nothing in the beat correlations.
    zeroed = filt if bool(xp.all(usable)) else filt * xp.astype(usable, filt.dtype)[..., None]
    counts = to_numpy(xp.sum(xp.astype(peaks.valid, xp.int64), axis=-1))
    out: list[dict[str, np.ndarray]] = [{} for _ in range(filt.shape[0])]
    for group in _buckets(counts):
        sel = None if group.size == filt.shape[0] else backend.asarray(group)
        index, valid = _take_rows(xp, peaks.index, sel), _take_rows(xp, peaks.valid, sel)
        width = int(counts[group].max()) if group.size else 0
        beats = templates.extract(
            xp, zeroed, index[:, :width], valid[:, :width],
            pre=card.input.r_peak_index, length=card.input.beat_samples, rows=sel,
        )
        selection = templates.select(xp, beats, _take_rows(xp, usable, sel), card.quality.min_template_correlation)
        med = templates.median(xp, beats.waves, selection.keep)
        host = {
            "peaks": to_numpy(index), "pvalid": to_numpy(valid), "bpeaks": to_numpy(beats.peaks),
            "keep": to_numpy(selection.keep), "bvalid": to_numpy(beats.valid),
            "corr": to_numpy(selection.correlation), "lead_corr": to_numpy(selection.lead_correlation),
            "median": to_numpy(med),
        }
        for j, row in enumerate(group):
            out[row] = {key: value[j] for key, value in host.items()}
    clock.lap("beats_and_median")
    return out


def run_batch(
    windows: Sequence[ConformedECG],
    card: ModelCard,
    backend: ArrayBackend = ArrayBackend(),
    timings: dict[str, float] | None = None,
) -> BatchOutput:
    """Prepare ``windows`` (conformed to the card's leads; one rate and length) in one batch."""
    xp = backend.namespace()
    clock = Stopwatch(timings)
    fs_src, n_src = float(windows[0].fs_hz), windows[0].samples.shape[-1]
    raw = backend.asarray(np.stack([w.samples for w in windows]).astype(np.float32, copy=False))
    present = backend.asarray(np.stack([w.mask for w in windows]))
    clock.lap("window_and_leads")
    flags = flag_leads_batch(xp, raw, fs_src, present, card.quality)
    usable = present & ~(flags.flat | flags.lead_off | flags.saturated)
    clock.lap("lead_flags")
    p = spectral.plan(fs_src, n_src, float(card.input.fs_hz), card.filters)
    spec = spectral.spectra(xp, raw, p)
    filt = spectral.filtered(xp, spec, p)
    qrs = spectral.band(xp, spec, p, "qrs")
    clock.lap("filter")

    b = len(windows)
    n_leads = len(card.input.leads)
    noisy = np.zeros((b, n_leads), dtype=bool)
    usable_np = to_numpy(usable).copy()
    result: list[dict[str, np.ndarray]] = [{} for _ in range(b)]
    rows = np.arange(b)
    while rows.size:
        sel = None if rows.size == b else backend.asarray(rows)
        found = _beat_pass(
            xp, backend, _take_rows(xp, spec, sel), _take_rows(xp, qrs, sel), _take_rows(xp, filt, sel),
            backend.asarray(usable_np[rows]), card, p, clock,
        )
        again = []
        for row, one in zip(rows, found):
            result[row] = one
            ok = usable_np[row]
            if (
                beats_disagree(one["corr"][one["bvalid"]], card.quality)
                and noisy[row].sum() < card.quality.max_noisy_leads
                and ok.sum() > card.quality.min_usable_leads
            ):
                worst = noisiest_lead(one["lead_corr"], ok)
                noisy[row, worst] = True
                usable_np[row, worst] = False
                again.append(row)
        rows = np.asarray(again, dtype=np.int64)

    detected, used, beat_corr, rates = [], [], [], []
    medians = np.zeros((b, n_leads, card.input.beat_samples), dtype=np.float32)
    lead_corr = np.zeros((b, n_leads), dtype=np.float64)
    n_used = np.zeros(b, dtype=np.int64)
    for row, one in enumerate(result):
        det = one["peaks"][one["pvalid"]]
        kept = one["bvalid"] & one["keep"]
        detected.append(det)
        used.append(one["bpeaks"][kept])
        beat_corr.append(one["corr"][one["bvalid"]].astype(np.float64))
        lead_corr[row] = one["lead_corr"]
        medians[row] = one["median"]
        n_used[row] = int(kept.sum())
        rates.append(detection.heart_rate_bpm(det, p.fs_out))
    lead_mask = usable_np & (n_used > 0)[:, None]
    medians[~lead_mask] = 0.0
    x = pad_beat(zscore_leads(medians, lead_mask), card.input.length_samples)
    clock.lap("normalise_and_pad")
    host_flags = LeadFlags(
        flat=to_numpy(flags.flat), lead_off=to_numpy(flags.lead_off), saturated=to_numpy(flags.saturated),
        baseline_wander=to_numpy(flags.baseline_wander), noisy=noisy if noisy.any() else None,
    )
    return BatchOutput(
        x=x, lead_mask=lead_mask, flags=host_flags, median_mv=medians, detected=detected, used=used,
        beat_correlation=beat_corr, lead_correlation=lead_corr, heart_rate_bpm=rates,
    )
