"""The model repository writer and the python-backend model.py it installs (run here without Triton)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hfrisk.model.contract.card import CARD_FILENAME, InputSpec, ModelCard, default_card, load_card
from hfrisk.serving import backend_model
from hfrisk.serving.model_repository import (
    GPU_CONFIG_NAME,
    OnnxContractError,
    ServingOptions,
    check_onnx,
    render_config,
    write_model_repository,
)
from tests.serving import ecg_windows, exported_model

CARD = default_card()


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    return exported_model(CARD)


@pytest.fixture(scope="module")
def repository(onnx_path, tmp_path_factory) -> Path:
    return write_model_repository(onnx_path, CARD, tmp_path_factory.mktemp("repo"), max_batch_size=8)


# --- config.pbtxt ----------------------------------------------------------------------------


def test_config_declares_the_cards_tensors():
    config = parse(render_config(CARD, "hfrisk"))
    assert config.name == "hfrisk" and config.backend == "python"
    (ecg,) = config.input
    assert ecg.name == CARD.input.name == "ecg"
    assert list(ecg.dims) == [12, 608]
    assert ecg.data_type == model_config_pb2.TYPE_FP32
    outputs = {o.name: list(o.dims) for o in config.output}
    assert outputs == {
        "log_risk": [1],
        "lead_attention": [12],
        "lead_attention_map": [12, 12],
        "temporal_attention": [12, 19],
    }
    assert all(o.data_type == model_config_pb2.TYPE_FP32 for o in config.output)


def test_config_dims_follow_the_card_not_constants():
    card = ModelCard(input=InputSpec(leads=("I", "II", "V1"), length_samples=640, beat_samples=600))
    config = parse(render_config(card, "other"))
    assert list(config.input[0].dims) == [3, 640]
    assert config.name == "other"


def test_batching_instances_and_parameters():
    options = ServingOptions(max_batch_size=48, preferred_batch_sizes=(8, 24), max_queue_delay_us=500,
                             cpu_instances=3, intra_op_threads=2)
    config = parse(render_config(CARD, "hfrisk", options))
    assert config.max_batch_size == 48
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 24]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 3
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["providers"].split(",") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert params["fallback_to_cpu"] == "true"
    assert params["intra_op_threads"] == "2"


def test_gpu_variant_pins_gpus_and_refuses_cpu_fallback():
    options = ServingOptions(gpu_instances=2, gpus=(0, 1), providers=("CPUExecutionProvider",))
    config = parse(render_config(CARD, "hfrisk", options, kind="gpu"))
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert group.count == 2 and list(group.gpus) == [0, 1]
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["providers"].split(",")[0] == "CUDAExecutionProvider"
    assert params["fallback_to_cpu"] == "false"


def test_default_preferred_sizes_fit_a_small_max_batch():
    assert ServingOptions().preferred == (16, 32)
    assert ServingOptions(max_batch_size=8).preferred == (8,)
    with pytest.raises(ValueError, match="preferred batch sizes"):
        ServingOptions(max_batch_size=8, preferred_batch_sizes=(16,))


# --- repository layout -----------------------------------------------------------------------


def test_repository_layout(repository):
    assert repository.name == "hfrisk"
    for relative in ("config.pbtxt", f"configs/{GPU_CONFIG_NAME}.pbtxt", CARD_FILENAME,
                     "1/model.onnx", "1/model.py", f"1/{CARD_FILENAME}"):
        assert (repository / relative).is_file(), relative
    # The card as given, declaring the raw-window model written beside it.
    assert load_card(repository) == load_card(repository / "1")
    assert load_card(repository).model_copy(update={"serving": CARD.serving}) == CARD
    assert load_card(repository).serving.raw_model == "hfrisk_raw"
    assert (repository / "1" / "model.py").read_text() == Path(backend_model.__file__).read_text()
    assert parse((repository / "config.pbtxt").read_text()).max_batch_size == 8


def test_the_committed_backend_is_a_byte_copy_of_the_one_export_writes():
    """Triton imports triton_models/hfrisk/1/model.py outside the package; export writes it from
    backend_model.py, so an edit to either alone would serve code no test ran."""
    committed = Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk" / "1" / "model.py"
    assert committed.read_bytes() == Path(backend_model.__file__).read_bytes(), (
        "triton_models/hfrisk/1/model.py differs from hfrisk/serving/backend_model.py: re-run `hfrisk export` "
        "or copy the backend")


def test_repository_onnx_gives_the_same_scores(onnx_path, repository):
    x = ecg_windows(CARD, 3)
    names = [o.name for o in CARD.outputs]
    expected = ort.InferenceSession(str(onnx_path)).run(names, {"ecg": x})
    served = ort.InferenceSession(str(repository / "1" / "model.onnx")).run(names, {"ecg": x})
    for a, b in zip(expected, served):
        np.testing.assert_array_equal(a, b)


def test_an_onnx_file_that_breaks_the_card_is_refused(onnx_path, tmp_path):
    longer = ModelCard(input=InputSpec(length_samples=1000))
    with pytest.raises(OnnxContractError, match=r"shape .*1000"):
        check_onnx(onnx_path, longer)
    with pytest.raises(OnnxContractError):
        write_model_repository(onnx_path, longer, tmp_path)
    assert not (tmp_path / "hfrisk").exists()


# --- backend model.py helpers -----------------------------------------------------------------


CARD_DICT = CARD.model_dump(mode="json")
GOOD_INPUTS = [("ecg", ["batch", 12, 608], "tensor(float)")]
GOOD_OUTPUTS = [("log_risk", ["batch", 1], "tensor(float)"), ("lead_attention", [None, 12], "tensor(float)"),
                ("lead_attention_map", ["b", 12, 12], "tensor(float)"), ("temporal_attention", ["b", 12, 19], "tensor(float)")]


def test_contract_accepts_a_matching_graph():
    assert backend_model.contract_mismatches(CARD_DICT, GOOD_INPUTS, GOOD_OUTPUTS) == []


@pytest.mark.parametrize(
    "inputs, outputs, expected",
    [
        ([("x", ["b", 12, 608], "tensor(float)")], GOOD_OUTPUTS, "exactly ['ecg']"),
        ([("ecg", [4, 12, 608], "tensor(float)")], GOOD_OUTPUTS, "fixed batch dimension 4"),
        ([("ecg", ["b", 12, 600], "tensor(float)")], GOOD_OUTPUTS, "shape"),
        ([("ecg", ["b", 12, 608], "tensor(double)")], GOOD_OUTPUTS, "tensor(double)"),
        (GOOD_INPUTS, GOOD_OUTPUTS[:3], "no output 'temporal_attention'"),
        (GOOD_INPUTS, [*GOOD_OUTPUTS[:3], ("temporal_attention", ["b", 12, 20], "tensor(float)")], "temporal_attention"),
    ],
)
def test_contract_names_what_is_wrong(inputs, outputs, expected):
    problems = backend_model.contract_mismatches(CARD_DICT, inputs, outputs)
    assert any(expected in p for p in problems), problems


def test_batch_problem():
    dims = (12, 608)
    good = np.zeros((2, 12, 608), np.float32)
    assert backend_model.batch_problem(good, "ecg", dims) is None
    assert "float32" in backend_model.batch_problem(good.astype(np.float64), "ecg", dims)
    assert "[batch, 12, 608]" in backend_model.batch_problem(good[:, :, :600], "ecg", dims)
    assert "no windows" in backend_model.batch_problem(good[:0], "ecg", dims)
    bad = good.copy()
    bad[1, 3, 5] = np.inf
    assert "1 of 2 windows" in backend_model.batch_problem(bad, "ecg", dims)


def test_choose_providers():
    cpu = ["CPUExecutionProvider"]
    assert backend_model.choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], cpu) == cpu
    assert backend_model.choose_providers(["CUDAExecutionProvider"], ["CUDAExecutionProvider", *cpu]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        backend_model.choose_providers(["CUDAExecutionProvider"], cpu, fallback_to_cpu=False)


# --- backend model.py under a stand-in of triton_python_backend_utils ---------------------------


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class _Response:
    def __init__(self, output_tensors, error=None):
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


class _Error(Exception):
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message, code="INTERNAL"):
        super().__init__(message)
        self.message, self.code = message, code


@pytest.fixture
def backend(repository, monkeypatch):
    fake = types.SimpleNamespace(
        Tensor=_Tensor,
        InferenceResponse=_Response,
        TritonError=_Error,
        get_input_tensor_by_name=lambda request, name: request.get(name),
    )
    monkeypatch.setattr(backend_model, "pb_utils", fake)
    config = parse((repository / "config.pbtxt").read_text())
    from google.protobuf.json_format import MessageToDict

    model = backend_model.TritonPythonModel()
    model.initialize({
        "model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True)),
        "model_repository": str(repository),
        "model_version": "1",
        "model_name": "hfrisk",
        "model_instance_name": "hfrisk_0_0",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
    })
    yield model
    model.finalize()


def test_backend_splits_one_run_back_per_request_and_isolates_bad_ones(backend, onnx_path):
    x = ecg_windows(CARD, 6)
    nan = x[:2].copy()
    nan[0, 0, 0] = np.nan
    requests = [
        {"ecg": _Tensor("ecg", x[:1])},
        {"ecg": _Tensor("ecg", nan)},
        {"ecg": _Tensor("ecg", x[1:4])},
        {"ecg": _Tensor("ecg", x[4:6, :, :600].copy())},
        {},
        {"ecg": _Tensor("ecg", x[5:6])},
    ]
    responses = backend.execute(requests)
    assert len(responses) == len(requests)
    names = [o.name for o in CARD.outputs]
    expected = dict(zip(names, ort.InferenceSession(str(onnx_path)).run(names, {"ecg": x})))
    for response, rows in ((responses[0], slice(0, 1)), (responses[2], slice(1, 4)), (responses[5], slice(5, 6))):
        assert response.error is None
        for name in names:
            np.testing.assert_allclose(response.outputs[name], expected[name][rows], atol=1e-5)
            assert response.outputs[name].dtype == np.float32
    for i, fragment in ((1, "NaN"), (3, "[batch, 12, 608]"), (4, "no input 'ecg'")):
        assert responses[i].outputs == {}
        assert responses[i].error.code == "INVALID_ARG" and fragment in responses[i].error.message


def test_backend_refuses_to_load_against_another_card(repository, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "hfrisk"
    shutil.copytree(repository, broken)
    ModelCard(input=InputSpec(length_samples=640)).save(broken / "1")
    config = parse((broken / "config.pbtxt").read_text())
    config.input[0].dims[:] = [12, 640]
    from google.protobuf.json_format import MessageToDict

    model = backend_model.TritonPythonModel()
    with pytest.raises(ValueError, match="does not match"):
        model.initialize({
            "model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True)),
            "model_repository": str(broken), "model_version": "1", "model_name": "hfrisk",
        })
