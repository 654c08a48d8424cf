"""Breslow's baseline hazard: turning Cox log-risks into survival curves (for the Brier score)."""

from __future__ import annotations

import numpy as np

from hfrisk.training.metrics.inputs import ArrayLike, survival_arrays, to_numpy

__all__ = ["BreslowBaseline"]


class BreslowBaseline:
    r"""Breslow estimate of the baseline cumulative hazard, turning Cox log-risks into survival curves.

    .. math::

        \hat H_0(t) = \sum_{t_k \le t} \frac{d_k}{\sum_{j:\,T_j \ge t_k} e^{\eta_j}},
        \qquad \hat S(t \mid \eta) = \exp\big(-\hat H_0(t)\, e^{\eta}\big)

    over the distinct event times :math:`t_k` with :math:`d_k` events each, fitted on the training
    fold's log-risks. Agrees with scikit-survival's ``BreslowEstimator`` and torchsurv's
    ``baseline_survival_function``. Risks are centred internally so large scores do not overflow.

    Example:
        >>> baseline = BreslowBaseline().fit(risk=[0.0, 0.0, 0.0, 0.0], event=[1, 0, 1, 0], time=[1, 2, 3, 4])
        >>> baseline.cumulative_hazard([0.5, 1.0, 3.0]).round(4)  # 1/4, then + 1/2
        array([0.  , 0.25, 0.75])
        >>> baseline.survival([0.0, 1.0], [3.0]).round(4)
        array([[0.4724],
               [0.1302]])
    """

    def __init__(self) -> None:
        self.event_times: np.ndarray | None = None
        self.offset = 0.0
        self._cumulative_hazard_centred: np.ndarray | None = None

    def fit(self, risk: ArrayLike, event: ArrayLike, time: ArrayLike) -> BreslowBaseline:
        risk_array, event_array, time_array = survival_arrays(risk, event, time)
        if not event_array.any():
            raise ValueError("the Breslow estimator needs at least one event")
        self.offset = float(risk_array.max())
        weight = np.exp(risk_array - self.offset)
        time_sorted = np.sort(time_array, kind="stable")
        weight_sorted = weight[np.argsort(time_array, kind="stable")]
        # at_risk_from[m] = sum of weights from sorted position m on: the risk set of anyone at time_sorted[m].
        at_risk_from = np.cumsum(weight_sorted[::-1])[::-1]
        self.event_times, n_events = np.unique(time_array[event_array], return_counts=True)
        at_risk = at_risk_from[np.searchsorted(time_sorted, self.event_times, side="left")]
        self._cumulative_hazard_centred = np.cumsum(n_events / at_risk)
        return self

    def _centred_hazard(self, times: ArrayLike) -> np.ndarray:
        """Cumulative hazard of a subject whose log-risk equals ``offset``, at ``times``."""
        if self.event_times is None or self._cumulative_hazard_centred is None:
            raise RuntimeError("call fit() first")
        times_array = np.atleast_1d(to_numpy(times, "times").astype(np.float64)).reshape(-1)
        steps = np.searchsorted(self.event_times, times_array, side="right")
        return np.concatenate([[0.0], self._cumulative_hazard_centred])[steps]

    def cumulative_hazard(self, times: ArrayLike) -> np.ndarray:
        r""":math:`\hat H_0(t)` at ``times`` (a right-continuous step function, 0 before the first event)."""
        return self._centred_hazard(times) * np.exp(-self.offset)

    def survival(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        r"""Survival matrix :math:`\hat S(t \mid \eta)`, shape ``(len(risk), len(times))``."""
        risk_array = np.atleast_1d(to_numpy(risk, "risk").astype(np.float64)).reshape(-1)
        return np.exp(-np.outer(np.exp(risk_array - self.offset), self._centred_hazard(times)))
