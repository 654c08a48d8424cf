r"""How many runs, and how many events, it takes to tell two methods apart by their C-index.

Two methods scored on the same folds give one paired difference :math:`d_r = C_{A,r} - C_{B,r}` per
run. A two-sided paired t-test of :math:`\bar d` at level :math:`\alpha` has power

.. math::

    1 - \beta = P\big(|T_{n-1,\lambda}| > t_{1-\alpha/2,\,n-1}\big), \qquad
    \lambda = \frac{\delta}{\sigma_d / \sqrt{n}},

with :math:`T_{n-1,\lambda}` noncentral t, :math:`\delta` the true mean difference and :math:`\sigma_d`
the per-run SD of the paired differences (:func:`paired_t_power`); :func:`runs_needed` is the smallest
``n`` reaching the power asked for. The normal approximation is
:math:`n = ((z_{1-\alpha/2} + z_{1-\beta})\,\sigma_d / \delta)^2` (:func:`runs_needed_normal`).

Cross-validation runs are not independent: every seed tests the same subjects, and training sets
overlap. Nadeau and Bengio's corrected resampled t-test (Machine Learning 52, 2003) replaces
:math:`\sigma_d^2 / n` by :math:`\sigma_d^2 (1/n + n_\text{test}/n_\text{train})`; with 2 folds the
ratio is 1, so the variance of the mean never falls below :math:`\sigma_d^2` however many seeds run
(:func:`runs_needed_corrected` says when no number of runs is enough).

How many events a test set needs follows from the standard error of a C-index. For a binary outcome
C is the AUC, and Hanley and McNeil (Radiology 143, 1982) give

.. math::

    SE^2(C) = \frac{C(1-C) + (n_1 - 1)(Q_1 - C^2) + (n_0 - 1)(Q_2 - C^2)}{n_1 n_0}, \quad
    Q_1 = \frac{C}{2 - C},\ Q_2 = \frac{2C^2}{1 + C},

with :math:`n_1` events and :math:`n_0` non-events (exact when scores are exponential in both
groups; :func:`harrell_c_se`). Harrell's C on censored data compares each event with the subjects
still at risk, so taking the censored as non-events is an approximation, checked against a bootstrap
in docs/training/evidence.md. Two methods scored on the same subjects have correlated C estimates
(correlation :math:`r`): :math:`SE(\Delta C) = \sqrt{SE_A^2 + SE_B^2 - 2 r\, SE_A SE_B}`
(Hanley and McNeil, Radiology 148, 1983; :func:`paired_c_difference_se`), and :func:`events_needed`
is the smallest event count at which that SE lets one test set detect :math:`\delta`.

>>> runs_needed(sd_diff=0.05, delta=0.03)
24
>>> round(harrell_c_se(0.8, n_events=50, n_nonevents=950), 4)
0.0381
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

__all__ = [
    "paired_t_power",
    "runs_needed",
    "runs_needed_normal",
    "runs_needed_corrected",
    "sd_from_t_interval",
    "harrell_c_se",
    "paired_c_difference_se",
    "events_needed",
]

_MAX_RUNS = 1_000_000


def _check(sd_diff: float, delta: float, alpha: float, power: float) -> None:
    if not sd_diff > 0 or not delta > 0:
        raise ValueError(f"sd_diff and delta must be positive, got {sd_diff} and {delta}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")


def paired_t_power(n_runs: int, sd_diff: float, delta: float = 0.03, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test over ``n_runs`` independent runs (module docstring)."""
    _check(sd_diff, delta, alpha, 0.5)
    if n_runs < 2:
        raise ValueError(f"a t-test needs at least 2 runs, got {n_runs}")
    dof = n_runs - 1
    critical = stats.t.ppf(1 - alpha / 2, dof)
    noncentrality = delta / (sd_diff / math.sqrt(n_runs))
    upper = stats.nct.sf(critical, dof, noncentrality)
    lower = stats.nct.cdf(-critical, dof, noncentrality)
    # scipy's nct.cdf underflows to NaN far below a large noncentrality, where the tail is ~0.
    return float(upper + (lower if np.isfinite(lower) else 0.0))


