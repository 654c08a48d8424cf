"""Calibration tables and risk-group KM curves against scikit-survival's KM and log-rank test."""

import doctest

import numpy as np
import pytest
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

import hfrisk.training.metrics.calibration as calibration
from hfrisk.training.metrics.calibration import (
    calibration_summary,
    calibration_table,
    km_by_risk_group,
    plot_calibration,
    plot_km_by_risk_group,
)

HORIZON = 3.0


def exponential_cohort(n, seed):
    """Hazard 0.1 * exp(risk): the true P(T <= t) is known, so a perfectly calibrated prediction exists."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_time = rng.exponential(1.0 / (0.1 * np.exp(risk)))
    censor_time = rng.uniform(1.0, 10.0, size=n)
    event, time = event_time <= censor_time, np.minimum(event_time, censor_time)
    true_probability = 1.0 - np.exp(-0.1 * np.exp(risk) * HORIZON)
    return risk, event, time, true_probability


def km_event_rate(event, time, t):
    times, survival = kaplan_meier_estimator(event, time)
    return 1.0 - survival[np.searchsorted(times, t, side="right") - 1]


def test_true_probabilities_are_calibrated_and_halved_ones_are_not():
    _, event, time, probability = exponential_cohort(4000, seed=0)
    table = calibration_table(probability, event, time, t=HORIZON)
    assert len(table) == 10 and table["n"].sum() == 4000 and set(table["n"]) == {400}
    assert table.attrs["t"] == HORIZON
    assert table["mean_predicted"].is_monotonic_increasing
    summary = calibration_summary(table)
    assert summary["slope"] == pytest.approx(1.0, abs=0.15)
    assert summary["intercept"] == pytest.approx(0.0, abs=0.03)
    assert abs(summary["calibration_in_the_large"]) < 0.02 and summary["mean_absolute_error"] < 0.03

    halved = calibration_summary(calibration_table(probability / 2, event, time, t=HORIZON))
    assert halved["slope"] == pytest.approx(2.0, abs=0.3)
    assert halved["calibration_in_the_large"] > 0.05  # risk under-predicted


def test_observed_rates_are_kaplan_meier_per_bin():
    _, event, time, probability = exponential_cohort(600, seed=1)
    table = calibration_table(probability, event, time, t=HORIZON, n_bins=5)
    members = np.array_split(np.argsort(probability, kind="stable"), 5)
    for row, rows in zip(table.itertuples(), members):
        assert row.observed == pytest.approx(km_event_rate(event[rows], time[rows], HORIZON), abs=1e-12)
        assert row.observed_lower <= row.observed <= row.observed_upper
        assert row.n_events_by_t == int(np.sum(event[rows] & (time[rows] <= HORIZON)))
        assert row.mean_predicted == pytest.approx(probability[rows].mean())


def test_calibration_table_rejects_risks_and_too_many_bins():
    _, event, time, probability = exponential_cohort(50, seed=2)
    with pytest.raises(ValueError, match="probabilities"):
        calibration_table(np.log(probability), event, time, t=HORIZON)
    with pytest.raises(ValueError, match="n_bins"):
        calibration_table(probability, event, time, t=HORIZON, n_bins=51)


def test_risk_groups_match_the_paper_split_and_scikit_survival():
    risk, event, time, _ = exponential_cohort(800, seed=3)
    groups = km_by_risk_group(risk, event, time, percentile=96)
    assert (groups.n_high, groups.n_low) == (32, 768)  # the paper's UKB-MI split: 32 vs 768
    assert groups.cutoff == np.percentile(risk, 96) and np.array_equal(groups.high, risk >= groups.cutoff)

    statistic, p_value = compare_survival(Surv.from_arrays(event, time), groups.high)
    assert groups.logrank_statistic == pytest.approx(statistic, rel=1e-8)
    assert groups.logrank_p == pytest.approx(p_value, rel=1e-6)
    assert groups.logrank_p < 1e-6  # the simulated risk is strongly prognostic

    times, survival = kaplan_meier_estimator(event[groups.high], time[groups.high])
    np.testing.assert_allclose(groups.km_high.survival_function_at_times(times).to_numpy(), survival, atol=1e-12)
    high_at_5, low_at_5 = (km.survival_function_at_times(5.0).iloc[0] for km in (groups.km_high, groups.km_low))
    assert high_at_5 < low_at_5


def test_risk_groups_refuse_an_empty_group():
    with pytest.raises(ValueError, match="empty"):
        km_by_risk_group(np.ones(20), np.ones(20), np.arange(1.0, 21.0), percentile=96)


def test_plots_are_written(tmp_path):
    risk, event, time, probability = exponential_cohort(500, seed=4)
    calibration_png = plot_calibration(calibration_table(probability, event, time, t=HORIZON), tmp_path / "cal.png")
    km_png = plot_km_by_risk_group(km_by_risk_group(risk, event, time, percentile=90), tmp_path / "plots" / "km.png")
    for path in (calibration_png, km_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_docstring_examples_run():
    assert doctest.testmod(calibration).failed == 0
