"""Survival evaluation metrics for risk scores, each a callable class that keeps its inputs.

Sign convention (shared by all of ``hfrisk.training``): a score is a log-hazard, HIGHER = RISKIER.
Every metric here takes such a score (or, for the Brier score, survival probabilities) and needs no
sign flip from the caller: a perfect risk score gives a C-index of 1.

Modelled on torchsurv's metrics: ``metric = HarrellC(); metric(risk, event, time)`` returns the value
and keeps the inputs, so ``metric.confidence_interval()`` can bootstrap them afterwards. Inputs may be
numpy arrays, lists or torch tensors; they are checked in one place, :func:`survival_arrays`.

The paper's metric is Harrell's C as lifelines computes it, ``concordance_index(time, -risk, event)``
(§3.2); it is computed by lifelines here, so the numbers match the paper's code exactly, ties included.
Uno's C, the cumulative/dynamic AUC and the integrated Brier score use scikit-survival, whose
inverse-probability-of-censoring weights (IPCW) come from a Kaplan-Meier fit of the censoring
distribution on the TRAINING fold. Bootstrap intervals resample the test fold only, with that
censoring fit held fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import torch
from lifelines.utils import concordance_index
from sksurv.metrics import brier_score, concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score
from sksurv.util import Surv

__all__ = [
    "BreslowBaseline",
    "HarrellC",
    "IntegratedBrier",
    "TimeDependentAUC",
    "UnoC",
    "evaluation_times",
    "summarize",
    "survival_arrays",
]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]
SurvivalFn = Callable[[np.ndarray], np.ndarray]

# Percentiles of the test event times at which time-dependent metrics are read by default: early enough
# that cases exist, late enough that controls and censoring weights are still stable.
DEFAULT_TIME_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


# --------------------------------------------------------------------------------------------- inputs
def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
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
    estimate_array = _to_numpy(estimate, "estimate").astype(np.float64)
    event_array = _to_numpy(event, "event")
    time_array = _to_numpy(time, "time").astype(np.float64)
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


def _train_arrays(train_event: ArrayLike, train_time: ArrayLike) -> np.ndarray:
    _, event, time = survival_arrays(np.zeros(len(_to_numpy(train_time, "train_time"))), train_event, train_time)
    return Surv.from_arrays(event, time)


def _check_times(times: ArrayLike) -> np.ndarray:
    times_array = np.atleast_1d(_to_numpy(times, "times").astype(np.float64))
    if times_array.ndim != 1 or len(times_array) == 0:
        raise ValueError("times must be a non-empty 1-D sequence")
    # scikit-survival sorts the times but not the columns of a survival matrix; insisting on sorted
    # times here stops a silent column mismatch.
    if np.any(np.diff(times_array) <= 0):
        raise ValueError("times must be strictly increasing")
    return times_array


# ------------------------------------------------------------------------------------------ base class
class _SurvivalMetric:
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


class _IPCWMetric(_SurvivalMetric):
    """A metric weighted by the censoring distribution of the training fold."""

    def __init__(self, train_event: ArrayLike, train_time: ArrayLike) -> None:
        super().__init__()
        self.survival_train = _train_arrays(train_event, train_time)
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


# ---------------------------------------------------------------------------------------- concordance
class HarrellC(_SurvivalMetric):
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


class UnoC(_IPCWMetric):
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


# ------------------------------------------------------------------------------- time-dependent metrics
class TimeDependentAUC(_IPCWMetric):
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
        self.times = self._check_inside_follow_up(_check_times(times))
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


class IntegratedBrier(_IPCWMetric):
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
        self.times = self._check_inside_follow_up(_check_times(times))
        if len(self.times) < 2:
            raise ValueError("the integrated Brier score needs at least two times")
        matrix = survival(self.times) if callable(survival) else survival
        matrix_array = _to_numpy(matrix, "survival")
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


# ------------------------------------------------------------------------------------ survival curves
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
        times_array = np.atleast_1d(_to_numpy(times, "times").astype(np.float64)).reshape(-1)
        steps = np.searchsorted(self.event_times, times_array, side="right")
        return np.concatenate([[0.0], self._cumulative_hazard_centred])[steps]

    def cumulative_hazard(self, times: ArrayLike) -> np.ndarray:
        r""":math:`\hat H_0(t)` at ``times`` (a right-continuous step function, 0 before the first event)."""
        return self._centred_hazard(times) * np.exp(-self.offset)

    def survival(self, risk: ArrayLike, times: ArrayLike) -> np.ndarray:
        r"""Survival matrix :math:`\hat S(t \mid \eta)`, shape ``(len(risk), len(times))``."""
        risk_array = np.atleast_1d(_to_numpy(risk, "risk").astype(np.float64)).reshape(-1)
        return np.exp(-np.outer(np.exp(risk_array - self.offset), self._centred_hazard(times)))


# ------------------------------------------------------------------------------------------- summary
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
    train = _to_numpy(train_time, "train_time").astype(np.float64)
    _, event, time = survival_arrays(np.zeros(len(_to_numpy(test_time, "test_time"))), test_event, test_time)
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
        evaluation_times(train_time_array, test_event_array, test_time_array) if times is None else _check_times(times)
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
    metrics: dict[str, _SurvivalMetric] = {"harrell_c": harrell, "uno_c": uno, "mean_auc": auc}
    if len(times_array) >= 2:  # the integral needs two points
        out["ibs"] = brier(baseline.survival(test_risk_array, times_array), test_event_array, test_time_array,
                           times_array)
        out["brier"] = brier.brier.tolist()  # type: ignore[union-attr]
        metrics["ibs"] = brier
    if n_boot > 0:
        for name, metric in metrics.items():
            out[f"{name}_ci"] = list(metric.confidence_interval(alpha=alpha, n_boot=n_boot, seed=seed))
    return out
