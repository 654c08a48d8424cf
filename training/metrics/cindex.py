"""Concordance indices of a risk score: Harrell's C (the paper's, via lifelines) and Uno's IPCW C.

A score is a log-hazard, higher = riskier; a perfect score gives 1, random 0.5. Harrell's C is
``lifelines.utils.concordance_index(time, -risk, event)``, so the numbers match the paper's code
exactly, ties included.
"""

from __future__ import annotations

import numpy as np
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw
from sksurv.util import Surv

from hfrisk.training.metrics.base import IPCWMetric, SurvivalMetric
from hfrisk.training.metrics.inputs import ArrayLike

__all__ = ["HarrellC", "UnoC"]


class HarrellC(SurvivalMetric):
    r"""Harrell's concordance index of a risk score (higher = riskier), exactly as lifelines computes it.

    .. math::

        C = \frac{\sum_{i \ne j} \delta_i \, \mathbb{1}[T_i < T_j]
                  \big(\mathbb{1}[\eta_i > \eta_j] + \tfrac12 \mathbb{1}[\eta_i = \eta_j]\big)}
                 {\sum_{i \ne j} \delta_i \, \mathbb{1}[T_i < T_j]}

    A censored subject with the same time as an event counts as having outlived it; two events at the
    same time are not comparable. This is ``lifelines.utils.concordance_index(time, -risk, event)``, the
    paper's metric, and equals scikit-survival's ``concordance_index_censored``. 1 = perfect ranking,
    0.5 = random, 0 = perfectly reversed.

    Example:
        >>> c = HarrellC()
        >>> c(risk=[3.0, 2.0, 1.0], event=[1, 1, 0], time=[1.0, 2.0, 3.0])
        1.0
        >>> c(risk=[1.0, 2.0, 3.0], event=[1, 1, 0], time=[1.0, 2.0, 3.0])
        0.0
    """

    def __call__(self, risk: ArrayLike, event: ArrayLike, time: ArrayLike) -> float:
        return self._store(risk, event, time)

    def _compute(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
        try:
            # lifelines' score is "higher = longer survival", hence the minus sign.
            return float(concordance_index(time, -estimate, event))
        except ZeroDivisionError as error:
            raise ValueError("no comparable pairs: Harrell's C is undefined") from error


class UnoC(IPCWMetric):
    r"""Uno's IPCW concordance index, truncated at ``tau``; robust to the censoring distribution.

    .. math::

        C_\tau = \frac{\sum_{i \ne j} \delta_i \, \hat G(T_i)^{-2} \, \mathbb{1}[T_i < T_j,\ T_i < \tau]
                       \big(\mathbb{1}[\eta_i > \eta_j] + \tfrac12 \mathbb{1}[\eta_i = \eta_j]\big)}
                      {\sum_{i \ne j} \delta_i \, \hat G(T_i)^{-2} \, \mathbb{1}[T_i < T_j,\ T_i < \tau]}

    with :math:`\hat G` the Kaplan-Meier estimate of the censoring survival on the training fold
    (scikit-survival's ``concordance_index_ipcw``). Without censoring it equals Harrell's C. With
    ``tau=None`` every test time must lie where :math:`\hat G > 0`; a ``tau`` inside the follow-up keeps
    the weights bounded.

    Example:
        >>> uno = UnoC(train_event=[1, 0, 1, 1, 0, 1], train_time=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        >>> uno(risk=[3.0, 2.0, 1.0], event=[1, 1, 0], time=[1.5, 2.5, 3.5])
        1.0
    """

    def __init__(self, train_event: ArrayLike, train_time: ArrayLike, tau: float | None = None) -> None:
        super().__init__(train_event, train_time)
        self.tau = tau

    def __call__(self, risk: ArrayLike, event: ArrayLike, time: ArrayLike) -> float:
        return self._store(risk, event, time)

    def _compute(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
        value = concordance_index_ipcw(self.survival_train, Surv.from_arrays(event, time), estimate, tau=self.tau)[0]
        if not np.isfinite(value):
            raise ValueError("no comparable pairs before tau: Uno's C is undefined")
        return float(value)
