"""The picture of one window as the front end saw it, for ``hfrisk inspect --plot``.

Left, the strip: every lead of the model card in its order, in mV as recorded (limb leads derived
where the source lacks them), seconds from the window start on x, each detected R peak marked on
the leads the model sees: a triangle where the beat went into the median beat, a cross where it was
detected but dropped (cut by the window's edge, or an outlier). Leads the model does not see are shaded and say why
(absent, flat, lead off, saturated, baseline wander). Right, each lead's median beat around its R
peak. The title says whether the window is fit to score and, if not, the quality gate's reasons:
what a user needs to see why a window was refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import ModelInput, window_and_leads

__all__ = ["plot_window", "lead_notes"]

_USED, _DROPPED, _MASKED, _ABSENT = "#2a9d3f", "#d1342f", "#fbe3e1", "#eeeeee"


def lead_notes(item: ModelInput, present: np.ndarray) -> list[str]:
    """Per lead of ``item.leads``, what the strip says beside it: ``derived``, ``absent``, or why it
    is masked (the lead flags of the quality report; ``masked`` alone when no beat was usable)."""
    q = item.quality
    flagged = (
        ("flat", q.flat_leads), ("lead off", q.lead_off_leads), ("saturated", q.saturated_leads),
        ("baseline wander", q.baseline_wander_leads), ("noisy", q.noisy_leads),
    )
    notes = []
    for lead, here, used in zip(item.leads, present, item.lead_mask):
        words = ["derived"] if lead in item.derived_leads else []
        if not here:
            words.append("absent")
        elif not used:
            words.append("masked: " + ", ".join(w for w, leads in flagged if lead in leads) if any(
                lead in leads for _, leads in flagged) else "masked")
        notes.append(", ".join(words))
    return notes


def _peak_heights(trace: np.ndarray, peaks_s: np.ndarray, fs_hz: float) -> np.ndarray:
    """Where to mark each R peak on ``trace``: its largest deflection within 40 ms (the detector's
    peak time is on the filtered signal, resampled; the raw trace's tip can sit a sample or two off)."""
    half = max(1, int(round(0.04 * fs_hz)))
    idx = np.clip(np.round(peaks_s * fs_hz).astype(int)[:, None] + np.arange(-half, half + 1), 0, trace.size - 1)
    around = trace[idx]
    return around[np.arange(len(idx)), np.argmax(np.abs(around), axis=1)]


def _title(record: str, item: ModelInput) -> str:
    q = item.quality
    if q.fit_to_score:
        verdict = "fit to score" + (f" (noted: {', '.join(q.reasons)})" if q.reasons else "")
    else:
        verdict = "NOT fit to score: " + ", ".join(q.reasons)
    rate = "no heart rate" if item.heart_rate_bpm is None else f"{item.heart_rate_bpm:.0f} bpm"
    end = item.window_start_s + item.duration_s
    return (
        f"{record}  ·  {item.window_start_s:g}–{end:g} s at {item.fs_hz:g} Hz\n"
        f"{verdict}  ·  quality {q.score:.2f}  ·  {item.n_beats_detected} beats detected, "
        f"{item.n_beats_used} used  ·  {rate}"
    )


def plot_window(ecg: ECG, item: ModelInput, card: ModelCard, path: str | Path, *, record: str = "") -> Path:
    """Draw the window of ``ecg`` that ``item`` (``prepare``'s result for it) came from into the PNG
    ``path``; see the module docstring for what is on it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conformed = window_and_leads(ecg, card, item.window_start_s)
    leads, n_leads = card.input.leads, len(card.input.leads)
    t = np.arange(conformed.samples.shape[1]) / conformed.fs_hz
    detected = np.asarray(item.detected_r_peaks_s, dtype=float)
    used_mask = np.isin(np.round(detected, 6), np.round(np.asarray(item.r_peaks_s, dtype=float), 6))
    notes = lead_notes(item, conformed.mask)

    figure = Figure(figsize=(16, 1.0 * n_leads + 1.4), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(n_leads, 2, width_ratios=(6, 1))
    beat_ms = (np.arange(card.input.beat_samples) - card.input.r_peak_index) / card.input.fs_hz * 1000.0
    strip_axes = []
    for i, lead in enumerate(leads):
        ax = figure.add_subplot(grid[i, 0], sharex=strip_axes[0] if strip_axes else None)
        strip_axes.append(ax)
        beat_ax = figure.add_subplot(grid[i, 1])
        here, used = bool(conformed.mask[i]), bool(item.lead_mask[i])
        trace = conformed.samples[i].astype(float)
        if here:
            trace = trace - np.median(trace)
            ax.plot(t, trace, lw=0.6, color="black" if used else "#777777")
        # The beats are marked on the leads they were measured on: a masked lead's marks would mislead.
        if used:
            for when, kept in ((detected[used_mask], True), (detected[~used_mask], False)):
                if when.size:
                    ax.plot(when, _peak_heights(trace, when, conformed.fs_hz), "v" if kept else "x", ms=5 if kept else 6,
                            color=_USED if kept else _DROPPED, mew=1.5,
                            label="beat used" if kept else "detected, not used")
        if not used:
            ax.set_facecolor(_ABSENT if not here else _MASKED)
            beat_ax.set_facecolor(_ABSENT if not here else _MASKED)
            beat_ax.set_yticks([])
        if not here:
            ax.set_yticks([])
        ax.set_ylabel(lead, rotation=0, ha="right", va="center", fontsize=10, fontweight="bold")
        if notes[i]:
            ax.text(0.995, 0.92, notes[i], transform=ax.transAxes, ha="right", va="top", fontsize=8,
                    color=_DROPPED if not used else "#1f5fa8", style="italic")
        ax.tick_params(labelsize=7)
        ax.label_outer()
        if used:
            beat_ax.plot(beat_ms, item.median_beat_mv[i], lw=1.0, color="black")
        else:
            beat_ax.text(0.5, 0.5, "absent" if not here else "masked", transform=beat_ax.transAxes,
                         ha="center", va="center", fontsize=8, color="#777777")
        beat_ax.axvline(0.0, color=_USED, lw=0.5, ls=":")
        beat_ax.set_xlim(beat_ms[0], beat_ms[-1])
        beat_ax.tick_params(labelsize=7)
        if i < n_leads - 1:
            beat_ax.set_xticklabels([])
        if i == 0:
            beat_ax.set_title("median beat (mV)", fontsize=9)
    strip_axes[-1].set_xlabel("seconds from the window start")
    figure.axes[-1].set_xlabel("ms from the R peak")
    strip_axes[0].set_xlim(0, t[-1] if t.size else card.window.window_s)
    handles = {}
    for ax in strip_axes:
        for line in ax.get_lines():
            handles.setdefault(line.get_label(), line)
    shown = {k: v for k, v in handles.items() if not k.startswith("_")}
    if shown:
        strip_axes[0].legend(shown.values(), shown.keys(), loc="upper left", fontsize=7, ncol=2, framealpha=0.8)
    figure.suptitle(_title(record, item), fontsize=11,
                    color="black" if item.quality.fit_to_score else _DROPPED)
    path = Path(path)
    figure.savefig(path, dpi=90)
    return path
