"""Survival metrics against lifelines, scikit-survival, torchsurv and hand-written references."""

import doctest
import importlib
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv
from torchsurv.loss.cox import baseline_survival_function

import hfrisk.training.metrics as metrics
from hfrisk.training.metrics import (
    BreslowBaseline,
    HarrellC,
    IntegratedBrier,
    TimeDependentAUC,
    UnoC,
    evaluation_times,
    summarize,
    survival_arrays,
)


def cohort(n, seed, censor_scale=2.0, beta=1.0):
    """Exponential survival with log-hazard beta * risk (higher = riskier) and exponential censoring."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-beta * risk))
    censor_time = rng.exponential(censor_scale, size=n)
    return risk, event_time <= censor_time, np.minimum(event_time, censor_time)


def brute_force_harrell(risk, event, time):
    """Pairs (i, j) with an event for i and T_i < T_j, or T_i == T_j with j censored; risk ties count 1/2."""
    concordant = comparable = 0.0
    for i in np.flatnonzero(event):
        later = (time > time[i]) | ((time == time[i]) & ~event)
        comparable += later.sum()
        concordant += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return concordant / comparable


# ------------------------------------------------------------------------------------------ Harrell
@settings(max_examples=80, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 4), min_size=n, max_size=n),  # few distinct values: ties in risk...
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.integers(1, 6), min_size=n, max_size=n),  # ...and in time, between events and censorings
)))
def test_harrell_equals_lifelines_exactly_including_ties(data):
    risk, event, time = (np.asarray(a) for a in data)
    risk, time = risk.astype(float), time.astype(float)
    try:
        expected = concordance_index(time, -risk, event)
    except ZeroDivisionError:  # no comparable pair
        with pytest.raises(ValueError, match="comparable"):
            HarrellC()(risk, event, time)
        return
    value = HarrellC()(risk, event, time)
    assert value == expected
    assert value == pytest.approx(brute_force_harrell(risk, event.astype(bool), time), abs=1e-12)
    assert value == pytest.approx(concordance_index_censored(event.astype(bool), time, risk)[0], abs=1e-12)


def test_harrell_sign_convention():
    rng = np.random.default_rng(0)
    time = rng.permutation(200) + 1.0
    event = rng.random(200) < 0.5
    event[0] = True
    assert HarrellC()(-time, event, time) == pytest.approx(1.0)  # shortest time = highest risk
    assert HarrellC()(time, event, time) == pytest.approx(0.0)
    risk, event, time = cohort(3000, seed=1)
    assert HarrellC()(rng.normal(size=3000), event, time) == pytest.approx(0.5, abs=0.03)
    assert HarrellC()(risk, event, time) > 0.65  # the simulated log-hazard itself


def test_metrics_accept_torch_tensors_and_keep_their_inputs():
    risk, event, time = cohort(100, seed=2)
    metric = HarrellC()
    value = metric(torch.tensor(risk, requires_grad=True).unsqueeze(1), torch.tensor(event), torch.tensor(time))
    assert value == concordance_index(time, -risk, event)
    np.testing.assert_array_equal(metric.estimate, risk)
    assert metric.value == value and metric.event.dtype == bool


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="same length"):
        survival_arrays([0.1, 0.2], [1, 0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="0/1"):
        survival_arrays([0.1, 0.2], [1, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        survival_arrays([0.1, np.nan], [1, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        survival_arrays([0.1, 0.2], [1, 0], [1.0, np.inf])


# ---------------------------------------------------------------------------------------- bootstrap
def test_confidence_interval_is_a_seeded_percentile_bootstrap():
    risk, event, time = cohort(150, seed=3)
    metric = HarrellC()
    value = metric(risk, event, time)
    lower, upper = metric.confidence_interval(alpha=0.1, n_boot=200, seed=5)

    rng = np.random.default_rng(5)
    resampled = []
    for _ in range(200):
        rows = rng.integers(0, 150, size=150)
        resampled.append(concordance_index(time[rows], -risk[rows], event[rows]))
    assert (lower, upper) == tuple(np.percentile(resampled, [5, 95]))
    assert lower < value < upper
    assert metric.confidence_interval(alpha=0.1, n_boot=200, seed=5) == (lower, upper)
    assert metric.confidence_interval(alpha=0.1, n_boot=200, seed=6) != (lower, upper)


def test_confidence_interval_guards():
    with pytest.raises(RuntimeError):
        HarrellC().confidence_interval()
    metric = HarrellC()
    metric(*cohort(50, seed=4))
    with pytest.raises(ValueError, match="bootstrap"):
        metric.confidence_interval(method="noether")
    with pytest.raises(ValueError, match="alpha"):
        metric.confidence_interval(alpha=1.5)


def test_bootstrap_skips_resamples_where_the_metric_is_undefined():
    # One event among 30: a third of resamples or so miss it and have no comparable pair.
    risk, event, time = np.arange(30.0)[::-1], np.zeros(30, dtype=bool), np.arange(1.0, 31.0)
    event[0] = True
    metric = HarrellC()
    assert metric(risk, event, time) == 1.0
    assert metric.confidence_interval(n_boot=100, seed=0) == (1.0, 1.0)
    assert 10 < metric.n_boot_failed < 60 and len(metric.bootstrap_values) == 100 - metric.n_boot_failed


# --------------------------------------------------------------------------------------------- Uno
def test_uno_matches_scikit_survival():
    train, test = cohort(300, seed=5), cohort(200, seed=6)
    for tau in (None, 1.0):
        expected = concordance_index_ipcw(Surv.from_arrays(train[1], train[2]), Surv.from_arrays(test[1], test[2]),
                                          test[0], tau=tau)[0]
        assert UnoC(train[1], train[2], tau=tau)(*test) == pytest.approx(expected, abs=1e-12)


def test_uno_without_censoring_is_harrell():
    rng = np.random.default_rng(7)
    risk = rng.normal(size=120)
    time = rng.exponential(np.exp(-risk))
    event = np.ones(120, dtype=bool)
    train_time = np.concatenate([time, [time.max() + 1]])  # follow-up beyond every test time
    uno = UnoC(np.ones(121, dtype=bool), train_time)
    assert uno(risk, event, time) == pytest.approx(HarrellC()(risk, event, time), abs=1e-12)


def test_uno_sign_convention_and_interval():
    train, test = cohort(400, seed=8), cohort(300, seed=9)
    uno = UnoC(train[1], train[2], tau=1.0)
    good, bad = uno(test[0], test[1], test[2]), uno(-test[0], test[1], test[2])
    assert good > 0.65 and bad == pytest.approx(1 - good, abs=1e-9)
    lower, upper = uno.confidence_interval(n_boot=100, seed=0)
    assert lower < bad < upper  # the metric keeps its LAST inputs


# --------------------------------------------------------------------------------------------- AUC
def test_time_dependent_auc_matches_scikit_survival():
    train, test = cohort(300, seed=10), cohort(200, seed=11)
    times = np.array([0.2, 0.5, 1.0])
    auc, mean_auc = cumulative_dynamic_auc(Surv.from_arrays(train[1], train[2]), Surv.from_arrays(test[1], test[2]),
                                           test[0], times)
    metric = TimeDependentAUC(train[1], train[2])
    assert metric(*test, times) == pytest.approx(mean_auc, abs=1e-12)
    np.testing.assert_allclose(metric.auc, auc, atol=1e-12)
    np.testing.assert_array_equal(metric.times, times)
    lower, upper = metric.confidence_interval(n_boot=50, seed=0)
    assert lower < metric.value < upper
    assert metric.value > 0.65  # higher risk = earlier event, no sign flip needed
    assert metric(-test[0], test[1], test[2], times) == pytest.approx(1 - mean_auc, abs=1e-9)


def uncensored_folds(n, seed):
    """An uncensored test fold, and an uncensored training fold whose follow-up ends earlier.

    Without censoring the IPCW weights are all 1, so the metrics reduce to their plain forms; the short
    training follow-up also checks that late test subjects are handled (scikit-survival alone refuses).
    """
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = rng.exponential(np.exp(-risk))
    train_time = np.sort(rng.exponential(1.0, size=n))[: int(0.9 * n)]
    assert train_time.max() < time.max()
    return (np.ones(len(train_time), dtype=bool), train_time), (risk, np.ones(n, dtype=bool), time)


def test_time_dependent_auc_without_censoring_is_the_plain_roc_auc():
    (train_event, train_time), (risk, event, time) = uncensored_folds(150, seed=12)
    metric = TimeDependentAUC(train_event, train_time)
    times = np.quantile(time[time < train_time.max()], [0.25, 0.5, 0.75])
    metric(risk, event, time, times)
    for t, auc in zip(times, metric.auc):
        assert auc == pytest.approx(roc_auc_score(time <= t, risk), abs=1e-12)


def test_time_dependent_auc_takes_a_score_per_time_and_refuses_unsorted_times():
    train, test = cohort(300, seed=13), cohort(200, seed=14)
    metric = TimeDependentAUC(train[1], train[2])
    times = [0.3, 0.8]
    one_column = metric(test[0], test[1], test[2], times)
    assert metric(np.column_stack([test[0], test[0]]), test[1], test[2], times) == pytest.approx(one_column)
    with pytest.raises(ValueError, match="increasing"):
        metric(test[0], test[1], test[2], [0.8, 0.3])
    with pytest.raises(ValueError, match="last training time"):
        metric(test[0], test[1], test[2], [0.3, train[2].max()])


# -------------------------------------------------------------------------------------------- Brier
def test_integrated_brier_matches_scikit_survival_and_accepts_a_function():
    train, test = cohort(300, seed=15), cohort(200, seed=16)
    baseline = BreslowBaseline().fit(*train)
    times = np.linspace(0.1, 1.5, 8)
    survival = baseline.survival(test[0], times)
    y_train, y_test = Surv.from_arrays(train[1], train[2]), Surv.from_arrays(test[1], test[2])

    metric = IntegratedBrier(train[1], train[2])
    assert metric(survival, test[1], test[2], times) == pytest.approx(
        integrated_brier_score(y_train, y_test, survival, times), abs=1e-12)
    np.testing.assert_allclose(metric.brier, brier_score(y_train, y_test, survival, times)[1], atol=1e-12)
    from_function = IntegratedBrier(train[1], train[2])(lambda t: baseline.survival(test[0], t), test[1], test[2],
                                                        times)
    assert from_function == metric.value


def test_integrated_brier_without_censoring_is_the_integrated_squared_error():
    (train_event, train_time), (risk, event, time) = uncensored_folds(100, seed=17)
    times = np.quantile(time[time < train_time.max()], [0.1, 0.3, 0.5, 0.7])
    survival = np.exp(-np.outer(np.exp(risk), times))  # the true curves
    metric = IntegratedBrier(train_event, train_time)
    value = metric(survival, event, time, times)

    per_time = ((time[:, None] > times[None, :]) - survival) ** 2
    brier = per_time.mean(axis=0)
    np.testing.assert_allclose(metric.brier, brier, atol=1e-12)
    integral = np.sum((brier[1:] + brier[:-1]) / 2 * np.diff(times)) / (times[-1] - times[0])
    assert value == pytest.approx(integral, abs=1e-12)
    # the true model beats a constant curve at the marginal survival
    constant = np.tile((time[:, None] > times[None, :]).mean(axis=0), (100, 1))
    assert value < IntegratedBrier(train_event, train_time)(constant, event, time, times)


def test_integrated_brier_refuses_risks_and_mismatched_columns():
    train, test = cohort(100, seed=18), cohort(100, seed=19)
    metric = IntegratedBrier(train[1], train[2])
    with pytest.raises(ValueError, match="probabilities"):
        metric(np.column_stack([test[0], test[0]]) + 5, test[1], test[2], [0.2, 0.5])
    with pytest.raises(ValueError, match="shape"):
        metric(np.full((100, 3), 0.5), test[1], test[2], [0.2, 0.5])


# ----------------------------------------------------------------------------------------- Breslow
def test_breslow_matches_scikit_survival_and_torchsurv():
    risk, event, time = cohort(200, seed=20)
    time = np.round(time, 1) + 0.1  # ties
    baseline = BreslowBaseline().fit(risk, event, time)
    reference = BreslowEstimator().fit(risk, event, time)
    # from the first time on: before it scikit-survival's step function extrapolates its first value
    grid = np.linspace(time.min(), time.max(), 50)
    np.testing.assert_allclose(baseline.cumulative_hazard(grid), reference.cum_baseline_hazard_(grid), rtol=1e-10)
    new_risk = np.array([-1.0, 0.0, 2.0])
    expected = np.array([fn(grid) for fn in reference.get_survival_function(new_risk)])
    np.testing.assert_allclose(baseline.survival(new_risk, grid), expected, rtol=1e-10)

    torch_reference = baseline_survival_function(torch.tensor(risk), torch.tensor(event), torch.tensor(time))
    np.testing.assert_allclose(
        baseline.survival([0.0], np.unique(time))[0], torch_reference["baseline_survival"].numpy(),
        rtol=1e-5,  # torchsurv works in float32
    )


def test_breslow_is_stable_for_large_scores_and_depends_only_on_relative_risk():
    risk, event, time = cohort(200, seed=21)
    grid = [0.2, 0.5, 1.0]
    base = BreslowBaseline().fit(risk, event, time).survival(risk[:5], grid)
    shifted = BreslowBaseline().fit(risk + 800.0, event, time).survival(risk[:5] + 800.0, grid)
    np.testing.assert_allclose(shifted, base, rtol=1e-10)
    assert np.all(np.diff(base, axis=1) <= 0)  # survival curves never rise
    with pytest.raises(RuntimeError):
        BreslowBaseline().survival([0.0], grid)


# ----------------------------------------------------------------------------------------- summary
def test_summarize_agrees_with_the_individual_metrics():
    train, test = cohort(400, seed=22), cohort(300, seed=23)
    out = summarize(*train, *test, n_boot=30)
    json.dumps(out)  # JSON-friendly for run logs

    times = np.array(out["times"])
    np.testing.assert_array_equal(times, evaluation_times(train[2], test[1], test[2]))
    y_train, y_test = Surv.from_arrays(train[1], train[2]), Surv.from_arrays(test[1], test[2])
    assert out["harrell_c"] == concordance_index(test[2], -test[0], test[1])
    assert out["uno_c"] == pytest.approx(concordance_index_ipcw(y_train, y_test, test[0], tau=times[-1])[0])
    # This test fold outlives the training fold, which scikit-survival refuses: censor it where training
    # follow-up ends (harmless before that time, see uncensored_folds) to get the reference values.
    assert test[2].max() > train[2].max()
    late = test[2] > train[2].max()
    y_test = Surv.from_arrays(test[1] & ~late, np.minimum(test[2], train[2].max()))
    assert out["mean_auc"] == pytest.approx(cumulative_dynamic_auc(y_train, y_test, test[0], times)[1])
    survival = BreslowEstimator().fit(train[0], train[1], train[2]).get_survival_function(test[0])
    matrix = np.array([fn(times) for fn in survival])
    assert out["ibs"] == pytest.approx(integrated_brier_score(y_train, y_test, matrix, times))
    for name in ("harrell_c", "uno_c", "mean_auc", "ibs"):
        lower, upper = out[f"{name}_ci"]
        assert lower <= out[name] <= upper
    assert out["n_test"] == 300 and out["n_test_events"] == int(test[1].sum())
    assert 0.65 < out["harrell_c"] < 0.85 and out["ibs"] < 0.25


def test_evaluation_times_stay_inside_follow_up():
    train, test = cohort(200, seed=24), cohort(200, seed=25)
    times = evaluation_times(train[2], test[1], test[2])
    assert np.all(np.diff(times) > 0)
    assert times.min() >= test[2].min() and times.max() < min(test[2].max(), train[2].max())
    with pytest.raises(ValueError, match="no test events"):
        evaluation_times(train[2], np.zeros(200), test[2])


@pytest.mark.parametrize("module", ["inputs", "base", "cindex", "auc", "brier_score", "breslow", "summary"])
def test_docstring_examples_run(module):
    assert doctest.testmod(importlib.import_module(f"{metrics.__name__}.{module}")).failed == 0
