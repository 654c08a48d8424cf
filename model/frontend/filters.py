"""Resampling and the card's filter chain (baseline-wander high-pass, powerline notches, low-pass).

Everything here works on ``(n_leads, n_samples)`` float arrays along the last axis, with scipy's
zero-phase filters so that the R peak does not move: the model's input puts it at a fixed index.

>>> import numpy as np
>>> from hfrisk.model.contract.card import default_card
>>> x = np.zeros((12, 3600), dtype=np.float32)            # 10 s at 360 Hz
>>> y = resample(x, 360.0, 500.0); y.shape
(12, 5000)
>>> filter_leads(y, 500.0, default_card().filters, source_fs_hz=360.0).shape
(12, 5000)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

from hfrisk.model.contract.card import FilterSpec

__all__ = ["resample_ratio", "resample", "filter_leads", "design_filters", "lowpass", "bandpass"]

# Up/down factors of the polyphase resampler are kept below this: a float rate such as
# 499.97 Hz then costs a time-scale error of < 1e-6, and the polyphase filter stays short.
_MAX_RESAMPLE_FACTOR = 1000
# A notch is placed only if it lies this far below the Nyquist frequency of the signal's true
# bandwidth; at Nyquist there is nothing to remove and the filter design is ill-conditioned.
_NYQUIST_MARGIN = 0.98
# Quality factor of the powerline notches: ~1.7 Hz wide at 50 Hz, narrow enough to leave QRS energy.
_NOTCH_Q = 30.0
_HIGHPASS_ORDER = 2  # doubled by filtfilt; sharper orders ring into the ST segment
_LOWPASS_ORDER = 4
_BANDPASS_ORDER = 2  # per edge; doubled by filtfilt


def resample_ratio(fs_from_hz: float, fs_to_hz: float) -> tuple[int, int]:
    """``(up, down)`` with ``fs_from * up / down ≈ fs_to`` (exact for rational rates such as 360→500)."""
    ratio = Fraction(fs_to_hz / fs_from_hz).limit_denominator(_MAX_RESAMPLE_FACTOR)
    return ratio.numerator, ratio.denominator


def resample(samples: np.ndarray, fs_from_hz: float, fs_to_hz: float) -> np.ndarray:
    """Polyphase resampling along the last axis; a no-op (same array) when the rates match."""
    up, down = resample_ratio(fs_from_hz, fs_to_hz)
    if up == down:
        return samples
    out = signal.resample_poly(samples, up, down, axis=-1)
    return out.astype(samples.dtype, copy=False)


@lru_cache(maxsize=64)
def design_filters(fs_hz: float, spec: FilterSpec, bandwidth_hz: float) -> np.ndarray:
    """Second-order sections of the whole chain for a signal at ``fs_hz`` whose content ends at
    ``bandwidth_hz`` (the source's Nyquist frequency: an upsampled 100-Hz record has nothing at
    50 Hz to notch). Cached: streaming calls this once per (rate, card)."""
    nyquist = min(fs_hz / 2.0, bandwidth_hz) * _NYQUIST_MARGIN
    sections = [signal.butter(_HIGHPASS_ORDER, spec.highpass_hz, "highpass", fs=fs_hz, output="sos")]
    for mains_hz in spec.powerline_hz:
        if mains_hz < nyquist:
            b, a = signal.iirnotch(mains_hz, _NOTCH_Q, fs=fs_hz)
            sections.append(signal.tf2sos(b, a))
    if spec.lowpass_hz < nyquist:
        sections.append(signal.butter(_LOWPASS_ORDER, spec.lowpass_hz, "lowpass", fs=fs_hz, output="sos"))
    return np.concatenate(sections, axis=0)


@dataclass(frozen=True)
class _ZeroPhase:
    """A filter chain with what ``scipy.signal.sosfiltfilt`` would recompute on every call.

    ``sosfiltfilt`` solves for the steady-state initial conditions (``sosfilt_zi``) each time,
    which costs more than filtering a 10-s 12-lead window; :meth:`apply` is the same computation
    (odd extension of ``3 * ntaps`` samples, forward and backward ``sosfilt`` started from
    ``zi``) with that solution kept. ``tests/model/test_filters.py`` holds it to scipy.
    """

    sos: np.ndarray
    zi: np.ndarray  # (n_sections, 2): scaled per signal by its first sample
    edge: int

    @classmethod
    def of(cls, sos: np.ndarray) -> "_ZeroPhase":
        ntaps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
        return cls(sos=sos, zi=signal.sosfilt_zi(sos), edge=3 * ntaps)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Zero-phase filtered ``x`` along its last axis (any number of leading axes); float64 out."""
        if x.shape[-1] <= self.edge:
            # scipy's own message for a window too short to pad
            return signal.sosfiltfilt(self.sos, x, axis=-1)
        e = self.edge
        # Odd extension in the input's dtype, as scipy's ``odd_ext`` does (float32 windows stay
        # bit-identical to ``sosfiltfilt``).
        ext = np.concatenate(
            (2 * x[..., :1] - x[..., e:0:-1], x, 2 * x[..., -1:] - x[..., -2 : -e - 2 : -1]), axis=-1
        )
        # sosfilt wants zi as (n_sections, *leading axes, 2)
        zi = self.zi.reshape((len(self.sos),) + (1,) * (x.ndim - 1) + (2,))
        y, _ = signal.sosfilt(self.sos, ext, axis=-1, zi=zi * ext[..., :1])
        y, _ = signal.sosfilt(self.sos, y[..., ::-1], axis=-1, zi=zi * y[..., -1:])
        return y[..., ::-1][..., e:-e]


