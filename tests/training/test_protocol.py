"""The evaluation protocol: 5 seeds × 2 stratified folds, inner 80/20 split, aggregation, outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hfrisk.training.data.cohort import PAPER_CV_SEEDS, Cohort
from hfrisk.training.evaluation.protocol import (
    RUNS_FILENAME,
    SUMMARY_FILENAME,
    MethodResult,
    cross_validate,
    evaluate_fixed_split,
    paper_splits,
)


def _cohort(n: int = 60, n_events: int = 12, seed: int = 0) -> Cohort:
    rng = np.random.default_rng(seed)
    marker = rng.normal(size=n)
    time = rng.exponential(np.exp(-1.5 * marker)) * 100 + 1
    event = np.zeros(n, dtype=int)
    event[np.argsort(time)[:n_events]] = 1  # the earliest times are the events
    return Cohort(pd.DataFrame({"record": [f"r{i:03d}" for i in range(n)], "time": time, "event": event,
                                "marker": marker}))


def _marker_method(split, run_dir):
    """An 'oracle' method: log-risk = the marker that drives the hazard (higher = riskier)."""
    assert run_dir.is_dir()
    # The method sees the inner split and never the test outcomes.
    assert len(split.fit_index) + len(split.val_index) == len(split.train)
    return MethodResult(split.train.table["marker"].to_numpy(), split.test.table["marker"].to_numpy(),
                        {"val_harrell_c": 0.5})


def test_paper_splits_are_ten_distinct_stratified_runs():
    cohort = _cohort()
    splits = paper_splits(cohort)
    assert [(s.seed, s.fold) for s in splits] == [(seed, fold) for seed in PAPER_CV_SEEDS for fold in (0, 1)]
    assert len({s.test_fingerprint() for s in splits}) == 10
    for s in splits:
        # The two folds of a seed partition the cohort.
        assert len(np.intersect1d(s.train_index, s.test_index)) == 0
        assert len(s.train_index) + len(s.test_index) == len(cohort)
        # Stratified: each fold, and each validation part, holds events in about the cohort's share.
        assert s.test.n_events == 6 and s.train.n_events == 6
        val_events = int(s.train.event[s.val_index].sum())
        assert val_events >= 1 and len(s.val_index) == pytest.approx(0.2 * len(s.train), abs=1)
        assert len(np.intersect1d(s.fit_index, s.val_index)) == 0
    for seed in PAPER_CV_SEEDS:
        pair = [s for s in splits if s.seed == seed]
        np.testing.assert_array_equal(np.sort(np.concatenate([p.test_index for p in pair])), np.arange(len(cohort)))


def test_cross_validation_reports_every_run_and_their_aggregate(tmp_path):
    result = cross_validate(_cohort(), _marker_method, tmp_path, method_name="marker", progress=False)
    runs = result.runs
    assert len(runs) == 10 and runs["test_fingerprint"].nunique() == 10
    assert (runs["n_test_events"] > 0).all() and (runs["n_val_events"] > 0).all()
    assert (runs["harrell_c"] > 0.6).all()  # the marker drives the hazard
    summary = result.summary["metrics"]["harrell_c"]
    assert summary["mean"] == pytest.approx(runs["harrell_c"].mean())
    assert summary["sd"] == pytest.approx(runs["harrell_c"].std(ddof=1))
    assert summary["ci_low"] < summary["mean"] < summary["ci_high"]
    paper_std = runs.groupby("seed")["harrell_c"].std(ddof=0).mean()
    assert summary["paper_std"] == pytest.approx(paper_std)
    # Written out: the tidy runs table, the JSON summary and every run's predictions.
    assert pd.read_csv(tmp_path / RUNS_FILENAME).shape[0] == 10
    saved = json.loads((tmp_path / SUMMARY_FILENAME).read_text())
    assert saved["method"] == "marker" and len(saved["runs"]) == 10
    predictions = pd.read_csv(tmp_path / "seed42-fold0" / "predictions.csv")
    assert set(predictions["part"]) == {"train", "val", "test"}
    assert "±" in result.describe()


def test_a_reversed_score_is_caught_by_the_sign_convention(tmp_path):
    def reversed_method(split, run_dir):
        return MethodResult(-split.train.table["marker"].to_numpy(), -split.test.table["marker"].to_numpy(), {})

    result = cross_validate(_cohort(), reversed_method, tmp_path, seeds=(42,), progress=False)
    assert len(result.runs) == 2 and (result.runs["harrell_c"] < 0.4).all()


def test_fixed_split_mode_is_one_run(tmp_path):
    cohort = _cohort(80, 16, seed=1)
    train, test = cohort.subset(np.arange(50)), cohort.subset(np.arange(50, 80))
    result = evaluate_fixed_split(train, test, _marker_method, tmp_path, progress=False)
    assert len(result.runs) == 1 and result.runs.loc[0, "n_test"] == 30
    assert np.isfinite(result.runs.loc[0, "harrell_c"])


def test_wrong_number_of_risks_is_an_error(tmp_path):
    def broken(split, run_dir):
        return MethodResult(np.zeros(3), np.zeros(3), {})

    with pytest.raises(ValueError, match="returned 3 train"):
        cross_validate(_cohort(), broken, tmp_path, seeds=(42,), progress=False)
