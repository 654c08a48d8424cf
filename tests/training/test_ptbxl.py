"""PTBXL on the 24-record test copy, on edited copies of it, and on the shared subset when present."""

from __future__ import annotations

import ast
import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrisk.training.data.ptbxl import PTBXL, SUPERCLASSES

ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"
SHARED = Path("/work/shared/data/ecg/ptbxl")


def _rows() -> list[dict[str, str]]:
    # Read with the csv module, independently of the pandas code under test.
    with open(ROOT / "ptbxl_database.csv", newline="") as f:
        return list(csv.DictReader(f))


def _copy(tmp_path: Path, ids_100: range, edit=None) -> Path:
    """A PTB-XL folder with the 100 Hz records of ``ids_100`` and all metadata rows (optionally edited)."""
    root = tmp_path / "ptbxl"
    (root / "records100" / "00000").mkdir(parents=True)
    shutil.copy(ROOT / "scp_statements.csv", root)
    db = pd.read_csv(ROOT / "ptbxl_database.csv")
    if edit is not None:
        db = edit(db)
    db.to_csv(root / "ptbxl_database.csv", index=False)
    for i in ids_100:
        for ext in ("hea", "dat"):
            shutil.copy(ROOT / f"records100/00000/{i:05d}_lr.{ext}", root / f"records100/00000/{i:05d}_lr.{ext}")
    return root


@pytest.mark.parametrize("rate", [100, 500])
def test_every_test_record_is_loaded_with_its_row(rate):
    ds = PTBXL(ROOT, sampling_rate=rate)
    assert ds.ids.tolist() == list(range(1, 25))
    assert ds.rows_without_record == 0 and ds.records_without_row == 0
    suffix = "lr" if rate == 100 else "hr"
    assert ds.record_path(7) == ROOT / f"records{rate}/00000/00007_{suffix}"
    assert ds.record_path(7).with_name(f"00007_{suffix}.hea").is_file()


def test_standard_splits_follow_strat_fold():
    folds = {int(r["ecg_id"]): int(r["strat_fold"]) for r in _rows()}
    ds = PTBXL(ROOT)
    train, val, test = ds.split("train"), ds.split("validation"), ds.split("test")
    assert sorted(train.ids) == sorted(i for i, f in folds.items() if f <= 8)
    assert val.ids.tolist() == sorted(i for i, f in folds.items() if f == 9)
    assert test.ids.tolist() == sorted(i for i, f in folds.items() if f == 10)
    assert len(train) + len(val) + len(test) == len(ds)
    assert ds.split("val").ids.tolist() == val.ids.tolist()
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("holdout")


def test_scp_codes_drop_zero_likelihood_unless_asked():
    ds = PTBXL(ROOT)
    assert ds.scp_codes(1) == {"NORM": 100.0}
    assert ds.scp_codes(1, include_zero=True) == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    raw = {int(r["ecg_id"]): ast.literal_eval(r["scp_codes"]) for r in _rows()}
    assert ds.codes_per_record(include_zero=True) == {i: {c: float(v) for c, v in d.items()} for i, d in raw.items()}
    assert all(v > 0 for codes in ds.codes_per_record().values() for v in codes.values())
    with pytest.raises(KeyError):
        ds.scp_codes(999)


def test_superclasses_come_from_diagnostic_codes():
    ds = PTBXL(ROOT)
    labels = ds.superclass_labels()
    assert list(labels.columns) == list(SUPERCLASSES)
    assert labels.index.tolist() == ds.ids.tolist()
    statements = pd.read_csv(ROOT / "scp_statements.csv", index_col=0)
    for ecg_id, codes in ds.codes_per_record(include_zero=True).items():
        expected = {statements.loc[c, "diagnostic_class"] for c in codes if statements.loc[c, "diagnostic"] == 1}
        assert {s for s in SUPERCLASSES if labels.loc[ecg_id, s]} == expected, ecg_id
    # record 1 is NORM 100 with non-diagnostic LVOLT and SR
    assert labels.loc[1].to_dict() == {"NORM": 1, "MI": 0, "STTC": 0, "HYP": 0, "CD": 0}
    # the one MI record of the test copy holds IMI at likelihood 35: a confidence threshold removes it
    assert labels.index[labels["MI"] == 1].tolist() == [8]
    assert ds.scp_codes(8) == {"IMI": 35.0}
    assert ds.superclass_labels(min_likelihood=50).loc[8].sum() == 0