@lru_cache(maxsize=64)
def _chain(fs_hz: float, spec: FilterSpec, bandwidth_hz: float) -> _ZeroPhase:
    return _ZeroPhase.of(design_filters(fs_hz, spec, bandwidth_hz))


def filter_leads(
    samples: np.ndarray, fs_hz: float, spec: FilterSpec, *, source_fs_hz: float | None = None
) -> np.ndarray:
    """Zero-phase filter every lead with the card's chain; float32 out.

    ``source_fs_hz`` is the rate the signal was recorded at, if it was resampled since: notches
    and the low-pass above the source's Nyquist frequency are skipped.
    """
    bandwidth_hz = (source_fs_hz if source_fs_hz is not None else fs_hz) / 2.0
    chain = _chain(float(fs_hz), spec, float(bandwidth_hz))
    return chain.apply(samples).astype(np.float32, copy=False)


@lru_cache(maxsize=16)
def _lowpass_chain(fs_hz: float, cutoff_hz: float) -> _ZeroPhase:
    return _ZeroPhase.of(signal.butter(_LOWPASS_ORDER, cutoff_hz, "lowpass", fs=fs_hz, output="sos"))


def lowpass(samples: np.ndarray, fs_hz: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase low-pass along the last axis (a no-op at or above the Nyquist frequency)."""
    if cutoff_hz >= fs_hz / 2.0 * _NYQUIST_MARGIN:
        return samples
    return _lowpass_chain(float(fs_hz), float(cutoff_hz)).apply(samples)


@lru_cache(maxsize=16)
def _bandpass_chain(fs_hz: float, low_hz: float, high_hz: float) -> _ZeroPhase:
    high_hz = min(high_hz, fs_hz / 2.0 * _NYQUIST_MARGIN)
    return _ZeroPhase.of(signal.butter(_BANDPASS_ORDER, (low_hz, high_hz), "bandpass", fs=fs_hz, output="sos"))


def bandpass(samples: np.ndarray, fs_hz: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase band-pass along the last axis (the upper edge capped below the Nyquist frequency)."""
    return _bandpass_chain(float(fs_hz), float(low_hz), float(high_hz)).apply(samples)
