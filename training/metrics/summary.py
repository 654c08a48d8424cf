"""Every metric for one (train, test) split at once, and the default times for the time-dependent ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hfrisk.training.metrics.auc import TimeDependentAUC
from hfrisk.training.metrics.base import SurvivalMetric
from hfrisk.training.metrics.breslow import BreslowBaseline
from hfrisk.training.metrics.brier_score import IntegratedBrier
from hfrisk.training.metrics.cindex import HarrellC, UnoC
from hfrisk.training.metrics.inputs import ArrayLike, check_times, survival_arrays, to_numpy

__all__ = ["DEFAULT_TIME_QUANTILES", "evaluation_times", "summarize"]

# Percentiles of the test event times at which time-dependent metrics are read by default: early enough
# that cases exist, late enough that controls and censoring weights are still stable.
DEFAULT_TIME_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def evaluation_times(
    train_time: ArrayLike,
    test_event: ArrayLike,
    test_time: ArrayLike,
    quantiles: Sequence[float] = DEFAULT_TIME_QUANTILES,
) -> np.ndarray:
    """Default times for time-dependent metrics: quantiles of the test event times, kept inside follow-up.

    Times are kept only where scikit-survival accepts them: at or after the first test time and before
    the last test time and the last training time.

    Example:
        >>> evaluation_times([1, 2, 3, 4, 5], [1, 1, 1, 0], [1.0, 2.0, 3.0, 4.5], quantiles=(0.5,))
        array([2.])
    """
    train = to_numpy(train_time, "train_time").astype(np.float64)
    _, event, time = survival_arrays(np.zeros(len(to_numpy(test_time, "test_time"))), test_event, test_time)
    if not event.any():
        raise ValueError("no test events: time-dependent metrics are undefined")
    times = np.unique(np.quantile(time[event], quantiles))
    keep = (times >= time.min()) & (times < time.max()) & (times < train.max())
    if not keep.any():
        raise ValueError("no evaluation time falls inside the follow-up of both folds")
    return times[keep]


def summarize(
    train_risk: ArrayLike,
    train_event: ArrayLike,
    train_time: ArrayLike,
    test_risk: ArrayLike,
    test_event: ArrayLike,
    test_time: ArrayLike,
    times: ArrayLike | None = None,
    tau: float | None = None,
    n_boot: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics for one (train, test) split of Cox log-risks, as a JSON-friendly dict.

    The censoring weights and the Breslow baseline (for the Brier score's survival curves) are fitted on
    the train fold; everything is evaluated on the test fold. ``times`` defaults to
    :func:`evaluation_times`; Uno's ``tau`` defaults to the last of those times, where the censoring
    weights are still bounded. With ``n_boot > 0`` each scalar also gets a ``<name>_ci`` percentile
    bootstrap interval.

    Returns keys ``harrell_c``, ``uno_c``, ``mean_auc``, ``ibs`` (floats), ``times``, ``auc``, ``brier``
    (lists, one value per time), ``tau``, ``n_test``, ``n_test_events``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> risk = rng.normal(size=400)
        >>> event_time, censor_time = rng.exponential(np.exp(-risk)), rng.exponential(2.0, size=400)
        >>> time, event = np.minimum(event_time, censor_time), event_time <= censor_time
        >>> out = summarize(risk[:200], event[:200], time[:200], risk[200:], event[200:], time[200:])
        >>> 0.6 < out["harrell_c"] < 0.8 and 0.0 < out["ibs"] < 0.25
        True
    """
    train_risk_array, train_event_array, train_time_array = survival_arrays(train_risk, train_event, train_time)
    test_risk_array, test_event_array, test_time_array = survival_arrays(test_risk, test_event, test_time)
    times_array = (
        evaluation_times(train_time_array, test_event_array, test_time_array) if times is None else check_times(times)
    )
    tau_value = float(times_array[-1]) if tau is None else float(tau)

    baseline = BreslowBaseline().fit(train_risk_array, train_event_array, train_time_array)
    harrell = HarrellC()
    uno = UnoC(train_event_array, train_time_array, tau=tau_value)
    auc = TimeDependentAUC(train_event_array, train_time_array)
    brier = IntegratedBrier(train_event_array, train_time_array)

    out: dict[str, Any] = {
        "harrell_c": harrell(test_risk_array, test_event_array, test_time_array),
        "uno_c": uno(test_risk_array, test_event_array, test_time_array),
        "mean_auc": auc(test_risk_array, test_event_array, test_time_array, times_array),
        "ibs": float("nan"),
        "times": times_array.tolist(),
        "auc": auc.auc.tolist(),  # type: ignore[union-attr]
        "brier": [],
        "tau": tau_value,
        "n_test": int(len(test_time_array)),
        "n_test_events": int(test_event_array.sum()),
    }
    metrics: dict[str, SurvivalMetric] = {"harrell_c": harrell, "uno_c": uno, "mean_auc": auc}
    if len(times_array) >= 2:  # the integral needs two points
        out["ibs"] = brier(baseline.survival(test_risk_array, times_array), test_event_array, test_time_array,
                           times_array)
        out["brier"] = brier.brier.tolist()  # type: ignore[union-attr]
        metrics["ibs"] = brier
    if n_boot > 0:
        for name, metric in metrics.items():
            out[f"{name}_ci"] = list(metric.confidence_interval(alpha=alpha, n_boot=n_boot, seed=seed))
    return out
