"""MIT-BIH Noise Stress Test Database, its noise records: ``bw`` (baseline wander) and ``ma`` (muscle
artefact), 2 channels, 360 Hz, 30 min, recorded where the ECG is not visible. (``em``, electrode
motion, is not among the shared files.)"""

from __future__ import annotations

import numpy as np
import wfdb

from bench.references.root import data_root

__all__ = ["NOISES", "read_noise"]

NOISES = ("ma", "bw")


def read_noise(name: str, n_samples: int | None = None) -> np.ndarray:
    """Noise record ``name`` as ``(2, n)`` float64 in its physical units (mV), first ``n_samples``."""
    rec = wfdb.rdrecord(str(data_root() / "nstdb" / name), sampto=n_samples)
    return rec.p_signal.T.astype(np.float64)