def runs_needed(sd_diff: float, delta: float = 0.03, alpha: float = 0.05, power: float = 0.8) -> int:
    """The smallest number of independent runs whose paired t-test detects ``delta`` with ``power``."""
    _check(sd_diff, delta, alpha, power)
    # The normal answer is a lower bound (t has heavier tails): search upward from it.
    n = max(2, math.floor(runs_needed_normal(sd_diff, delta, alpha, power)))
    while paired_t_power(n, sd_diff, delta, alpha) < power:
        n += 1
        if n > _MAX_RUNS:
            raise ValueError("more than a million runs: the difference is out of reach")
    return n


def runs_needed_normal(sd_diff: float, delta: float = 0.03, alpha: float = 0.05, power: float = 0.8) -> float:
    """The closed-form (normal) run count ``((z_{1-alpha/2} + z_power) sd_diff / delta)^2``, not rounded."""
    _check(sd_diff, delta, alpha, power)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float((z * sd_diff / delta) ** 2)


def runs_needed_corrected(
    sd_diff: float, test_train_ratio: float, delta: float = 0.03, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Runs for the corrected resampled t-test (normal approximation); ``inf`` when none suffice.

    ``test_train_ratio`` is ``n_test / n_train`` of one run: 1 for 2-fold, 1/4 for 5-fold CV.
    """
    _check(sd_diff, delta, alpha, power)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    allowed = (delta / z) ** 2 / sd_diff**2  # the largest (1/n + ratio) that still has the power
    if allowed <= test_train_ratio:
        return math.inf
    return float(1.0 / (allowed - test_train_ratio))


def sd_from_t_interval(ci_low: float, ci_high: float, n_runs: int, level: float = 0.95) -> float:
    """The per-run SD behind a t-interval of a mean over ``n_runs`` (to re-derive it from a table)."""
    half = (ci_high - ci_low) / 2.0
    return float(half * math.sqrt(n_runs) / stats.t.ppf(0.5 + level / 2.0, n_runs - 1))


def harrell_c_se(c: float, n_events: float, n_nonevents: float) -> float:
    """Hanley-McNeil standard error of a C-index from ``n_events`` events and ``n_nonevents`` others."""
    if not 0 < c < 1:
        raise ValueError(f"c must be in (0, 1), got {c}")
    if n_events < 1 or n_nonevents < 1:
        raise ValueError("needs at least one event and one non-event")
    q1, q2 = c / (2 - c), 2 * c**2 / (1 + c)
    variance = (c * (1 - c) + (n_events - 1) * (q1 - c**2) + (n_nonevents - 1) * (q2 - c**2)) / (n_events * n_nonevents)
    return float(math.sqrt(variance))


def paired_c_difference_se(
    c_a: float, c_b: float, n_events: float, n_nonevents: float, correlation: float
) -> float:
    """SE of ``C_A - C_B`` on the same subjects, given the correlation of the two C estimates."""
    if not -1 <= correlation <= 1:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation}")
    se_a, se_b = harrell_c_se(c_a, n_events, n_nonevents), harrell_c_se(c_b, n_events, n_nonevents)
    return float(math.sqrt(max(se_a**2 + se_b**2 - 2 * correlation * se_a * se_b, 0.0)))


def events_needed(
    c_b: float,
    delta: float = 0.03,
    correlation: float = 0.5,
    event_rate: float = 0.05,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """The smallest event count at which one test set detects ``C_A = c_b + delta`` (normal test).

    The test set has ``events / event_rate`` subjects; ``correlation`` is that of the two methods'
    C estimates on the same subjects (0: unrelated scores; near 1: nearly the same score).
    """
    if not 0 < event_rate < 1:
        raise ValueError(f"event_rate must be in (0, 1), got {event_rate}")
    _check(1.0, delta, alpha, power)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    target = delta / z

    def excess(log_events: float) -> float:
        events = math.exp(log_events)
        nonevents = events * (1 - event_rate) / event_rate
        return paired_c_difference_se(c_b + delta, c_b, events, nonevents, correlation) - target

    low, high = math.log(2.0), math.log(1e9)
    if excess(low) <= 0:
        return 2
    if excess(high) > 0:
        raise ValueError("no event count reaches that power (the correlation leaves too much noise)")
    root = optimize.brentq(excess, low, high)
    events = math.ceil(math.exp(root) - 1e-9)
    return int(np.clip(events, 2, None))
