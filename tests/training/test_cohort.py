"""Cohort files: columns, validation messages, stratified splits, PTB-XL cohorts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrisk.training.data.cohort import Cohort, CohortError, cohort_from_ptbxl, load_cohort
from hfrisk.training.data.ptbxl import PTBXL

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"


def _write(tmp_path: Path, table: pd.DataFrame, name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def _cohort(n: int = 100, n_events: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    event = np.zeros(n, dtype=int)
    event[rng.choice(n, n_events, replace=False)] = 1
    return pd.DataFrame({
        "record": [f"{i:05d}" for i in range(n)],
        "time": rng.uniform(1, 2000, n).round(1),
        "event": event,
        "eid": np.arange(1000, 1000 + n),
        "age": rng.integers(40, 80, n),
    })


def test_csv_and_parquet_load_the_same_cohort(tmp_path):
    table = _cohort()
    for name in ("cohort.csv", "cohort.parquet"):
        cohort = load_cohort(_write(tmp_path, table, name))
        assert len(cohort) == 100 and cohort.n_events == 10 and cohort.time_unit == "days"
        assert cohort.records[:2] == ["00000", "00001"]  # ids keep their leading zeros
        np.testing.assert_array_equal(cohort.time, table["time"].to_numpy())
        np.testing.assert_array_equal(cohort.event, table["event"].to_numpy())
        assert list(cohort.covariates.columns) == ["age"]  # eid is an identifier
        assert cohort.record_path(0) == Path("00000")


def test_missing_columns_are_named(tmp_path):
    path = _write(tmp_path, _cohort().drop(columns=["event", "time"]))
    with pytest.raises(CohortError, match=r"missing columns \['time', 'event'\]") as info:
        load_cohort(path)
    assert info.value.missing_columns == ["time", "event"]


def test_every_bad_row_is_reported_at_once(tmp_path):
    table = _cohort(10, 2).astype({"time": object, "event": object})
    table.loc[1, "time"] = -3.0
    table.loc[2, "time"] = np.nan
    table.loc[3, "time"] = "soon"
    table.loc[4, "event"] = 2
    table.loc[5, "event"] = np.nan
    table.loc[6, "record"] = "00007"
    with pytest.raises(CohortError) as info:
        load_cohort(_write(tmp_path, table))
    problems = info.value.problems
    assert problems["time is negative"] == [1]
    assert problems["time is missing or not a number"] == [2, 3]
    assert problems["event is not 0 or 1"] == [4, 5]
    assert problems["record is listed twice"] == [6, 7]
    assert isinstance(info.value, ValueError) and "event is not 0 or 1: 2 rows (4, 5)" in str(info.value)


def test_records_must_exist_under_records_root(tmp_path):
    ecgs = tmp_path / "ecgs"
    ecgs.mkdir()
    (ecgs / "a.hea").write_text("a 12 500 5000\n")  # a WFDB record is named without extension
    (ecgs / "b.xml").write_text("<ecg/>")
    records = ["a", "b.xml", "c", str(ecgs / "b.xml")]
    table = pd.DataFrame({"record": records, "time": [1, 2, 3, 4], "event": [0, 1, 0, 1]})
    path = _write(tmp_path, table)
    with pytest.raises(CohortError) as info:
        load_cohort(path, records_root=ecgs)
    assert list(info.value.problems.values()) == [[2]]
    ok = load_cohort(_write(tmp_path, table.drop(index=2), "ok.csv"), records_root=ecgs)
    assert ok.record_paths() == [ecgs / "a", ecgs / "b.xml", ecgs / "b.xml"]
    assert len(load_cohort(path)) == 4  # without a root, records are opaque ids


def test_stratified_folds_partition_and_balance_events(tmp_path):
    cohort = load_cohort(_write(tmp_path, _cohort(101, 11)))
    folds = cohort.stratified_folds(n_splits=2, seed=42)
    assert len(folds) == 2
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(101))
    for train, test in folds:
        assert not set(train) & set(test)
        assert abs(cohort.event[test].sum() - 11 / 2) <= 1
    again = cohort.stratified_folds(n_splits=2, seed=42)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = cohort.stratified_folds(n_splits=2, seed=2021)
    assert not np.array_equal(folds[0][1], other[0][1])


def test_inner_split_holds_out_a_stratified_fifth(tmp_path):
    cohort = load_cohort(_write(tmp_path, _cohort(100, 10)))
    train_idx, _ = cohort.stratified_folds(2, seed=42)[0]
    inner = cohort.subset(train_idx)
    assert len(inner) == 50 and inner.n_events == 5
    fit, val = inner.inner_split(frac=0.2, seed=42)
    assert len(val) == 10 and len(fit) == 40 and not set(fit) & set(val)
    assert inner.event[val].sum() == 1 and inner.event[fit].sum() == 4
    with pytest.raises(ValueError, match="frac"):
        inner.inner_split(frac=1.5)


def test_too_few_events_to_stratify_is_an_error(tmp_path):
    cohort = load_cohort(_write(tmp_path, _cohort(20, 1)))
    with pytest.raises(ValueError, match="1 events"):
        cohort.stratified_folds(2)
    with pytest.raises(ValueError, match="1 events"):
        cohort.inner_split()


def test_paper_months_only_when_asked(tmp_path):
    table = pd.DataFrame({"record": ["a", "b"], "time": [0.0, 300.0], "event": [1, 0]})
    cohort = load_cohort(_write(tmp_path, table))
    assert cohort.time.tolist() == [0.0, 300.0]
    months = cohort.in_paper_months()
    assert months.time.tolist() == [1.0, 11.0] and months.time_unit == "paper_months"
    with pytest.raises(ValueError, match="days"):
        load_cohort(_write(tmp_path, table), time_unit="years").in_paper_months()


def test_cohort_from_ptbxl_points_at_real_records():
    ds = PTBXL(PTBXL_ROOT, sampling_rate=500)
    times = {1: 100.0, 2: 250.0, 8: 30.0}
    events = {1: 0, 2: 0, 8: 1}
    cohort = cohort_from_ptbxl(ds, times, events, with_demographics=True)
    assert isinstance(cohort, Cohort)
    assert cohort.table["ecg_id"].tolist() == [1, 2, 8]
    assert cohort.record_paths()[2] == ds.record_path(8)
    assert cohort.event.tolist() == [0, 0, 1] and cohort.time.tolist() == [100.0, 250.0, 30.0]
    assert list(cohort.covariates.columns) == ["age", "sex"]
    assert cohort.covariates["age"].tolist() == ds.demographics().loc[[1, 2, 8], "age"].tolist()
    with pytest.raises(CohortError, match="not in this PTB-XL view"):
        cohort_from_ptbxl(ds.split("test"), times, events)
    with pytest.raises(CohortError, match="event is not 0 or 1"):
        cohort_from_ptbxl(ds, times, {1: 0, 2: 3, 8: 1})
