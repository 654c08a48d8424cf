"""The cached model inputs: computed once with the shared preprocessing, failures and unfit records counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import cleaned_beat, prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.model.readers.wfdb_io import write_wfdb
from hfrisk.training.data import dataset
from hfrisk.training.data.dataset import model_inputs, ptbxl_inputs
from hfrisk.training.data.ptbxl import PTBXL

torch.set_num_threads(1)


@pytest.fixture()
def records(ecg_data_dir):
    folder = ecg_data_dir / "ptbxl" / "records100" / "00000"
    return [folder / f"{i:05d}_lr" for i in (1, 2, 3)]


@pytest.fixture()
def prepare_calls(monkeypatch):
    """Counts calls of the preprocessing as the dataset module calls it."""
    calls = []

    def spy(ecg, card, **kwargs):
        calls.append(ecg.source)
        return prepare(ecg, card, **kwargs)

    monkeypatch.setattr(dataset, "prepare", spy)
    return calls


def test_second_call_is_a_cache_hit(records, tmp_path, prepare_calls):
    card = default_card()
    first = model_inputs(records, card, cache_dir=tmp_path)
    assert len(prepare_calls) == 3
    second = model_inputs(records, card, cache_dir=tmp_path)
    assert len(prepare_calls) == 3, "a cache hit must not preprocess again"
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.target, second.target)
    np.testing.assert_array_equal(first.lead_mask, second.lead_mask)
    assert len(list(tmp_path.glob("model_inputs-*.npz"))) == 1


def test_another_card_or_record_list_misses_the_cache(records, tmp_path, prepare_calls):
    card = default_card()
    model_inputs(records, card, cache_dir=tmp_path)
    stricter = card.model_copy(update={"quality": card.quality.model_copy(update={"min_score": 0.9})})
    model_inputs(records, stricter, cache_dir=tmp_path)
    model_inputs(records[:2], card, cache_dir=tmp_path)
    assert len(prepare_calls) == 3 + 3 + 2


def test_rows_hold_the_shared_preprocessing(records, tmp_path):
    card = default_card()
    inputs = model_inputs(records, card, ids=[1, 2, 3], cache_dir=tmp_path)
    assert inputs.x.shape == inputs.target.shape == (3, 12, 608)
    assert inputs.x.dtype == inputs.target.dtype == np.float32
    assert inputs.ids.tolist() == [1, 2, 3]
    item = prepare(read_ecg(records[1]), card)
    np.testing.assert_array_equal(inputs.x[1], item.x)
    np.testing.assert_array_equal(inputs.target[1], cleaned_beat(item, card))
    np.testing.assert_array_equal(inputs.lead_mask[1], item.lead_mask)
    assert inputs.quality_score[1] == pytest.approx(item.quality.score)
    assert inputs.fit_to_score.all() and not inputs.failed.any()


def test_failed_and_unfit_records_are_counted_and_kept_on_request(records, tmp_path):
    card = default_card()
    flat = ECG(samples=np.zeros((12, 5000)), fs_hz=500.0, lead_names=card.input.leads)
    flat_path = write_wfdb(flat, tmp_path / "records", "flat")
    paths = [records[0], tmp_path / "missing_record", flat_path]

    everything = model_inputs(paths, card, cache_dir=tmp_path / "cache")
    assert len(everything) == 3, "keep='all' keeps one row per record, in order"
    assert everything.counts() == {"records": 3, "failed": 1, "unfit": 1, "fit": 1}
    assert everything.failed.tolist() == [False, True, False]
    assert "unreadable" in everything.reasons[1]
    assert not everything.x[1].any() and not everything.lead_mask[1].any()
    assert not everything.fit_to_score[2] and "flat_line" in everything.reasons[2]

    fit = model_inputs(paths, card, cache_dir=tmp_path / "cache", keep="fit")
    assert fit.ids.tolist() == [str(records[0])]
    usable = model_inputs(paths, card, cache_dir=tmp_path / "cache", keep="usable")
    assert usable.ids.tolist() == [str(records[0])], "a flat record has no usable lead"


def test_all_records_failing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="all 2 records failed"):
        model_inputs([tmp_path / "a", tmp_path / "b"], default_card(), cache_dir=tmp_path)


def test_ptbxl_inputs_use_ecg_ids(ecg_data_dir, tmp_path):
    ds = PTBXL(ecg_data_dir / "ptbxl", sampling_rate=100).subset([5, 9])
    inputs = ptbxl_inputs(ds, default_card(), cache_dir=tmp_path, keep="fit")
    assert inputs.ids.dtype == np.int64 and inputs.ids.tolist() == [5, 9]
    assert inputs.positions([9, 5]).tolist() == [1, 0]
