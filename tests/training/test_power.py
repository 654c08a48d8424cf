"""Power of paired C-index comparisons: against G*Power's tables, closed forms and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from hfrisk.training.evaluation.power import (
    events_needed,
    harrell_c_se,
    paired_c_difference_se,
    paired_t_power,
    runs_needed,
    runs_needed_corrected,
    runs_needed_normal,
    sd_from_t_interval,
)


@pytest.mark.parametrize(
    ("effect_size", "n", "actual_power"),
    # G*Power 3.1, t test "means: difference from constant (one sample / matched pairs)", two tails,
    # alpha 0.05, power 0.80: total sample size and actual power (Cohen's d = delta / sd_diff).
    [(0.2, 199, 0.8017), (0.5, 34, 0.8078), (0.8, 15, 0.8213), (1.0, 10, 0.8031)],
)
def test_runs_needed_matches_gpower(effect_size, n, actual_power):
    sd = 0.03 / effect_size
    assert runs_needed(sd, delta=0.03) == n
    assert paired_t_power(n, sd, 0.03) == pytest.approx(actual_power, abs=5e-4)
    assert paired_t_power(n - 1, sd, 0.03) < 0.8


def test_power_of_a_large_effect_is_one_not_nan():
    assert paired_t_power(10, 0.0107, 0.03) == pytest.approx(1.0, abs=1e-6)


def test_normal_closed_form_and_its_corrected_variant():
    # ((z_0.975 + z_0.8) * sd / delta)^2 with sd = delta: 2.8016^2.
    assert runs_needed_normal(0.03, 0.03) == pytest.approx((1.959964 + 0.841621) ** 2, rel=1e-6)
    assert runs_needed(0.03, 0.03) >= math.ceil(runs_needed_normal(0.03, 0.03))  # t is wider than z
    assert runs_needed_corrected(0.05, 0.0) == pytest.approx(runs_needed_normal(0.05, 0.03))
    # 2-fold CV: the variance of the mean never falls below sd^2, so 0.03 is out of reach at sd 0.05...
    assert runs_needed_corrected(0.05, test_train_ratio=1.0) == math.inf
    # ...and at sd 0.01 it is reached: sd^2 (1/n + 1) <= (delta / z)^2 solved for n.
    allowed = (0.03 / 2.801585) ** 2 / 0.01**2
    assert runs_needed_corrected(0.01, 1.0) == pytest.approx(1 / (allowed - 1), rel=1e-4)


def test_power_by_simulation_of_the_paired_t_test():
    rng = np.random.default_rng(0)
    sd, delta = 0.08, 0.03
    n = runs_needed(sd, delta)
    diffs = rng.normal(delta, sd, size=(20_000, n))
    rejected = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(paired_t_power(n, sd, delta), abs=0.01)
    assert rejected.mean() >= 0.79


def test_sd_from_t_interval_inverts_the_interval():
    sample = np.random.default_rng(1).normal(0.0, 0.1, size=10)
    low, high = stats.t.interval(0.95, 9, loc=sample.mean(), scale=stats.sem(sample))
    assert sd_from_t_interval(low, high, 10) == pytest.approx(sample.std(ddof=1))


@pytest.mark.parametrize(("c", "n_events", "n_nonevents"), [(0.8, 50, 200), (0.7, 20, 380), (0.9, 100, 100)])
def test_hanley_mcneil_se_is_exact_for_exponential_scores(c, n_events, n_nonevents):
    # Scores Exp(rate 1) for non-events and Exp(rate (1 - c) / c) for events give P(event > non-event) = c,
    # the case in which Hanley and McNeil's Q1, Q2 are exact: their SE equals the simulated SD of the AUC.
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(n_events), np.zeros(n_nonevents)]
    aucs = []
    for _ in range(3000):
        scores = np.r_[rng.exponential(c / (1 - c), n_events), rng.exponential(1.0, n_nonevents)]
        aucs.append(roc_auc_score(labels, scores))
    assert np.mean(aucs) == pytest.approx(c, abs=0.003)
    assert harrell_c_se(c, n_events, n_nonevents) == pytest.approx(np.std(aucs, ddof=1), rel=0.05)


def test_paired_se_and_events_needed_agree():
    se = harrell_c_se(0.75, 40, 760)
    assert paired_c_difference_se(0.75, 0.75, 40, 760, correlation=0.0) == pytest.approx(math.sqrt(2) * se)
    assert paired_c_difference_se(0.75, 0.75, 40, 760, correlation=1.0) == pytest.approx(0.0, abs=1e-12)
    target = 0.03 / 2.801585
    for r in (0.0, 0.5, 0.9):
        events = events_needed(0.75, 0.03, correlation=r, event_rate=0.05)
        def se_at(e):
            return paired_c_difference_se(0.78, 0.75, e, e * 19, r)
        assert se_at(events) <= target * (1 + 1e-6) < se_at(events - 1)
    # More correlated methods need fewer events to be told apart.
    assert events_needed(0.75, correlation=0.9) < events_needed(0.75, correlation=0.5) < events_needed(0.75, correlation=0.0)
