"""The risk scale written at export: Breslow's baseline against lifelines' CoxPHFitter on the same
data, and the bundled model's card gaining a scale from a cohort of real PTB-XL records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from scipy.stats import percentileofscore

from hfrisk.gateway.risk_assessment import absolute_risk as gateway_absolute_risk
from hfrisk.model.contract.card import CARD_FILENAME, load_card
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort
from hfrisk.training.export import attach_risk_scale, risk_scale_from_cohort, top_resolution

REPO_ROOT = Path(__file__).resolve().parents[2]
PTBXL_ROOT = REPO_ROOT / "tests" / "data" / "ecg" / "ptbxl"


def _cohort(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    event_time = rng.weibull(1.3, size=n) * 4000 * np.exp(-0.8 * x / 1.3)
    censor = rng.uniform(3 * 365.25, 7 * 365.25, size=n)
    # Whole days, as cohorts record them: tied event times exercise Breslow's handling of ties.
    time = np.ceil(np.minimum(event_time, censor))
    return pd.DataFrame({"x": x, "T": time, "E": (event_time <= censor).astype(int)})


def test_top_resolution_counts_ties_at_the_top():
    # 20 subjects: the top 10 % is two, and a saturated head's three identical maxima show as one tie.
    scores = np.concatenate([np.linspace(-2.0, 0.5, 17), [1.476, 1.476, 1.476]])
    top = top_resolution(scores, share=0.10)
    assert top == {"share": 0.1, "n_top": 2, "distinct_in_top": 1, "largest_tie": 3, "largest_tie_share": 0.15}
    resolved = top_resolution(np.arange(20.0), share=0.25)
    assert resolved["distinct_in_top"] == resolved["n_top"] == 5 and resolved["largest_tie"] == 1


def test_breslow_baseline_matches_lifelines_coxphfitter():
    frame = _cohort()
    fitter = CoxPHFitter().fit(frame, "T", "E")
    beta = float(fitter.params_["x"])
    # The network's output is an uncentred linear predictor: here beta * x.
    log_risk = beta * frame["x"].to_numpy()
    horizons = [365.25, 3 * 365.25, 5 * 365.25]
    for horizon in horizons:
        scale = risk_scale_from_cohort(log_risk, frame["T"], frame["E"], horizon_days=horizon, cohort="sim")
        # lifelines' baseline_survival_ is that of a subject at the covariate mean.
        lifelines_s0 = float(fitter.baseline_survival_.loc[:horizon].iloc[-1, 0])
        ours = 1 - float(scale.absolute_risk_at_horizon(beta * frame["x"].mean()))
        assert ours == pytest.approx(lifelines_s0, rel=1e-6)
        # ... and every subject's predicted survival at the horizon (read off the step function:
        # lifelines interpolates linearly between event times when given times=).
        expected = fitter.predict_survival_function(frame[["x"]].iloc[:50]).loc[:horizon].iloc[-1].to_numpy()
        np.testing.assert_allclose(1 - scale.absolute_risk_at_horizon(log_risk[:50]), expected, rtol=1e-6)
    # The reference quantiles give each subject its mid-rank percentile in the cohort.
    probes = log_risk[5:60]
    expected = [percentileofscore(log_risk, s, kind="mean") for s in probes]
    np.testing.assert_allclose(scale.percentile(probes), expected, atol=0.5)


def test_no_baseline_beyond_the_follow_up():
    frame = _cohort(60)
    with pytest.raises(ValueError, match="horizon"):
        risk_scale_from_cohort(frame["x"], frame["T"], frame["E"], horizon_days=frame["T"].max() + 1, cohort="sim")


@pytest.fixture(scope="module")
def bundled_copy(tmp_path_factory) -> Path:
    """The shipped model folder (triton_models/hfrisk), copied: ONNX, config and card."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO_ROOT / "triton_models" / "hfrisk", repo / "hfrisk",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def test_attach_risk_scale_scores_a_real_cohort_and_rewrites_only_the_card(bundled_copy, tmp_path):
    cohort = synthetic_hf_cohort(PTBXL(PTBXL_ROOT, 100), event_rate=0.25, seed=1).cohort
    onnx_before = (bundled_copy / "hfrisk" / "1" / "model.onnx").read_bytes()
    horizon = 3 * 365.25
    result = attach_risk_scale(bundled_copy, cohort, horizon_days=horizon, plot=tmp_path / "calibration.png",
                               n_bins=3, cache_dir=tmp_path / "inputs")
    card = load_card(bundled_copy / "hfrisk" / "1")
    assert card == load_card(bundled_copy / "hfrisk") == result.card
    assert (bundled_copy / "hfrisk" / "1" / "model.onnx").read_bytes() == onnx_before
    scored = ~np.isnan(result.log_risk)
    assert scored.sum() == card.risk_scale.reference.n == card.training["calibration"]["n_scored"]
    # The scale is that of the scores the model gives these records.
    lifelines_frame = pd.DataFrame({"eta": result.log_risk[scored], "T": cohort.time[scored], "E": cohort.event[scored]})
    expected = risk_scale_from_cohort(lifelines_frame["eta"], lifelines_frame["T"], lifelines_frame["E"],
                                      horizon_days=horizon, cohort="same")
    assert card.risk_scale.absolute_risk.baseline_survival == expected.absolute_risk.baseline_survival
    assert card.risk_scale.reference.log_risk == expected.reference.log_risk
    assert card.risk_scale.absolute_risk.horizon_days == horizon
    # The FHIR RiskAssessment builder reads the same baseline from the card.
    for eta in (-1.0, 0.3, 1.476):
        p, h = gateway_absolute_risk(eta, card)
        assert h == horizon and p == pytest.approx(float(card.risk_scale.absolute_risk_at_horizon(eta)), rel=1e-9)
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    assert len(result.calibration) == 3
    assert card.training["top_resolution"] == top_resolution(result.log_risk[scored])
    assert (bundled_copy / "hfrisk" / CARD_FILENAME).is_file()
