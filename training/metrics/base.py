"""What every survival metric shares: keeping its last inputs and value, and bootstrapping them.

:class:`IPCWMetric` adds the censoring distribution of the TRAINING fold, whose inverse
probabilities weight Uno's C, the time-dependent AUC and the Brier score. Bootstrap intervals
resample the test fold only, with that censoring fit held fixed.
"""

from __future__ import annotations

import numpy as np
from sksurv.util import Surv

from hfrisk.training.metrics.inputs import ArrayLike, survival_arrays, train_survival

__all__ = ["SurvivalMetric", "IPCWMetric"]


class SurvivalMetric:
    """Keeps the last inputs and value; bootstraps them. Subclasses define ``_compute``."""

    estimate_ndim: tuple[int, ...] = (1,)

    def __init__(self) -> None:
        self.estimate: np.ndarray | None = None
        self.event: np.ndarray | None = None
        self.time: np.ndarray | None = None
        self.value: float | None = None
        self.bootstrap_values: np.ndarray | None = None
        self.n_boot_failed = 0

    def _compute(self, estimate: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
        raise NotImplementedError

    def _store(self, estimate: ArrayLike, event: ArrayLike, time: ArrayLike) -> float:
        self.estimate, self.event, self.time = survival_arrays(
            estimate, event, time, estimate_ndim=self.estimate_ndim
        )
        self.value = float(self._compute(self.estimate, self.event, self.time))
        return self.value

    def confidence_interval(
        self, alpha: float = 0.05, method: str = "bootstrap", n_boot: int = 1000, seed: int = 0
    ) -> tuple[float, float]:
        r"""Percentile-bootstrap :math:`(1-\alpha)` interval of the value from the last call.

        Subjects are resampled with replacement ``n_boot`` times (``numpy`` generator seeded with
        ``seed``); the bounds are the :math:`\alpha/2` and :math:`1-\alpha/2` percentiles of the
        resampled values. Resamples where the metric is undefined (e.g. no event, or an evaluation
        time past the resample's follow-up) are skipped and counted in ``n_boot_failed``; the
        resampled values are kept in ``bootstrap_values``.
        """
        if self.value is None:
            raise RuntimeError("call the metric on data before asking for its confidence interval")
        if method != "bootstrap":
            raise ValueError(f"only method='bootstrap' is implemented, got {method!r}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if n_boot < 1:
            raise ValueError(f"n_boot must be positive, got {n_boot}")
        assert self.estimate is not None and self.event is not None and self.time is not None
        rng = np.random.default_rng(seed)
        n = len(self.time)
        values: list[float] = []
        failed = 0
        for _ in range(n_boot):
            rows = rng.integers(0, n, size=n)
            try:
                values.append(float(self._compute(self.estimate[rows], self.event[rows], self.time[rows])))
            except (ValueError, ZeroDivisionError):
                failed += 1
        self.n_boot_failed = failed
        self.bootstrap_values = np.asarray(values)
        if not values:
            raise ValueError(f"the metric was undefined on all {n_boot} bootstrap resamples")
        lower, upper = np.percentile(self.bootstrap_values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return float(lower), float(upper)


class IPCWMetric(SurvivalMetric):
    """A metric weighted by the censoring distribution of the training fold."""

    def __init__(self, train_event: ArrayLike, train_time: ArrayLike) -> None:
        super().__init__()
        self.survival_train = train_survival(train_event, train_time)
        self.follow_up_end = float(self.survival_train["time"].max())

    def _check_inside_follow_up(self, times: np.ndarray) -> np.ndarray:
        if times.max() >= self.follow_up_end:
            raise ValueError(
                f"times must be before the last training time {self.follow_up_end:g}: censoring weights end there"
            )
        return times

    def _test_fold(self, event: np.ndarray, time: np.ndarray) -> np.ndarray:
        """The test fold as scikit-survival wants it, censored at the end of training follow-up.

        scikit-survival evaluates the training censoring curve at every test time and refuses times past
        the training follow-up, although at evaluation times before that end such subjects only ever count
        as event-free controls. Censoring them there leaves the AUC and the Brier score unchanged while
        letting the two folds' follow-up differ, as it does in cross-validation.
        """
        late = time > self.follow_up_end
        return Surv.from_arrays(event & ~late, np.where(late, self.follow_up_end, time))
