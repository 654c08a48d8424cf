"""The card's filter chain, resampling and the detection bands of a batch, in one FFT.

A zero-phase IIR filter (``filtfilt``) multiplies the spectrum by ``|H(f)|²``, so the whole chain
of :func:`~hfrisk.model.frontend.filters.design_filters` (high-pass, powerline notches, low-pass)
is one multiplication of each window's spectrum by that gain, and resampling is where the
spectrum is cut or zero-extended before the inverse transform (band-limited interpolation, as
``scipy.signal.resample``). One forward transform per lead then gives three signals:

* ``filtered``: the card's chain at ``card.input.fs_hz`` (the median beat is cut from it);
* ``qrs``: the same times the QRS band of detection (:mod:`hfrisk.model.frontend.detection`), at
  the detection rate (every other sample of 500 Hz);
* the reference lead low-passed to the fiducial band, for each window's chosen lead only.

Windows are extended at both ends by an odd reflection of ``_PAD_S`` (what ``filtfilt`` does with
a few dozen samples and steady-state initial conditions), so the 0.5-Hz high-pass neither wraps
the end of a window onto its start nor rings into the first beats. ``tests/model/test_spectral.py``
holds the result to ``scipy.signal.sosfiltfilt`` and ``resample_poly`` on real records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import array_api_compat
import numpy as np
import scipy.fft
from scipy import signal

from hfrisk.model.contract.card import FilterSpec
from hfrisk.model.frontend.arrays import irfft, rfft
from hfrisk.model.frontend.filters import (
    _BANDPASS_ORDER,
    _LOWPASS_ORDER,
    _NYQUIST_MARGIN,
    design_filters,
    resample_ratio,
)

__all__ = ["SpectralPlan", "plan", "spectra", "filtered", "band", "DETECTION_FS_HZ", "QRS_BAND_HZ", "FIDUCIAL_BAND_HZ"]

# Detection runs at no less than this rate (Hz): twice the 100-Hz low-pass of the card's filters.
DETECTION_FS_HZ = 200.0
# Where a QRS complex carries most of its energy and P/T waves, baseline wander and muscle noise
# little (Pan–Tompkins 5–15 Hz, Elgendi 8–20 Hz).
QRS_BAND_HZ = (5.0, 25.0)
# The R peak is located on the reference lead low-passed to this band (< the 50-Hz Nyquist
# frequency of the lowest accepted rate, 100 Hz), so a notched R wave gets the same fiducial
# point from a 100-Hz and a 500-Hz recording of the same heart.
FIDUCIAL_BAND_HZ = 40.0
# Reflection added at each end (s): the 0.5-Hz second-order high-pass (run twice) has decayed
# to < 1 % of a step within it.
_PAD_S = 1.0


@dataclass(frozen=True)
class SpectralPlan:
    """Sizes and gains for windows of ``n_src`` samples at ``fs_src`` (one per batch shape)."""

    fs_src: float
    n_src: int
    pad_src: int
    n_fft: int  # transform length at the source rate (window + reflections)
    fs_out: float
    n_out: int
    pad_out: int
    n_fft_out: int
    step: int  # detection takes every ``step``-th output sample
    fs_det: float
    n_det: int
    pad_det: int
    n_fft_det: int
    # Per source bin kept, float32: |H|² of the card's chain, times the QRS band, times the
    # fiducial low-pass; each scaled for the inverse transform's length (see _scaled).
    chain_gain: np.ndarray
    qrs_gain: np.ndarray
    fiducial_gain: np.ndarray


def _fast_multiple(minimum: int, quantum: int) -> int:
    """The smallest multiple of ``quantum`` at least ``minimum`` that FFTs fast (5-smooth)."""
    m = math.ceil(minimum / quantum) * quantum
    for candidate in range(m, 2 * m + quantum, quantum):
        if scipy.fft.next_fast_len(candidate, real=True) == candidate:
            return candidate
    return m


def _gain(sos: np.ndarray, freqs: np.ndarray, fs: float) -> np.ndarray:
    _, h = signal.sosfreqz(sos, worN=freqs, fs=fs)
    return np.abs(h) ** 2


def _scaled(gain: np.ndarray, n_fft: int, n_fft_to: int) -> np.ndarray:
    """``gain`` for an inverse transform at ``n_fft_to`` points of a spectrum taken at ``n_fft``:
    times the length ratio (irfft divides by its own length); and when the spectrum is extended,
    the source's Nyquist bin halved: it stands for +fs/2 and -fs/2 at once, split between them in
    the longer spectrum (as ``scipy.signal.resample`` does)."""
    out = gain * (n_fft_to / n_fft)
    if n_fft_to > n_fft and n_fft % 2 == 0 and gain.shape[0] == n_fft // 2 + 1:
        out[-1] *= 0.5
    return out.astype(np.float32)


@lru_cache(maxsize=64)
def plan(fs_src: float, n_src: int, fs_out: float, spec: FilterSpec) -> SpectralPlan:
    up, down = resample_ratio(fs_src, fs_out)
    r_out = Fraction(up, down)
    step = max(1, int(fs_out // DETECTION_FS_HZ))
    r_det = r_out / step
    quantum = math.lcm(r_out.denominator, r_det.denominator)
    pad_src = math.ceil(_PAD_S * fs_src / quantum) * quantum
    pad_src = min(pad_src, (n_src - 1) // quantum * quantum)
    n_fft = _fast_multiple(n_src + 2 * pad_src, quantum)
    n_out = math.ceil(n_src * up / down)
    fs_det = fs_out / step
    freqs = np.arange(n_fft // 2 + 1) * fs_src / n_fft
    keep = freqs <= min(fs_src, fs_out) / 2.0
    chain = _gain(design_filters(fs_out, spec, fs_src / 2.0), freqs[keep], fs_out)
    det_keep = freqs[keep] <= min(fs_src, fs_det) / 2.0
    qrs_sos = signal.butter(
        _BANDPASS_ORDER,
        (QRS_BAND_HZ[0], min(QRS_BAND_HZ[1], fs_det / 2.0 * _NYQUIST_MARGIN)),
        "bandpass",
        fs=fs_det,
        output="sos",
    )
    qrs = chain[det_keep] * _gain(qrs_sos, freqs[keep][det_keep], fs_det)
    if FIDUCIAL_BAND_HZ < fs_out / 2.0 * _NYQUIST_MARGIN:
        fid_sos = signal.butter(_LOWPASS_ORDER, FIDUCIAL_BAND_HZ, "lowpass", fs=fs_out, output="sos")
        fiducial = chain * _gain(fid_sos, freqs[keep], fs_out)
    else:
        fiducial = chain
    return SpectralPlan(
        fs_src=fs_src,
        n_src=n_src,
        pad_src=pad_src,
        n_fft=n_fft,
        fs_out=fs_out,
        n_out=n_out,
        pad_out=int(pad_src * r_out),
        n_fft_out=int(n_fft * r_out),
        step=step,
        fs_det=fs_det,
        n_det=math.ceil(n_out / step),
        pad_det=int(pad_src * r_det),
        n_fft_det=int(n_fft * r_det),
        chain_gain=_scaled(chain, n_fft, int(n_fft * r_out)),
        qrs_gain=_scaled(qrs, n_fft, int(n_fft * r_det)),
        fiducial_gain=_scaled(fiducial, n_fft, int(n_fft * r_out)),
    )


def spectra(xp: Any, raw: Any, p: SpectralPlan) -> Any:
    """Spectra ``(..., n_fft // 2 + 1)`` complex of ``raw`` (..., n_src) float32, each window
    extended by odd reflections (``2 x[0] - x[k]``) to ``n_fft`` samples."""
    n, pad = p.n_src, p.pad_src
    right = p.n_fft - n - pad
    first, last = raw[..., :1], raw[..., -1:]
    left_ext = 2 * first - xp.flip(raw[..., 1 : pad + 1], axis=-1)
    # A right reflection longer than the window (a short window on a fast-FFT length) repeats
    # the last reflected value rather than indexing past the start.
    reach = min(right, n - 1)
    right_ext = 2 * last - xp.flip(raw[..., n - 1 - reach : n - 1], axis=-1)
    parts = [left_ext, raw, right_ext]
    if right > reach:
        parts.append(xp.broadcast_to(right_ext[..., -1:], raw.shape[:-1] + (right - reach,)))
    return rfft(xp, xp.concat(parts, axis=-1), p.n_fft)


def _resampled(xp: Any, spec: Any, gain: np.ndarray, n_fft_to: int, start: int, length: int) -> Any:
    """Inverse transform of ``spec × gain`` at ``n_fft_to`` points, cropped to ``[start, start + length)``."""
    k = gain.shape[0]
    scaled = spec[..., :k] * xp.asarray(gain, device=array_api_compat.device(spec))
    return irfft(xp, scaled, n_fft_to)[..., start : start + length]


def filtered(xp: Any, spec: Any, p: SpectralPlan) -> Any:
    """The card's chain at ``fs_out``: ``(..., n_out)`` float32."""
    return _resampled(xp, spec, p.chain_gain, p.n_fft_out, p.pad_out, p.n_out)


def band(xp: Any, spec: Any, p: SpectralPlan, which: str) -> Any:
    """``"qrs"``: the QRS band at the detection rate ``(..., n_det)``; ``"fiducial"``: the
    fiducial low-pass at ``fs_out`` ``(..., n_out)``."""
    if which == "qrs":
        return _resampled(xp, spec, p.qrs_gain, p.n_fft_det, p.pad_det, p.n_det)
    return _resampled(xp, spec, p.fiducial_gain, p.n_fft_out, p.pad_out, p.n_out)
