"""The card's risk scale: percentiles agree with scipy's mid-rank percentile of the reference
sample, thresholds invert the scale exactly, and the card keeps one baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import percentileofscore

from hfrisk.model.contract.card import ModelCard, default_card, load_card
from hfrisk.model.contract.risk_scale import AbsoluteRisk, ReferenceDistribution, RiskScale

FINE_GRID = np.linspace(0.0, 100.0, 100_001)


def reference_of(sample: np.ndarray, grid=FINE_GRID) -> ReferenceDistribution:
    return ReferenceDistribution(cohort="test", n=len(sample), percentiles=tuple(grid),
                                 log_risk=tuple(np.percentile(sample, grid, method="hazen")))


def test_percentile_is_scipys_mid_rank_on_the_reference_values_and_ties():
    rng = np.random.default_rng(3)
    # A saturated score: 10 % of the cohort share one top value, as the bundled model does.
    sample = np.r_[rng.uniform(-3.0, 1.4, size=180), np.full(20, 1.476)]
    reference = reference_of(sample)
    probes = np.r_[sample[:40], 1.476, sample.min(), np.median(sample)]
    expected = [percentileofscore(sample, s, kind="mean") for s in probes]
    # Exact between the extremes; the smallest and largest values are within 50/n points (the
    # quantile function is flat below the first and above the last plotting position).
    inner = (probes > sample.min()) & (probes < sample.max())
    np.testing.assert_allclose(reference.percentile(probes)[inner], np.asarray(expected)[inner], atol=1e-2)
    np.testing.assert_allclose(reference.percentile(probes), expected, atol=50 / len(sample) + 1e-2)
    # The tie gets the middle of the band it spans: 90 % of the cohort below, 10 % on it.
    assert float(reference.percentile(1.476)) == pytest.approx(95.0, abs=50 / len(sample))
    assert float(reference.percentile(1.4761)) == 100.0 and float(reference.percentile(-50)) == 0.0
    assert np.isnan(reference.percentile(np.nan))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-4, 4, allow_nan=False).map(lambda v: round(v, 2)), min_size=3, max_size=60),
       st.floats(0.0, 100.0))
def test_the_threshold_of_a_percentile_is_exactly_where_the_percentile_reaches_it(values, wanted):
    sample = np.asarray(values)
    reference = reference_of(sample, np.linspace(0.0, 100.0, 201))
    cut = reference.log_risk_at(wanted)
    assert float(reference.percentile(cut)) >= wanted - 1e-9
    below = np.nextafter(cut, -np.inf) - 1e-9
    assert float(reference.percentile(below)) < wanted or below < reference.log_risk[0]
    # percentile() never decreases.
    xs = np.sort(np.r_[np.linspace(sample.min() - 1, sample.max() + 1, 500), sample])
    assert np.all(np.diff(reference.percentile(xs)) >= 0)


def test_absolute_risk_and_its_inverse():
    spec = AbsoluteRisk(cohort="c", n=10, n_events=2, horizon_days=1826.25, baseline_survival=0.96)
    assert spec.horizon_years == 5.0
    eta = np.array([-3.0, 0.0, 1.476, 4.0])
    np.testing.assert_allclose(spec.absolute_risk(eta), 1 - 0.96 ** np.exp(eta), rtol=1e-12)
    for risk in (1e-6, 0.05, 0.2, 0.99):
        assert float(spec.absolute_risk(spec.log_risk_at(risk))) == pytest.approx(risk, rel=1e-9)
    with pytest.raises(ValueError):
        spec.log_risk_at(1.0)


def _scale(s0: float = 0.95) -> RiskScale:
    return RiskScale(
        reference=ReferenceDistribution(cohort="c", n=3, percentiles=(0.0, 50.0, 100.0), log_risk=(-1.0, 0.0, 2.0)),
        absolute_risk=AbsoluteRisk(cohort="c", n=3, n_events=1, horizon_days=1000.0, baseline_survival=s0),
    )


def test_flag_rules_become_log_risk_thresholds():
    scale = _scale()
    assert scale.log_risk_threshold("log_risk", 0.7) == 0.7
    assert float(scale.percentile(scale.log_risk_threshold("percentile", 75.0))) == pytest.approx(75.0)
    assert scale.log_risk_threshold("percentile", 75.0) == pytest.approx(1.0)
    assert float(scale.absolute_risk_at_horizon(scale.log_risk_threshold("absolute_risk", 0.1))) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        scale.log_risk_threshold("decile", 9)


def test_a_card_round_trips_its_scale_and_refuses_two_different_baselines(tmp_path):
    card = default_card().model_copy(update={"risk_scale": _scale(),
                                             "training": {"absolute_risk": {"horizon_days": 1000.0,
                                                                            "baseline_survival": 0.95}}})
    card = ModelCard.model_validate(card.model_dump())
    assert load_card(card.save(tmp_path)) == card
    with pytest.raises(ValueError, match="differs"):
        ModelCard.model_validate({**card.model_dump(), "training": {"absolute_risk": {"horizon_days": 1000.0,
                                                                                      "baseline_survival": 0.9}}})
    # A card without a scale (every card before it) still loads: relative risk only.
    assert default_card().risk_scale is None


@pytest.mark.parametrize("bad", [
    {"percentiles": (0.0, 100.0), "log_risk": (1.0, 0.0)},
    {"percentiles": (0.0, 90.0), "log_risk": (0.0, 1.0)},
    {"percentiles": (0.0, 100.0), "log_risk": (0.0, math.inf)},
])
def test_a_reference_that_is_not_a_distribution_is_refused(bad):
    with pytest.raises(ValueError):
        ReferenceDistribution(cohort="c", n=2, **bad)
