"""Every source format, through the one pipeline: reader -> preprocessing -> network (torch and ONNX)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hfrisk.model.contract.card import default_card
from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg

SOURCES = {
    "ptbxl_500hz": ("ptbxl/records500/00000/00009_hr", 12),
    "ptbxl_100hz": ("ptbxl/records100/00000/00009_lr", 12),
    "cinc_mat_mv": ("cinc2021/HR06000", 12),
    "cinc_georgia": ("cinc2021/E07500", 12),
    "ptb_1000hz_15ch": ("wfdb-samples/s0010_re", 12),
    "mitbih_2_leads": ("wfdb-samples/100", 2),
}


@pytest.fixture(scope="module")
def card():
    return default_card()


@pytest.fixture(scope="module")
def inputs(card, ecg_data_dir, dicom_ecg_path):
    items = {name: prepare(read_ecg(ecg_data_dir / rel), card) for name, (rel, _) in SOURCES.items()}
    items["dicom_rhythm"] = prepare(read_ecg(dicom_ecg_path), card)
    return items


@pytest.fixture(scope="module")
def session(exported_model_dir):
    return ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def test_every_format_gives_a_contract_input(inputs, card):
    for name, item in inputs.items():
        assert item.x.shape == card.input.shape[1:], name
        assert item.x.dtype == np.float32 and np.isfinite(item.x).all(), name
        assert item.n_beats_used >= card.quality.min_beats, name
    for name, (_, n_present) in SOURCES.items():
        assert int(inputs[name].lead_mask.sum()) == n_present, name
    assert inputs["dicom_rhythm"].lead_mask.all()
    masked = ~inputs["mitbih_2_leads"].lead_mask
    assert not inputs["mitbih_2_leads"].x[masked].any()


def test_clean_twelve_lead_sources_are_fit_to_score(inputs):
    for name in ("ptbxl_500hz", "ptbxl_100hz", "cinc_mat_mv", "ptb_1000hz_15ch", "dicom_rhythm"):
        assert inputs[name].quality.fit_to_score, (name, inputs[name].quality.reasons)
    # Two leads cannot support a 12-lead risk score: refused by the quality gate, not by a crash.
    assert not inputs["mitbih_2_leads"].quality.fit_to_score
    assert "too_few_leads" in inputs["mitbih_2_leads"].quality.reasons


def test_network_and_onnx_agree_on_every_format(inputs, session, card):
    batch = np.stack([item.x for item in inputs.values()])
    torch.manual_seed(0)
    serving = ServingModule(HFRiskNet.from_card(card)).eval()
    onnx_out = dict(zip([o.name for o in card.outputs], session.run(None, {card.input.name: batch})))
    assert onnx_out["log_risk"].shape == (len(inputs), 1)
    assert np.isfinite(onnx_out["log_risk"]).all()
    np.testing.assert_allclose(onnx_out["lead_attention"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(onnx_out["temporal_attention"].sum(axis=2), 1.0, atol=1e-5)
    with torch.no_grad():
        torch_out = [t.numpy() for t in serving(torch.from_numpy(batch))]
    np.testing.assert_allclose(onnx_out["log_risk"], torch_out[0], atol=1e-4)


def test_dicom_and_wfdb_copies_of_a_rhythm_agree(dicom_ecg_path, tmp_path, card):
    """Writing the DICOM rhythm strip to WFDB and reading it back changes nothing downstream."""
    from hfrisk.model.readers.wfdb_io import write_wfdb

    ecg = read_ecg(dicom_ecg_path)
    record = write_wfdb(ecg, tmp_path, "dicom_copy")
    a, b = prepare(ecg, card), prepare(read_ecg(record), card)
    np.testing.assert_allclose(a.x, b.x, atol=2e-2)
    assert (a.n_beats_detected, a.n_beats_used) == (b.n_beats_detected, b.n_beats_used)