def test_diagnostic_codes_count_even_at_likelihood_zero(tmp_path):
    # PTB-XL's own example counts every listed diagnostic code; likelihood 0 means "not stated".
    def edit(db):
        db.loc[db.ecg_id == 5, "scp_codes"] = "{'LVH': 0.0, 'SR': 0.0}"
        return db

    ds = PTBXL(_copy(tmp_path, range(1, 25), edit))
    assert ds.superclass_labels().loc[5].to_dict() == {"NORM": 0, "MI": 0, "STTC": 0, "HYP": 1, "CD": 0}
    assert ds.superclass_labels(min_likelihood=1).loc[5].sum() == 0
    assert ds.scp_codes(5) == {} and ds.scp_codes(5, include_zero=True) == {"LVH": 0.0, "SR": 0.0}


def test_rows_and_records_that_do_not_pair_are_dropped_and_counted(tmp_path):
    root = _copy(tmp_path, range(1, 6))
    # a record without a row, and a header without its signal file (unreadable: ignored)
    for ext in ("hea", "dat"):
        shutil.copy(ROOT / f"records100/00000/00001_lr.{ext}", root / f"records100/00000/00099_lr.{ext}")
    shutil.copy(ROOT / "records100/00000/00006_lr.hea", root / "records100/00000/00006_lr.hea")
    ds = PTBXL(root)
    assert ds.ids.tolist() == [1, 2, 3, 4, 5]
    assert ds.rows_without_record == 19
    assert ds.records_without_row == 1 and ds.unlabelled_ids.tolist() == [99]
    with pytest.raises(FileNotFoundError, match="records500"):
        PTBXL(root, sampling_rate=500)
    with pytest.raises(ValueError, match="100 or 500"):
        PTBXL(root, sampling_rate=250)


def test_validated_subset_and_demographics(tmp_path):
    def edit(db):
        db.loc[db.ecg_id.isin([2, 3]), "validated_by_human"] = False
        db.loc[db.ecg_id == 4, "age"] = 300  # v1.0.3's code for "over 89"
        return db

    ds = PTBXL(_copy(tmp_path, range(1, 25), edit))
    assert ds.validated().ids.tolist() == [i for i in range(1, 25) if i not in (2, 3)]
    assert ds.validated().split("train").ids.tolist() == [i for i in ds.split("train").ids if i not in (2, 3)]
    demo = ds.demographics()
    first = _rows()[0]
    assert demo.loc[1, "age"] == float(first["age"]) and demo.loc[1, "sex"] == int(first["sex"])
    assert demo.loc[4, "age"] == 90.0
    assert set(demo["sex"].unique()) <= {0, 1}


def test_reports_are_the_free_text_whitespace_normalised():
    ds = PTBXL(ROOT)
    raw = {int(r["ecg_id"]): r["report"] for r in _rows()}
    reports = ds.reports()
    assert reports.loc[1] == "sinusrhythmus periphere niederspannung"
    assert all(reports.loc[i] == " ".join(raw[i].split()) for i in raw)


def test_record_path_reads_as_a_twelve_lead_ecg():
    wfdb_io = pytest.importorskip("hfrisk.model.readers.wfdb_io")
    ds = PTBXL(ROOT, sampling_rate=500)
    ecg = wfdb_io.read_wfdb(ds.record_path(3))
    assert ecg.n_leads == 12 and ecg.fs_hz == 500 and ecg.n_samples == 5000


@pytest.mark.skipif(not (SHARED / "ptbxl_database.csv").is_file(), reason="shared PTB-XL subset not present")
def test_shared_subset_counts_match_its_readme():
    lr = PTBXL(SHARED, sampling_rate=100)
    # The shared metadata is the complete official v1.0.1 file (21,837 rows); its README gives these counts.
    assert len(lr) == 1999 and lr.records_without_row == 0
    assert lr.rows_without_record == 21837 - 1999
    counts = lr.metadata["strat_fold"].value_counts().sort_index().tolist()
    assert counts == [214, 179, 179, 193, 208, 156, 197, 173, 245, 255]
    hr = PTBXL(SHARED, sampling_rate=500)
    assert len(hr) == 500 and hr.records_without_row == 0
    assert np.array_equal(hr.ids, np.arange(1, 501))
