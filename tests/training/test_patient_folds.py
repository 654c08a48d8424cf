"""Folds grouped by patient: no patient's ECGs on both sides of a split, events still balanced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from hfrisk.training.data.cohort import PAPER_CV_SEEDS, Cohort
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort
from hfrisk.training.evaluation.protocol import MethodResult, cross_validate, paper_splits

from tests.training.conftest import PTBXL_ROOT


def _patients_cohort(n_patients: int = 150, seed: int = 0) -> Cohort:
    """1-5 ECGs per patient; a patient's risk is shared by all their ECGs, as in real data."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 6, size=n_patients)
    patient = np.repeat(np.arange(n_patients), per_patient)
    risk = rng.normal(size=n_patients)[patient]
    time = rng.exponential(np.exp(-risk)) * 100 + 1
    event = (rng.uniform(size=len(patient)) < 1 / (1 + np.exp(-(risk - 1.5)))).astype(int)
    return Cohort(pd.DataFrame({"record": [f"r{i:04d}" for i in range(len(patient))], "patient_id": patient,
                                "time": time, "event": event}))


def _patients_of(cohort: Cohort, index: np.ndarray) -> set:
    return set(cohort.table["patient_id"].to_numpy()[index].tolist())


@pytest.mark.parametrize("n_folds", [2, 5])
def test_no_patient_is_in_two_folds_and_events_stay_balanced(n_folds):
    cohort = _patients_cohort()
    shared = cohort.table["patient_id"].duplicated(keep=False).sum()
    assert shared > len(cohort) / 2  # most records share their patient: a record-wise split would cut them
    for seed in PAPER_CV_SEEDS:
        folds = cohort.stratified_folds(n_folds, seed)
        tests = np.concatenate([test for _, test in folds])
        np.testing.assert_array_equal(np.sort(tests), np.arange(len(cohort)))
        test_patients = [_patients_of(cohort, test) for _, test in folds]
        for i in range(n_folds):
            for j in range(i + 1, n_folds):
                assert not test_patients[i] & test_patients[j]
        for train, test in folds:
            assert not _patients_of(cohort, train) & _patients_of(cohort, test)
            # Balanced: each fold's event share within 2 percentage points of the cohort's.
            assert cohort.event[test].mean() == pytest.approx(cohort.event.mean(), abs=0.02)
            assert len(test) == pytest.approx(len(cohort) / n_folds, rel=0.1)
    first = {tuple(test) for _, test in cohort.stratified_folds(n_folds, PAPER_CV_SEEDS[0])}
    assert not first & {tuple(test) for _, test in cohort.stratified_folds(n_folds, PAPER_CV_SEEDS[1])}


def test_the_record_wise_split_would_cut_patients_and_is_the_papers():
    cohort = _patients_cohort()
    folds = cohort.stratified_folds(2, 42, by="record")
    train, test = folds[0]
    assert _patients_of(cohort, train) & _patients_of(cohort, test)  # what grouping prevents
    reference = StratifiedKFold(2, shuffle=True, random_state=42).split(np.zeros(len(cohort)), cohort.event)
    for (_, ours), (_, theirs) in zip(folds, reference):
        np.testing.assert_array_equal(ours, theirs)


def test_without_shared_patients_the_folds_are_the_papers_as_before():
    cohort = _patients_cohort()
    unique = Cohort(cohort.table.assign(patient_id=np.arange(len(cohort))))
    no_column = Cohort(cohort.table.drop(columns="patient_id"))
    for other in (unique, no_column):
        for (_, a), (_, b) in zip(other.stratified_folds(2, 2021), cohort.stratified_folds(2, 2021, by="record")):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(other.inner_split(0.2, 7)[1], cohort.inner_split(0.2, 7, by="record")[1])
    assert "no patient_id column" in no_column.fold_description()


def test_missing_patient_ids_count_as_patients_of_their_own():
    table = _patients_cohort().table
    table["patient_id"] = table["patient_id"].astype("Float64")
    table.loc[:9, "patient_id"] = pd.NA
    groups = Cohort(table).groups()
    assert len(set(groups[:10].tolist())) == 10 and groups[0] == "record:r0000"


