"""Pretraining corpus: sources merged one record per ecg_id, exclusions by id, patient and fold,
the ptbxl-extra loader, and the retrieval metric of validation.

The multi-source data root is built from tests/data: records500 keeps ids 1-12, records100 all 24,
and a ptbxl-extra file holds z-scored copies of ids 3 and 20 (also raw) and of 2 and 5 under the
new ids 1001 and 1002, whose rows in the copied database give them the patients of ids 2 and 5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hfrisk.model.contract.card import default_card
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.training.data.ptbxl_extra import SIGNALS_FILE, PTBXLExtra, extra_inputs
from hfrisk.training.data.dataset import model_inputs
from hfrisk.training.pretrain.config import PretrainConfig
from hfrisk.training.pretrain.corpus import choose_sources, excluded_ids, read_id_file
from hfrisk.training.pretrain.data import load_pretraining_data
from hfrisk.training.pretrain.loop import retrieval

from tests.training.conftest import PTBXL_ROOT

torch.set_num_threads(1)

# New ids in the extra file -> the test record whose signal and patient they copy.
COPIES = {1001: 2, 1002: 5}
EXTRA_RAW = (3, 20)


def _zscored(ecg_id: int) -> np.ndarray:
    signal = read_ecg(PTBXL_ROOT / f"records100/00000/{ecg_id:05d}_lr").samples.astype(np.float64)
    return ((signal - signal.mean(1, keepdims=True)) / signal.std(1, keepdims=True)).astype(np.float16)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("corpus")
    root = base / "ptbxl"
    shutil.copytree(PTBXL_ROOT, root)
    for ecg_id in range(13, 25):
        for ext in ("hea", "dat"):
            (root / f"records500/00000/{ecg_id:05d}_hr.{ext}").unlink()
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    copies = db.loc[list(COPIES.values())].copy()
    copies.index = pd.Index(list(COPIES), name="ecg_id")
    copies["filename_lr"] = [f"records100/01000/{i:05d}_lr" for i in COPIES]
    copies["filename_hr"] = [f"records500/01000/{i:05d}_hr" for i in COPIES]
    pd.concat([db, copies]).to_csv(root / "ptbxl_database.csv")
    extra = base / "ptbxl-extra"
    extra.mkdir()
    ids = [*EXTRA_RAW, *COPIES]
    signals = np.stack([_zscored(COPIES.get(i, i)) for i in ids])
    np.savez(extra / SIGNALS_FILE, signals=signals, ecg_id=np.array(ids))
    return root, extra


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def _config(roots, cache, **kwargs) -> PretrainConfig:
    root, extra = roots
    return PretrainConfig(data_root=root, extra_root=extra, cache_dir=cache, progress=False, keep="usable", **kwargs)


# --- pure functions -----------------------------------------------------------------------------


def test_choose_sources_takes_each_id_once_from_the_first_source_listed():
    available = {"500": [1, 2], "100": [1, 2, 3, 4], "extra": [4, 9]}
    assert choose_sources(available, ("500", "100", "extra")) == {1: "500", 2: "500", 3: "100", 4: "100", 9: "extra"}
    assert choose_sources(available, ("extra", "100")) == {1: "100", 2: "100", 3: "100", 4: "extra", 9: "extra"}


def test_excluded_ids_widen_to_the_patients_other_records():
    db = pd.DataFrame({"patient_id": [7.0, 7.0, 8.0, 9.0, 9.0], "strat_fold": [1, 2, 3, 10, 10]},
                      index=pd.Index([1, 2, 3, 4, 5], name="ecg_id"))
    assert excluded_ids(db, ecg_ids=[1]) == {1, 2}
    assert excluded_ids(db, ecg_ids=[1], same_patient=False) == {1}
    assert excluded_ids(db, patient_ids=[8]) == {3}
    assert excluded_ids(db, folds=[10]) == {4, 5}
    assert excluded_ids(db, ecg_ids=[99]) == {99}
    assert excluded_ids(db) == set()


def test_read_id_file_takes_plain_lines_or_a_csv_column(tmp_path):
    plain = tmp_path / "ids.txt"
    plain.write_text("# fold 10 of run A\n12\n 15 \n\n12\n")
    assert read_id_file(plain) == {12, 15}
    table = tmp_path / "ids.csv"
    table.write_text("patient_id,note\n13619.0,x\n9012,y\n")
    assert read_id_file(table, "patient_id") == {13619, 9012}
    with pytest.raises(ValueError, match="ecg_id"):
        read_id_file(table)


def test_retrieval_counts_shared_texts_as_one_candidate():
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    e_text = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    perfect = retrieval(e_text.clone(), e_text, text)
    assert perfect["top1"] == 1.0 and perfect["mrr"] == 1.0 and perfect["texts"] == 3.0
    assert perfect["top1_majority"] == 0.5
    swapped = retrieval(e_text[[2, 2, 0, 3]], e_text, text)  # the first three point at the wrong text
    assert swapped["top1"] == 0.25 and swapped["top5"] == 1.0
    # Ranking texts by frequency: the shared text first for its 2 records, the two single ones tie second.
    assert perfect["top1_popular"] == 0.5 and perfect["top5_popular"] == 1.0
    assert perfect["mrr_popular"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


# --- ptbxl-extra ----------------------------------------------------------------------------------


def test_extra_zscored_arrays_give_the_raw_records_model_input(roots, cache):
    """Read as if in mV, a z-scored copy passes the quality gate and gives the raw record's input."""
    _, extra_root = roots
    extra = PTBXLExtra(extra_root)
    card = default_card()
    ids = list(EXTRA_RAW)
    from_extra = extra_inputs(extra, ids, card, cache_dir=cache)
    raw = model_inputs([PTBXL_ROOT / f"records100/00000/{i:05d}_lr" for i in ids], card, ids=ids, cache_dir=cache)
    assert from_extra.fit_to_score.tolist() == raw.fit_to_score.tolist()
    for row in range(len(ids)):
        both = np.flatnonzero(from_extra.lead_mask[row] & raw.lead_mask[row])
        corr = [np.corrcoef(from_extra.x[row, j], raw.x[row, j])[0, 1] for j in both]
        assert np.median(corr) > 0.98
    again = extra_inputs(extra, ids, card, cache_dir=cache)  # from the cache
    np.testing.assert_array_equal(again.x, from_extra.x)


