"""Integrated Brier score of predicted survival curves (scikit-survival, censoring weights from the training fold)."""

from __future__ import annotations

import numpy as np
from sksurv.metrics import brier_score, integrated_brier_score

from hfrisk.training.metrics.base import IPCWMetric
from hfrisk.training.metrics.inputs import ArrayLike, SurvivalFn, check_times, to_numpy

__all__ = ["IntegratedBrier"]


class IntegratedBrier(IPCWMetric):
    r"""Integrated Brier score (IPCW) of predicted survival curves; lower is better, 0.25 ~ uninformative.

    .. math::

        \mathrm{BS}(t) = \frac1n \sum_i \Big[ \frac{\hat S(t \mid x_i)^2 \, \mathbb{1}[T_i \le t,\ \delta_i = 1]}
                                                   {\hat G(T_i)}
                                            + \frac{(1 - \hat S(t \mid x_i))^2 \, \mathbb{1}[T_i > t]}{\hat G(t)} \Big],
        \qquad \mathrm{IBS} = \frac{1}{t_K - t_1} \int_{t_1}^{t_K} \mathrm{BS}(t)\, dt

    (scikit-survival's ``integrated_brier_score``, trapezoid rule over ``times``). Input is the
    predicted SURVIVAL probability, not a risk: an ``(n, len(times))`` matrix, or a function mapping
    ``times`` to one (e.g. ``lambda t: baseline.survival(risk, t)`` with :class:`BreslowBaseline`). At
    least two increasing ``times`` inside the test follow-up and before the last training time are
    needed. Per-time scores go to ``brier``.

    Example:
        >>> ibs = IntegratedBrier(train_event=[1, 0, 1, 1, 0, 1], train_time=[1, 2, 3, 4, 5, 6])
        >>> perfect = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]  # S(t) at t = 2, 3
        >>> ibs(perfect, event=[1, 1, 0, 1], time=[1.5, 2.5, 3.5, 4.5], times=[2.0, 3.0])
        0.0
    """

    estimate_ndim = (2,)

    def __init__(self, train_event: ArrayLike, train_time: ArrayLike) -> None:
        super().__init__(train_event, train_time)
        self.times: np.ndarray | None = None
        self.brier: np.ndarray | None = None

    def __call__(
        self, survival: ArrayLike | SurvivalFn, event: ArrayLike, time: ArrayLike, times: ArrayLike
    ) -> float:
        self.times = self._check_inside_follow_up(check_times(times))
        if len(self.times) < 2:
            raise ValueError("the integrated Brier score needs at least two times")
        matrix = survival(self.times) if callable(survival) else survival
        matrix_array = to_numpy(matrix, "survival")
        if matrix_array.ndim != 2 or matrix_array.shape[1] != len(self.times):
            raise ValueError(f"survival must be (n, {len(self.times)}), got shape {matrix_array.shape}")
        if np.any((matrix_array < 0) | (matrix_array > 1)):
            raise ValueError("survival probabilities must lie in [0, 1]")
        value = self._store(matrix_array, event, time)
        test = self._test_fold(self.event, self.time)  # type: ignore[arg-type]
        self.brier = np.asarray(brier_score(self.survival_train, test, self.estimate, self.times)[1])
        return value

    def _compute(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
        assert self.times is not None
        return float(integrated_brier_score(self.survival_train, self._test_fold(event, time), estimate, self.times))
