"""The penalised Cox baseline on ECG measurements: tuning, train-only preprocessing, the protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.evaluation.cox_baseline import CoxBaseline, CoxBaselineConfig, Standardiser, cox_method
from hfrisk.training.data.measurements import MEASUREMENTS
from hfrisk.training.metrics import HarrellC
from hfrisk.training.evaluation.protocol import cross_validate


def _measurements(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Measurement-like noise, with some NaNs (PR is not measurable in atrial fibrillation)."""
    frame = pd.DataFrame(rng.normal(size=(n, len(MEASUREMENTS))), columns=list(MEASUREMENTS))
    frame["qrs_ms"] = rng.normal(100, 15, n)
    frame.loc[rng.random(n) < 0.1, "pr_ms"] = np.nan
    return frame


def _outcomes(frame: pd.DataFrame, rng: np.random.Generator, beta_per_10ms: float = 0.8):
    """Exponential event times driven by QRS duration only, ~20 % events."""
    eta = beta_per_10ms * (frame["qrs_ms"].to_numpy() - 100) / 10
    event_time = rng.exponential(np.exp(-eta)) * 1000
    censor = rng.uniform(0, 400, len(frame))
    return (event_time <= censor).astype(int), np.minimum(event_time, censor), eta


def test_a_cohort_driven_by_one_measurement_is_ranked_well():
    rng = np.random.default_rng(0)
    frames = [_measurements(n, rng) for n in (240, 60, 300)]
    (e_tr, t_tr, _), (e_va, t_va, _), (e_te, t_te, eta_te) = (_outcomes(f, rng) for f in frames)
    model = CoxBaseline().fit(frames[0], e_tr, t_tr, frames[1], e_va, t_va)
    c = HarrellC()(model.log_risk(frames[2]), e_te, t_te)
    oracle = HarrellC()(eta_te, e_te, t_te)
    assert c > 0.75 and c > oracle - 0.05
    # The driving feature dominates and has the right sign (longer QRS = riskier).
    coefficients = model.coefficients
    assert coefficients.abs().idxmax() == "qrs_ms" and coefficients["qrs_ms"] > 0
    assert model.penalizer in CoxBaselineConfig().penalizers
    assert set(model.validation_c) == set(CoxBaselineConfig().penalizers)


def test_noise_features_get_shrunk_by_a_large_penalty():
    rng = np.random.default_rng(1)
    train, val = _measurements(200, rng), _measurements(50, rng)
    (e_tr, t_tr, _), (e_va, t_va, _) = _outcomes(train, rng, 0.0), _outcomes(val, rng, 0.0)
    model = CoxBaseline(CoxBaselineConfig(penalizers=(1e3,))).fit(train, e_tr, t_tr, val, e_va, t_va)
    assert model.coefficients.abs().max() < 0.05


def test_imputation_and_scaling_come_from_the_training_part_only():
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "b": [5.0, 5.0, 5.0, 5.0], "c": [np.nan] * 4})
    other = pd.DataFrame({"a": [np.nan, 100.0], "b": [1.0, 2.0], "c": [3.0, 4.0]})
    scaler = Standardiser().fit(train)
    assert scaler.columns == ["a"]  # constant and empty columns are dropped
    out = scaler.transform(other)
    filled = np.array([1.0, 2.0, 2.0, 4.0])  # the training median, 2, fills the gap
    assert out.loc[0, "a"] == pytest.approx((2.0 - filled.mean()) / filled.std())
    assert out.loc[1, "a"] == pytest.approx((100.0 - filled.mean()) / filled.std())


def test_cox_method_runs_the_paper_protocol(tmp_path):
    rng = np.random.default_rng(2)
    frame = _measurements(160, rng)
    event, time, _ = _outcomes(frame, rng)
    records = [f"r{i:03d}" for i in range(len(frame))]
    cohort = Cohort(pd.DataFrame({"record": records, "time": time, "event": event}))
    config = CoxBaselineConfig(penalizers=(0.01, 1.0, 100.0))  # a short grid keeps the test quick
    result = cross_validate(cohort, cox_method(frame.set_axis(records), config), tmp_path, progress=False)
    assert len(result.runs) == 10
    assert result.summary["metrics"]["harrell_c"]["mean"] > 0.7
    assert result.runs["val_harrell_c"].notna().all()
    assert all("penalizer" in info for info in result.info)
