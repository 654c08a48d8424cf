"""What an evaluated method hands back (log-risks of both folds), and Harrell's C where it may be undefined.

Kept with the metrics so that the methods (fine-tuning, the Cox baseline, the oracle of the
synthetic cohort) need not import the protocol that runs them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hfrisk.training.metrics.cindex import HarrellC
from hfrisk.training.metrics.inputs import ArrayLike

__all__ = ["MethodResult", "harrell_c_or_nan"]


class MethodResult(NamedTuple):
    """Log-risks (higher = riskier) of the whole training fold and of the test fold, plus details."""

    train_risk: np.ndarray
    test_risk: np.ndarray
    info: dict


def harrell_c_or_nan(risk: ArrayLike, event: ArrayLike, time: ArrayLike) -> float:
    """Harrell's C, or NaN where it is undefined (no comparable pair in a tiny part)."""
    try:
        return HarrellC()(risk, event, time)
    except ValueError:
        return float("nan")
