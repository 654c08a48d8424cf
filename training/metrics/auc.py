"""Cumulative/dynamic AUC of a risk score at given times (scikit-survival, censoring weights from the training fold)."""

from __future__ import annotations

import numpy as np
from sksurv.metrics import cumulative_dynamic_auc

from hfrisk.training.metrics.base import IPCWMetric
from hfrisk.training.metrics.inputs import ArrayLike, check_times

__all__ = ["TimeDependentAUC"]


class TimeDependentAUC(IPCWMetric):
    r"""Cumulative/dynamic AUC at given times: cases have the event by :math:`t`, controls are event-free.

    .. math::

        \mathrm{AUC}(t) = \frac{\sum_i \sum_j \mathbb{1}[T_j > t] \, \mathbb{1}[T_i \le t] \, \omega_i \,
                                \mathbb{1}[\eta_i > \eta_j]}
                               {\big(\sum_i \mathbb{1}[T_i \le t] \, \omega_i\big)
                                \big(\sum_j \mathbb{1}[T_j > t]\big)},
        \qquad \omega_i = \delta_i / \hat G(T_i)

    (scikit-survival's ``cumulative_dynamic_auc``; ties in the score count one half). Calling returns
    the mean AUC over ``times`` weighted by the drop of the Kaplan-Meier survival between them (a single
    time gives its own AUC); the per-time values are kept in ``auc`` and ``times``. ``times`` must be
    increasing, inside the test follow-up and before the last training time. ``risk`` may be ``(n,)``,
    or ``(n, len(times))`` for a time-dependent score.

    Example:
        >>> auc = TimeDependentAUC(train_event=[1, 0, 1, 1, 0, 1], train_time=[1, 2, 3, 4, 5, 6])
        >>> auc(risk=[4.0, 3.0, 2.0, 1.0], event=[1, 1, 0, 1], time=[1.5, 2.5, 3.5, 4.5], times=[2.0, 3.0])
        1.0
    """

    estimate_ndim = (1, 2)

    def __init__(self, train_event: ArrayLike, train_time: ArrayLike) -> None:
        super().__init__(train_event, train_time)
        self.times: np.ndarray | None = None
        self.auc: np.ndarray | None = None

    def __call__(self, risk: ArrayLike, event: ArrayLike, time: ArrayLike, times: ArrayLike) -> float:
        self.times = self._check_inside_follow_up(check_times(times))
        value = self._store(risk, event, time)
        self.auc = self._auc_per_time(self.estimate, self.event, self.time)[0]  # type: ignore[arg-type]
        return value

    def _auc_per_time(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, float]:
        assert self.times is not None
        if estimate.ndim == 2 and estimate.shape[1] != len(self.times):
            raise ValueError(f"a 2-D risk needs one column per time, got {estimate.shape[1]} for {len(self.times)}")
        auc, mean_auc = cumulative_dynamic_auc(self.survival_train, self._test_fold(event, time), estimate, self.times)
        if not np.all(np.isfinite(auc)):
            raise ValueError("AUC undefined at some time (no cases or no controls)")
        return np.asarray(auc, dtype=np.float64), float(mean_auc)

    def _compute(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
        return self._auc_per_time(estimate, event, time)[1]
