"""The exported ONNX graph against PyTorch (on real PTB-XL beats) and against the model card."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hfrisk.model.contract.card import CARD_FILENAME, InputSpec, ModelCard, default_card, load_card
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.model.network.onnx_export import (
    PARITY_ATOL,
    ParityError,
    export_onnx,
    onnx_parity,
    recording_inputs,
    wfdb_record_paths,
)

# One thread: on a shared, oversubscribed CPU, OpenMP threads that wait on each other cost 100x.
torch.set_num_threads(1)

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500" / "00000"


@pytest.fixture(scope="module")
def card():
    return default_card()


@pytest.fixture(scope="module")
def real_ecgs(card):
    """Eight real 500 Hz PTB-XL recordings as model inputs (12 × 608, per-lead z-scored)."""
    return recording_inputs(wfdb_record_paths(RECORDS, 8), card)


@pytest.fixture(scope="module")
def net(card, real_ecgs):
    """An untrained network whose BatchNorm statistics come from real beats, as a trained one's do."""
    torch.manual_seed(0)
    net = HFRiskNet.from_card(card).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.from_numpy(real_ecgs))
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, net, card):
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "hfrisk.onnx", card)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return path, ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_real_inputs_are_model_inputs(real_ecgs):
    assert real_ecgs.shape == (8, 12, 608) and real_ecgs.dtype == np.float32
    assert np.isfinite(real_ecgs).all()
    # Per-lead z-scored beats: the busiest lead has unit spread, and records differ from each other.
    assert np.allclose(real_ecgs.std(axis=2).max(axis=1), 1.0, atol=0.05)
    assert not np.allclose(real_ecgs[0], real_ecgs[1])


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_pytorch_on_real_recordings(exported, net, real_ecgs, batch):
    path, session = exported
    report = onnx_parity(path, net, real_ecgs[:batch], session=session)
    assert report.batch_size == batch
    assert report.ok, report.max_abs_diff
    report.check()
    assert report.worst <= PARITY_ATOL


def test_batch_axis_is_dynamic(exported, real_ecgs):
    _, session = exported
    assert isinstance(session.get_inputs()[0].shape[0], str)
    sizes = [session.run(["log_risk"], {"ecg": real_ecgs[:n]})[0].shape[0] for n in (1, 3, 8)]
    assert sizes == [1, 3, 8]
    # Each sample is scored alone (eval BatchNorm, no batch coupling): batching changes nothing.
    alone = np.concatenate([session.run(["log_risk"], {"ecg": real_ecgs[i : i + 1]})[0] for i in range(3)])
    together = session.run(["log_risk"], {"ecg": real_ecgs[:3]})[0]
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_exported_graph_matches_the_model_card(exported, card, real_ecgs):
    """The model checked against its card: names, order, dtypes and shapes, declared and returned."""
    path, session = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)

    (graph_input,) = session.get_inputs()
    assert graph_input.name == card.input.name
    assert graph_input.type == "tensor(float)"
    assert graph_input.shape[1:] == list(card.input.shape[1:])

    declared = session.get_outputs()
    assert [o.name for o in declared] == [o.name for o in card.outputs]
    for graph_output, spec in zip(declared, card.outputs):
        assert graph_output.type == "tensor(float)", spec.name
        assert isinstance(graph_output.shape[0], str), f"{spec.name}: batch axis must be symbolic"
        assert graph_output.shape[1:] == list(spec.shape[1:]), spec.name

    returned = session.run(None, {card.input.name: real_ecgs[:2]})
    for array, spec in zip(returned, card.outputs):
        assert array.dtype == np.float32
        assert array.shape == (2, *spec.shape[1:]), spec.name
    log_risk, lead_attention, lead_map, temporal = returned
    np.testing.assert_allclose(lead_attention.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(lead_map.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(temporal.sum(-1), 1.0, atol=1e-5)

    assert load_card(path.parent / CARD_FILENAME) == card


def test_parity_detects_a_different_network(exported, real_ecgs):
    path, session = exported
    torch.manual_seed(123)
    other = HFRiskNet().eval()
    report = onnx_parity(path, other, real_ecgs[:2], session=session)
    assert not report.ok
    with pytest.raises(ParityError, match="log_risk"):
        report.check()


def test_export_leaves_the_network_as_it_was(exported, net):
    assert not net.training  # exported from eval, stays eval
    net.train()
    try:
        state = {k: v.clone() for k, v in net.state_dict().items()}
        with pytest.raises(ValueError, match="card declares"):
            export_onnx(net, "unused.onnx", ModelCard(input=InputSpec(length_samples=640)))
        assert net.training
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    finally:
        net.eval()


def test_export_refuses_a_card_with_other_outputs(net, card, tmp_path):
    reordered = card.model_copy(update={"outputs": tuple(reversed(card.outputs))})
    with pytest.raises(ValueError, match="must match in name and order"):
        export_onnx(net, tmp_path / "x.onnx", reordered)
    # A 640-sample card whose outputs still declare 19 time steps: the network makes 20.
    longer = ModelCard(input=InputSpec(length_samples=640))
    with pytest.raises(ValueError, match="temporal_attention"):
        export_onnx(HFRiskNet.from_card(longer), tmp_path / "x.onnx", longer)
    assert not (tmp_path / "x.onnx").exists()