def test_inner_split_keeps_patients_on_one_side():
    cohort = _patients_cohort()
    train_index, _ = cohort.stratified_folds(2, 42)[0]
    train = cohort.subset(train_index)
    fit, val = train.inner_split(0.2, 42)
    assert not _patients_of(train, fit) & _patients_of(train, val)
    assert len(val) == pytest.approx(0.2 * len(train), rel=0.15)
    assert train.event[val].mean() == pytest.approx(train.event.mean(), abs=0.03)


def test_strat_fold_scheme_keeps_each_ptbxl_fold_whole():
    table = _patients_cohort().table
    table["strat_fold"] = (table["patient_id"] % 10) + 1  # patient-wise, like PTB-XL's
    cohort = Cohort(table)
    for train, test in cohort.stratified_folds(2, 42, by="strat_fold"):
        assert not set(table["strat_fold"].iloc[train]) & set(table["strat_fold"].iloc[test])
        assert not _patients_of(cohort, train) & _patients_of(cohort, test)
    assert "strat_fold" not in cohort.covariates.columns
    with pytest.raises(ValueError, match="needs a strat_fold column"):
        Cohort(table.drop(columns="strat_fold")).stratified_folds(2, 42, by="strat_fold")
    with pytest.raises(ValueError, match="unknown fold scheme"):
        cohort.groups("ward")


def test_real_ptbxl_metadata_patient_with_four_ecgs_stays_together():
    # tests/data: 24 records, patient 13619 has ecg_id 17, 18, 20 and 23 (all in strat_fold 9).
    synth = synthetic_hf_cohort(PTBXL(PTBXL_ROOT, sampling_rate=100), event_rate=0.25, seed=0)
    cohort = synth.cohort
    table = cohort.table
    assert {"patient_id", "strat_fold"} <= set(table.columns)
    assert sorted(table.loc[table["patient_id"] == 13619, "ecg_id"]) == [17, 18, 20, 23]
    assert table.groupby("patient_id")["strat_fold"].nunique().max() == 1  # PTB-XL's folds are patient-wise
    assert not {"patient_id", "strat_fold"} & set(cohort.covariates.columns)
    cut_by_records = 0
    for seed in PAPER_CV_SEEDS:
        for train, test in cohort.stratified_folds(2, seed):
            assert not _patients_of(cohort, train) & _patients_of(cohort, test)
            assert abs(cohort.event[test].sum() - cohort.n_events / 2) <= 1
        train, test = cohort.stratified_folds(2, seed, by="record")[0]
        cut_by_records += bool(_patients_of(cohort, train) & _patients_of(cohort, test))
    assert cut_by_records >= 1  # the old split did separate this patient's ECGs


def test_protocol_runs_on_patient_folds_and_says_so(tmp_path):
    cohort = _patients_cohort(60)
    splits = paper_splits(cohort, seeds=(42, 2021))
    for split in splits:
        assert not set(split.train.table["patient_id"]) & set(split.test.table["patient_id"])
        fit, val = split.train.table["patient_id"].iloc[split.fit_index], split.train.table["patient_id"].iloc[split.val_index]
        assert not set(fit) & set(val)

    def constant(split, run_dir):
        return MethodResult(np.zeros(len(split.train)), np.zeros(len(split.test)), {})

    result = cross_validate(cohort, constant, tmp_path, seeds=(42,), progress=False)
    n_patients = cohort.table["patient_id"].nunique()
    assert result.summary["folds"] == f"patient ({len(cohort)} records, {n_patients} patients)"


def test_summary_gives_the_corrected_interval_beside_the_naive_one(tmp_path):
    cohort = _patients_cohort(80)

    def marker(split, run_dir):
        # A noisy score, so the runs' C values differ.
        rng = np.random.default_rng(split.seed + split.fold)
        return MethodResult(rng.normal(size=len(split.train)), -split.test.time + 30 * rng.normal(size=len(split.test)), {})

    result = cross_validate(cohort, marker, tmp_path, progress=False)
    c = result.summary["metrics"]["harrell_c"]
    runs = result.runs
    ratio = (runs["n_test"] / runs["n_train"]).mean()
    assert 0.9 < ratio < 1.1  # 2 folds
    naive_half, corrected_half = c["ci_high"] - c["mean"], c["corrected_ci_high"] - c["mean"]
    assert corrected_half / naive_half == pytest.approx(np.sqrt((1 / 10 + ratio) / (1 / 10)))
    assert c["corrected_ci_low"] == pytest.approx(c["mean"] - corrected_half)