# --- merged corpus and exclusions -------------------------------------------------------------------


@pytest.fixture(scope="module")
def merged(roots, cache):
    return load_pretraining_data(_config(roots, cache, sources=("500", "100", "extra")), default_card())


def test_sources_merge_one_record_per_ecg_id_preferring_500_then_100(merged):
    rows = {}
    for split in (merged.train, merged.validation):
        for ecg_id, source in zip(split.ids.tolist(), split.source.tolist()):
            assert ecg_id not in rows, f"ecg_id {ecg_id} twice"
            rows[ecg_id] = source
    assert all(rows[i] == "500" for i in rows if i <= 12)
    assert all(rows[i] == "100" for i in rows if 13 <= i <= 24)  # 20 is in extra too: raw wins
    assert {i: s for i, s in rows.items() if i > 24} == {1001: "extra", 1002: "extra"}
    assert 9 not in rows  # fold 10 is neither train nor validation
    assert merged.corpus["train_by_source"]["extra"] + merged.corpus["val_by_source"]["extra"] == 2


def test_default_reads_one_release_as_before(roots, cache):
    data = load_pretraining_data(_config(roots, cache, sampling_rate=500), default_card())
    ids = set(data.train.ids.tolist()) | set(data.validation.ids.tolist())
    assert ids <= set(range(1, 13)) and set(data.train.source.tolist()) == {"500"}


def test_an_excluded_patients_records_never_appear_in_any_source(roots, cache, tmp_path):
    listed = tmp_path / "eval_ids.txt"
    listed.write_text("2\n17\n")  # 17's patient 13619 also has 18, 20 and 23; 2's has 1001 (extra)
    data = load_pretraining_data(_config(roots, cache, sources=("500", "100", "extra"), exclude_ids=listed),
                                 default_card())
    used = set(data.train.ids.tolist()) | set(data.validation.ids.tolist())
    assert not used & {2, 1001, 17, 18, 20, 23}
    assert {1002, 3} <= used
    assert data.corpus["excluded_train"] == 2 and data.corpus["excluded_val"] == 4
    assert data.corpus["excluded_ids_sha256"]

    only_listed = load_pretraining_data(
        _config(roots, cache, sources=("500", "100", "extra"), exclude_ids=listed, exclude_same_patient=False),
        default_card())
    used = set(only_listed.train.ids.tolist()) | set(only_listed.validation.ids.tolist())
    assert not used & {2, 17} and {1001, 18, 20, 23} <= used


def test_exclusion_by_patient_file_and_by_fold(roots, cache, tmp_path):
    patients = tmp_path / "patients.csv"
    patients.write_text("patient_id\n17448\n")  # ecg_id 5, and its extra copy 1002
    data = load_pretraining_data(
        _config(roots, cache, sources=("100", "extra"), exclude_patients=patients, exclude_folds=(3,)), default_card())
    used = set(data.train.ids.tolist()) | set(data.validation.ids.tolist())
    assert not used & {5, 1002, 1, 4, 15, 24}


def test_config_refuses_repeated_sources_and_an_excluded_validation_fold(tmp_path):
    with pytest.raises(ValueError, match="sources"):
        PretrainConfig(data_root=tmp_path, sources=("100", "100"))
    with pytest.raises(ValueError, match="exclude_folds"):
        PretrainConfig(data_root=tmp_path, exclude_folds=(9,))
