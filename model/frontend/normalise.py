"""The last step of the front end: per-lead z-score of the median beat, zero padding to the card's length.

Both work on one window ``(leads, t)`` or a batch ``(B, leads, t)``: the batch engine and the
per-window callers (the pretraining target, the reference) share them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["zscore_leads", "pad_beat"]

# Standard deviation (mV) under which a median beat is treated as empty rather than divided by.
_ZSCORE_EPS = 1e-6


def zscore_leads(beat: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-lead z-score along time; leads not in ``keep``, or without variance, are exactly 0."""
    beat = beat.astype(np.float64)
    mean = beat.mean(axis=-1, keepdims=True)
    std = beat.std(axis=-1, keepdims=True)
    ok = keep[..., None] & (std > _ZSCORE_EPS)
    out = np.divide(beat - mean, std, out=np.zeros_like(beat), where=ok)
    return out.astype(np.float32)


def pad_beat(beat: np.ndarray, length_samples: int) -> np.ndarray:
    """Zero-pad along time to ``length_samples``, splitting the padding evenly (extra sample after)."""
    missing = length_samples - beat.shape[-1]
    before = missing // 2
    widths = [(0, 0)] * (beat.ndim - 1) + [(before, missing - before)]
    return np.pad(beat, widths).astype(np.float32)
