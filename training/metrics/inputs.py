"""Metric inputs: the one place where ``(estimate, event, time)`` are checked and converted.

Inputs may be numpy arrays, lists or torch tensors; every metric goes through
:func:`survival_arrays` before it computes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
import torch
from sksurv.util import Surv

__all__ = ["ArrayLike", "SurvivalFn", "to_numpy", "survival_arrays", "train_survival", "check_times"]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]
SurvivalFn = Callable[[np.ndarray], np.ndarray]


def to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as error:  # pragma: no cover - only odd objects get here
        raise TypeError(f"{name} could not be converted to an array: {error}") from error


def survival_arrays(
    estimate: ArrayLike, event: ArrayLike, time: ArrayLike, *, estimate_ndim: tuple[int, ...] = (1,)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and convert ``(estimate, event, time)``: the one place where metric inputs are validated.

    Returns float64 ``estimate`` (shape ``(n,)``, or ``(n, k)`` where ``estimate_ndim`` allows it), a
    bool ``event`` and a float64 ``time``, all of length ``n``. Raises ``ValueError`` on mismatched
    lengths, a non-binary ``event``, or non-finite values.

    Example:
        >>> risk, event, time = survival_arrays([0.2, 1.0], [1, 0], [3.0, 5.0])
        >>> event.dtype, time.dtype
        (dtype('bool'), dtype('float64'))
    """
    estimate_array = to_numpy(estimate, "estimate").astype(np.float64)
    event_array = to_numpy(event, "event")
    time_array = to_numpy(time, "time").astype(np.float64)
    if estimate_array.ndim == 2 and estimate_array.shape[1] == 1 and 1 in estimate_ndim:
        estimate_array = estimate_array[:, 0]
    if estimate_array.ndim not in estimate_ndim:
        raise ValueError(f"estimate must have {estimate_ndim} dimensions, got shape {estimate_array.shape}")
    event_array = event_array.reshape(-1) if event_array.ndim == 2 and event_array.shape[1] == 1 else event_array
    time_array = time_array.reshape(-1) if time_array.ndim == 2 and time_array.shape[1] == 1 else time_array
    if event_array.ndim != 1 or time_array.ndim != 1:
        raise ValueError("event and time must be one-dimensional")
    n = len(time_array)
    if len(estimate_array) != n or len(event_array) != n:
        raise ValueError(
            f"estimate, event and time must have the same length, got {len(estimate_array)}, "
            f"{len(event_array)}, {n}"
        )
    if n == 0:
        raise ValueError("no subjects")
    if not np.isin(event_array, (0, 1)).all():
        raise ValueError("event must be a 0/1 or boolean indicator")
    if not np.isfinite(time_array).all():
        raise ValueError("time must be finite")
    if not np.isfinite(estimate_array).all():
        raise ValueError("estimate must be finite")
    return estimate_array, event_array.astype(bool), time_array


def train_survival(train_event: ArrayLike, train_time: ArrayLike) -> np.ndarray:
    """The training fold as scikit-survival's structured ``(event, time)`` array, checked like any input."""
    _, event, time = survival_arrays(np.zeros(len(to_numpy(train_time, "train_time"))), train_event, train_time)
    return Surv.from_arrays(event, time)


def check_times(times: ArrayLike) -> np.ndarray:
    """Evaluation times as a non-empty, strictly increasing float64 array."""
    times_array = np.atleast_1d(to_numpy(times, "times").astype(np.float64))
    if times_array.ndim != 1 or len(times_array) == 0:
        raise ValueError("times must be a non-empty 1-D sequence")
    # scikit-survival sorts the times but not the columns of a survival matrix; insisting on sorted
    # times here stops a silent column mismatch.
    if np.any(np.diff(times_array) <= 0):
        raise ValueError("times must be strictly increasing")
    return times_array
