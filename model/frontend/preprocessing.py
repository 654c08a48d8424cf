"""The one preprocessing pipeline: raw ECG windows → model input, for training, streaming and screening.

Every number comes from the :class:`~hfrisk.model.contract.card.ModelCard`. Windows are prepared in
batches (:func:`prepare_windows`; :func:`prepare` is a batch of one) by
:func:`~hfrisk.model.frontend.batch.run_batch` on numpy, torch or CuPy (docs/frontend.md):

1. :func:`select_window` — ``card.window.window_s`` from ``window_start_s``; refuses rates outside
   ``[min_fs_hz, max_fs_hz]`` and windows shorter than ``min_duration_s``.
2. :func:`~hfrisk.model.contract.leads.conform_leads` — the card's lead order, limb leads derived, rest masked.
3. :func:`~hfrisk.model.frontend.quality.flag_leads_batch` — flat, lead-off and saturated leads become
   unusable (and, when the beats disagree, up to ``max_noisy_leads`` noisy leads).
4. :mod:`~hfrisk.model.frontend.spectral` — the card's filter chain (high-pass, powerline notches,
   low-pass) and resampling to ``card.input.fs_hz`` in one FFT per lead, with the detection bands.
5. :func:`~hfrisk.model.frontend.detection.detect` on all usable leads, aligned on ``card.input.r_peak_lead``.
6. :mod:`~hfrisk.model.frontend.templates` — beats (``r_peak_index`` samples before the R peak,
   ``beat_samples`` in all), outlier beats dropped, median per lead.
7. per-lead z-score over the beat (unusable leads exactly 0), symmetric zero padding to
   ``length_samples``.

A window that is unfit to score still yields a :class:`ModelInput` (the stream records the quality
of every window). When no beat can be cut out (no usable lead, no QRS, all beats at the edges),
``x`` is all zeros, ``lead_mask`` all False and the quality says ``too_few_beats``: nothing is raised
for content. :class:`~hfrisk.model.contract.errors.ECGInputError` is raised only for input that is not a
valid window at all (sampling rate, duration, lead names, NaN).

>>> from hfrisk.model.contract.card import default_card
>>> from hfrisk.model.contract.ecg import ECG
>>> import numpy as np
>>> flat = ECG(samples=np.zeros((12, 5000)), fs_hz=500, lead_names=default_card().input.leads)
>>> item = prepare(flat, default_card())
>>> item.x.shape, item.quality.fit_to_score, item.quality.reasons[0]
((12, 608), False, 'flat_line')
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hfrisk.core.config import get_settings
from hfrisk.model.contract.card import ModelCard, WindowSpec
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import ConformedECG, conform_leads
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.frontend.batch import BatchOutput, Stopwatch, run_batch
from hfrisk.model.frontend.normalise import pad_beat, zscore_leads
from hfrisk.model.frontend.quality import QualityReport, assess_batch

__all__ = [
    "ModelInput",
    "prepare",
    "prepare_many",
    "prepare_windows",
    "select_window",
    "window_and_leads",
    "zscore_leads",
    "pad_beat",
    "cleaned_beat",
]



@dataclass(frozen=True)
class ModelInput:
    """One window, ready for the network, with what was learnt on the way.

    ``x`` (len(leads), length_samples) float32: z-scored median beat, zero-padded.
    ``lead_mask`` (len(leads),) bool: True where ``x`` carries a real or derived lead; absent and
    unusable (flat, lead-off, saturated, masked as noisy) leads are False and exactly zero in ``x``.
    ``median_beat_mv`` (len(leads), beat_samples): the filtered median beat in mV before scaling
    (for plots and :func:`cleaned_beat`). ``fs_hz``: the source's sampling rate.

    Beats are counted twice, because they answer different questions: ``n_beats_detected`` R peaks
    were found in the window (``detected_r_peaks_s``, seconds from the window start), and
    ``n_beats_used`` of them formed the median beat (``r_peaks_s``): beats that run past the
    window's edges and outlier beats are detected but not used. ``heart_rate_bpm`` comes from the
    detected beats (the median R-R interval, so dropping an ectopic does not halve the rate) and is
    ``None`` with fewer than two.
    """

    x: np.ndarray
    lead_mask: np.ndarray
    quality: QualityReport
    r_peaks_s: np.ndarray
    detected_r_peaks_s: np.ndarray
    n_beats_detected: int
    n_beats_used: int
    heart_rate_bpm: float | None
    fs_hz: float
    derived_leads: tuple[str, ...]
    leads: tuple[str, ...]
    median_beat_mv: np.ndarray
    window_start_s: float
    duration_s: float


def select_window(ecg: ECG, spec: WindowSpec, window_start_s: float = 0.0) -> ECG:
    """The ``spec.window_s`` stretch of ``ecg`` from ``window_start_s`` (less if the record ends
    first); raises ``ECGInputError`` for unusable rates and for less than ``min_duration_s``."""
    if ecg.fs_hz < spec.min_fs_hz:
        raise ECGInputError(
            InputErrorReason.LOW_SAMPLING_RATE,
            f"sampling rate {ecg.fs_hz:g} Hz is below the {spec.min_fs_hz:g} Hz the model card accepts",
        )
    if ecg.fs_hz > spec.max_fs_hz:
        raise ECGInputError(
            InputErrorReason.BAD_SAMPLING_RATE,
            f"sampling rate {ecg.fs_hz:g} Hz is above the {spec.max_fs_hz:g} Hz the model card accepts",
        )
    if window_start_s < 0:
        raise ValueError(f"window_start_s must be >= 0, got {window_start_s}")
    available_s = ecg.duration_s - window_start_s
    # Half a sample of slack: 8 s at a rate like 257 Hz is not a whole number of samples.
    if available_s + 0.5 / ecg.fs_hz < spec.min_duration_s:
        raise ECGInputError(
            InputErrorReason.TOO_SHORT,
            f"{max(available_s, 0.0):.2f} s of signal from {window_start_s:g} s "
            f"(record is {ecg.duration_s:.2f} s); a window needs at least {spec.min_duration_s:g} s",
        )
    return ecg.slice_s(window_start_s, window_start_s + min(spec.window_s, available_s))


def window_and_leads(ecg: ECG, card: ModelCard, window_start_s: float = 0.0) -> ConformedECG:
    """The first step of preparing a window: the card's stretch of ``ecg`` (:func:`select_window`)
    in the card's lead order (:func:`~hfrisk.model.contract.leads.conform_leads`); raises
    ``ECGInputError`` as they do. A worker that leaves the rest to the model's server
    (docs/serving.md) takes exactly this step itself."""
    return conform_leads(select_window(ecg, card.window, window_start_s), card.input.leads)


Request = tuple[ECG, float]


def _backend(backend: ArrayBackend | None) -> ArrayBackend:
    if backend is not None:
        return backend
    settings = get_settings().frontend
    return ArrayBackend(settings.array_backend, settings.device)


def prepare_windows(
    requests: Sequence[Request],
    card: ModelCard,
    *,
    backend: ArrayBackend | None = None,
    batch_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> list[ModelInput | ECGInputError]:
    """Prepare many windows at once: each request is ``(ecg, window_start_s)``; the result holds,
    in the same order, its :class:`ModelInput` or the :class:`ECGInputError` that refused it.

    Windows of the same rate and length run through :func:`~hfrisk.model.frontend.batch.run_batch`
    together, ``batch_size`` at a time (default: ``HFRISK_FRONTEND__BATCH_SIZE``), on ``backend``
    (default: ``HFRISK_FRONTEND__ARRAY_BACKEND``). ``timings``, if given, accumulates seconds per step.
    """
    backend = _backend(backend)
    size = batch_size or get_settings().frontend.batch_size
    clock = Stopwatch(timings)
    out: list[ModelInput | ECGInputError | None] = [None] * len(requests)
    groups: dict[tuple[float, int], list[tuple[int, ECG, ConformedECG, float]]] = {}
    for i, (ecg, start) in enumerate(requests):
        try:
            conformed = window_and_leads(ecg, card, start)
        except ECGInputError as err:
            out[i] = err
            continue
        groups.setdefault((float(conformed.fs_hz), conformed.samples.shape[-1]), []).append((i, ecg, conformed, start))
    clock.lap("window_and_leads")
    for members in groups.values():
        for first in range(0, len(members), size):
            chunk = members[first : first + size]
            done = run_batch([c for _, _, c, _ in chunk], card, backend, timings)
            clock.last = time.perf_counter()
            reports = assess_batch(
                leads=card.input.leads,
                present=np.stack([c.mask for _, _, c, _ in chunk]),
                flags=done.flags,
                beat_correlation=done.beat_correlation,
                lead_correlation=done.lead_correlation,
                n_beats_detected=[len(d) for d in done.detected],
                n_beats_used=[len(u) for u in done.used],
                heart_rate_bpm=done.heart_rate_bpm,
                spec=card.quality,
                window=card.window,
            )
            for row, (i, ecg, conformed, start) in enumerate(chunk):
                out[i] = _model_input(done, row, ecg, conformed, start, card, reports[row])
            clock.lap("quality")
    return out  # type: ignore[return-value]


def _model_input(done: BatchOutput, row: int, ecg: ECG, conformed: ConformedECG, start: float, card: ModelCard,
                 quality: QualityReport) -> ModelInput:
    fs_out = card.input.fs_hz
    detected, used = done.detected[row], done.used[row]
    return ModelInput(
        x=done.x[row],
        lead_mask=done.lead_mask[row],
        quality=quality,
        r_peaks_s=used / fs_out,
        detected_r_peaks_s=detected / fs_out,
        n_beats_detected=len(detected),
        n_beats_used=len(used),
        heart_rate_bpm=done.heart_rate_bpm[row],
        fs_hz=ecg.fs_hz,
        derived_leads=conformed.derived,
        leads=card.input.leads,
        median_beat_mv=done.median_mv[row],
        window_start_s=float(start),
        duration_s=conformed.samples.shape[-1] / conformed.fs_hz,
    )


def prepare(
    ecg: ECG,
    card: ModelCard,
    *,
    window_start_s: float = 0.0,
    timings: dict[str, float] | None = None,
    backend: ArrayBackend | None = None,
) -> ModelInput:
    """Turn one window of ``ecg`` into the model's input (a batch of one of
    :func:`prepare_windows`); raises its :class:`ECGInputError`."""
    (item,) = prepare_windows([(ecg, window_start_s)], card, backend=backend, timings=timings)
    if isinstance(item, ECGInputError):
        raise item
    return item


def prepare_many(
    ecgs: Iterable[ECG], card: ModelCard, *, window_start_s: float = 0.0, backend: ArrayBackend | None = None
) -> tuple[np.ndarray, list[ModelInput]]:
    """Prepare each ECG's window at ``window_start_s`` in batches; returns the stacked batch
    ``(B, len(leads), length_samples)`` and the inputs in the same order. The first
    ``ECGInputError`` is raised (:func:`prepare_windows` returns them instead)."""
    done = prepare_windows([(ecg, window_start_s) for ecg in ecgs], card, backend=backend)
    for item in done:
        if isinstance(item, ECGInputError):
            raise item
    items: list[ModelInput] = done  # type: ignore[assignment]
    shape = (0, len(card.input.leads), card.input.length_samples)
    batch = np.stack([item.x for item in items]) if items else np.zeros(shape, np.float32)
    return batch, items


def cleaned_beat(item: ModelInput, card: ModelCard) -> np.ndarray:
    """The pretraining reconstruction target (paper §1.1): the median beat cleaned with NeuroKit2's
    ``ecg_clean`` ("neurokit": 0.5 Hz high-pass and powerline filter), z-scored per lead and padded
    like ``x``. Masked leads stay exactly 0."""
    import neurokit2 as nk  # seconds to import; only pretraining needs it

    fs = int(round(card.input.fs_hz))
    cleaned = np.zeros_like(item.median_beat_mv, dtype=np.float64)
    for i in np.flatnonzero(item.lead_mask):
        cleaned[i] = nk.ecg_clean(item.median_beat_mv[i].astype(np.float64), sampling_rate=fs, method="neurokit")
    return pad_beat(zscore_leads(cleaned, item.lead_mask), card.input.length_samples)
