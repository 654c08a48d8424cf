"""Frozen-feature floors (ridge Cox on principal components) and paired differences between methods."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hfrisk.training.data.cohort import Cohort
from hfrisk.training.evaluation.comparison import paired_difference
from hfrisk.training.evaluation.floors import principal_components_method
from hfrisk.training.evaluation.protocol import cross_validate, paper_splits


def _cohort_with_features(n: int = 240, n_features: int = 300, seed: int = 0):
    """Features: 3 latent factors spread over many noisy columns; the hazard follows the first factor."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.5])
    loadings = rng.normal(size=(3, n_features))
    features = latent @ loadings + rng.normal(size=(n, n_features))
    eta = 0.6 * latent[:, 0]
    time = rng.exponential(np.exp(-eta)) * 365
    censor = rng.uniform(100, 600, size=n)
    event = (time <= censor).astype(int)
    records = [f"r{i:04d}" for i in range(n)]
    table = pd.DataFrame({"record": records, "time": np.minimum(time, censor), "event": event})
    return Cohort(table), pd.DataFrame(features, index=records)


def test_ridge_cox_on_components_finds_the_risk_factor(tmp_path):
    cohort, features = _cohort_with_features()
    assert 40 < cohort.n_events < 200

    def floor(frame, name):
        return principal_components_method(frame, name, n_components=(4, 8), penalizers=(0.1, 10.0))

    result = cross_validate(cohort, floor(features, "pcs"), tmp_path / "pcs", seeds=(42, 2021), progress=False)
    shuffled = features.set_axis(np.random.default_rng(1).permutation(features.index))
    noise = cross_validate(cohort, floor(shuffled, "shuffled"), tmp_path / "shuffled", seeds=(42, 2021), progress=False)
    assert result.runs["harrell_c"].mean() > 0.7
    assert abs(noise.runs["harrell_c"].mean() - 0.5) < 0.08
    assert all(info["n_components"] in (4, 8) for info in result.info)


def test_the_floor_never_looks_at_the_test_fold(tmp_path):
    cohort, features = _cohort_with_features(seed=3)
    split = paper_splits(cohort, seeds=(42,))[0]
    method = principal_components_method(features, "pcs", n_components=(4, 8))
    first = method(split, tmp_path)
    altered = features.copy()
    test_records = split.test.table["record"].tolist()
    altered.loc[test_records] = np.random.default_rng(9).normal(size=(len(test_records), features.shape[1])) * 50
    second = principal_components_method(altered, "pcs", n_components=(4, 8))(split, tmp_path)
    # Same training scores: the components and the Cox fit came from the training fold alone.
    np.testing.assert_allclose(first.train_risk, second.train_risk)
    assert not np.allclose(first.test_risk, second.test_risk)


def test_features_as_an_array_need_their_records():
    cohort, features = _cohort_with_features(n=60, n_features=20)
    with pytest.raises(ValueError, match="records"):
        principal_components_method(features.to_numpy(), "pcs")
    method = principal_components_method(features.to_numpy().reshape(60, 4, 5), "pcs", records=features.index)
    split = paper_splits(cohort, seeds=(42,))[0]
    assert len(method(split, None).test_risk) == len(split.test)


def _runs(values: np.ndarray, fingerprint: str = "x") -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"seed": np.repeat(np.arange(n // 2), 2), "fold": np.tile([0, 1], n // 2),
                         "harrell_c": values, "n_test": 100, "n_train": 100,
                         "test_fingerprint": [f"{fingerprint}{i}" for i in range(n)]})


def test_paired_difference_matches_scipys_paired_t_test():
    rng = np.random.default_rng(4)
    a, b = 0.7 + rng.normal(0, 0.03, 10), 0.68 + rng.normal(0, 0.03, 10)
    out = paired_difference(_runs(a), _runs(b))
    reference = stats.ttest_rel(a, b)
    low, high = reference.confidence_interval(0.95)
    assert out["n"] == 10 and out["mean"] == pytest.approx(np.mean(a - b))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((low, high))
    assert out["p_value"] == pytest.approx(reference.pvalue)
    assert out["wins"] == int((a > b).sum())
    # 2-fold CV (n_test = n_train): the corrected half-width is sqrt(1 + n) times the naive one.
    ratio = (out["corrected_ci_high"] - out["mean"]) / (out["ci_high"] - out["mean"])
    assert ratio == pytest.approx(math.sqrt(1 + 10))


def test_paired_difference_refuses_different_folds():
    with pytest.raises(ValueError, match="different records"):
        paired_difference(_runs(np.full(4, 0.7)), _runs(np.full(4, 0.6), fingerprint="y"))


def test_evaluate_command_runs_the_floors_beside_the_oracle_on_patient_folds(tmp_path):
    import typer
    from typer.testing import CliRunner

    from hfrisk.training.commands import evaluate_command
    from hfrisk.training.data.ptbxl import PTBXL
    from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort, write_synthetic_cohort
    from tests.training.conftest import PTBXL_ROOT

    cohort_file = write_synthetic_cohort(synthetic_hf_cohort(PTBXL(PTBXL_ROOT, 100), event_rate=0.25, seed=0),
                                         tmp_path / "cohort")
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)
    app.command("noop")(lambda: None)  # two commands, so "evaluate" stays a sub-command
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(cohort_file), "--method", "floors", "--seed", "42",
                                      "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "paired differences" in result.output
    fingerprints = []
    for name in ("ridge_cox_beat_pcs", "ridge_cox_random_embedding_pcs", "oracle_true_hazard"):
        runs = pd.read_csv(out / name / "runs.csv")
        assert len(runs) == 2 and runs["harrell_c"].between(0, 1).all()
        fingerprints.append(runs["test_fingerprint"].tolist())
    assert fingerprints[0] == fingerprints[1] == fingerprints[2]  # the same folds for every method
    summary = pd.read_json(out / "oracle_true_hazard" / "summary.json", typ="series")
    assert summary["summary"]["folds"].startswith("patient (24 records, 21 patients)")
