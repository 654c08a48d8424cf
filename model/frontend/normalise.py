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
    n = beat.shape[-1]
    # np.std's own steps (the mean, the centred values squared and summed, over n, the root), with
    # the centred values kept for the division: the same bits as beat.std() in one pass less.
    mean = np.add.reduce(beat, axis=-1, keepdims=True) / n
    centred = beat - mean
    std = np.sqrt(np.add.reduce(centred * centred, axis=-1, keepdims=True) / n)
    ok = keep[..., None] & (std > _ZSCORE_EPS)
    out = np.divide(centred, std, out=np.zeros_like(beat), where=ok)
    return out.astype(np.float32)


def pad_beat(beat: np.ndarray, length_samples: int) -> np.ndarray:
    """Zero-pad along time to ``length_samples``, splitting the padding evenly (extra sample after)."""
    n = beat.shape[-1]
    before = (length_samples - n) // 2
    out = np.zeros(beat.shape[:-1] + (length_samples,), dtype=np.float32)
    out[..., before : before + n] = beat
    return out
