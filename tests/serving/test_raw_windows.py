"""The raw-window model ``<model>_raw`` without a server: its config and folder, its contract
checks, and its computation in process against the worker's (prepare + ONNX Runtime).

What Triton serves is tested on a real tritonserver in
tests/integration/test_server_side_preprocessing.py.
"""

from __future__ import annotations

import asyncio
import filecmp
import re
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from hfrisk.core.config import Settings
from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.serving import raw_backend_model
from hfrisk.serving.client import InferenceError
from hfrisk.serving.raw_backend_model import choose_device, request_problem
from hfrisk.serving.raw_windows import (
    RawWindowModel,
    declaration_problems,
    preparation_of,
    raw_model_name,
    render_raw_config,
    write_raw_model,
)
from hfrisk.stream.scoring.batch import score_windows
from hfrisk.stream.scoring.on_server import ServerSideScorer, conform_window

ROOT = Path(__file__).resolve().parents[2]
PTBXL = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500" / "00000"
CARD = default_card()


@pytest.fixture(scope="module")
def ecgs():
    return [read_ecg(p.with_suffix("")) for p in sorted(PTBXL.glob("*_hr.hea"))[:8]]


@pytest.fixture(scope="module")
def model(exported_model_dir):
    return RawWindowModel(CARD, exported_model_dir / "model.onnx", backend=ArrayBackend("torch", "cpu"),
                          intra_op_threads=1)


def test_config_declares_server_side_preprocessing_of_the_cards_network():
    cpu, gpu = render_raw_config(CARD, "hfrisk"), render_raw_config(CARD, "hfrisk", kind="gpu")
    assert 'name: "hfrisk_raw"' in cpu and "KIND_CPU" in cpu and "KIND_GPU" in gpu
    for text in (cpu, gpu):
        assert 'key: "preprocessing"\n  value: { string_value: "server" }' in text
        assert f'string_value: "{CARD.name} {CARD.version}"' in text
        assert 'name: "ecg_raw"\n    data_type: TYPE_FP32\n    dims: [ 12, -1 ]' in text
        for output in CARD.outputs:
            assert f'name: "{output.name}"' in text
    assert 'key: "device"\n  value: { string_value: "cuda" }' in gpu
    assert 'key: "fallback_to_cpu"\n  value: { string_value: "false" }' in gpu


def test_written_folder_holds_no_weights_and_a_byte_copy_of_the_backend(tmp_path):
    (tmp_path / "hfrisk").mkdir()
    CARD.save(tmp_path / "hfrisk" / CARD_FILENAME)
    folder = write_raw_model(tmp_path)
    assert folder.name == raw_model_name("hfrisk")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "1/model.py", "config.pbtxt", "configs/gpu.pbtxt"]
    assert filecmp.cmp(folder / "1" / "model.py", raw_backend_model.__file__, shallow=False)


def test_the_committed_raw_model_is_what_the_writer_makes_of_the_bundled_card():
    bundled = ROOT / "triton_models"
    if not (bundled / "hfrisk" / CARD_FILENAME).is_file():
        pytest.skip("no bundled model")
    card = load_card(bundled / "hfrisk" / CARD_FILENAME)
    raw = bundled / "hfrisk_raw"
    assert filecmp.cmp(raw / "1" / "model.py", raw_backend_model.__file__, shallow=False)
    for name, kind in (("config.pbtxt", "cpu"), ("configs/gpu.pbtxt", "gpu")):
        text = (raw / name).read_text()
        # Serving options (batch size, threads) are the exporter's choice; tensors and declaration are the card's.
        batch = int(re.search(r"max_batch_size: (\d+)", text)[1])
        threads = re.search(r'key: "torch_threads"\n  value: \{ string_value: "(\d+)" \}', text)[1]
        ort_threads = re.search(r'key: "intra_op_threads"\n  value: \{ string_value: "(\d+)" \}', text)[1]
        assert text == render_raw_config(card, "hfrisk", kind=kind, max_batch_size=batch, torch_threads=int(threads),
                                         intra_op_threads=int(ort_threads)), name


def test_the_exported_card_declares_both_places_preprocessing_may_run(tmp_path, exported_model_dir):
    from hfrisk.model.contract.card import ServingSpec
    from hfrisk.serving.model_repository import write_model_repository

    assert CARD.serving.preprocess_on == ("worker",) and CARD.serving.raw_model is None  # a card alone: worker only
    model_dir = write_model_repository(exported_model_dir / "model.onnx", CARD, tmp_path)
    for folder in (model_dir, model_dir / "1"):
        assert load_card(folder / CARD_FILENAME).serving == ServingSpec(preprocess_on=("worker", "server"),
                                                                        raw_model="hfrisk_raw")
    only_model = write_model_repository(exported_model_dir / "model.onnx", CARD, tmp_path / "plain", raw_model=False)
    assert load_card(only_model / CARD_FILENAME).serving.preprocess_on == ("worker",)
    with pytest.raises(ValidationError, match="raw model"):
        ServingSpec(preprocess_on=("worker", "server"))


def test_a_raw_model_for_another_card_or_network_is_named():
    params = {"preprocessing": {"string_value": "server"}, "base_model": {"string_value": "hfrisk"},
              "card": {"string_value": f"{CARD.name} {CARD.version}"}}
    assert declaration_problems(params, CARD, "hfrisk") == []
    other = params | {"card": {"string_value": "someone-else 9"}}
    assert declaration_problems(other, CARD, "hfrisk") == [f"card is 'someone-else 9', expected '{CARD.name} {CARD.version}'"]
    assert len(declaration_problems({}, CARD, "hfrisk")) == 3


def test_device_and_request_checks():
    assert choose_device("auto", "KIND_GPU", 2, True, True) == "cuda:2"
    assert choose_device("auto", "KIND_CPU", 0, True, True) == "cuda:0"
    assert choose_device("auto", "KIND_GPU", 0, False, True) == "cpu"
    assert choose_device("cpu", "KIND_GPU", 0, True, False) == "cpu"
    with pytest.raises(RuntimeError, match="no GPU"):
        choose_device("cuda", "KIND_GPU", 0, False, False)
    ok = np.zeros((2, 12, 100), np.float32), np.ones((2, 12), bool), np.ones((2, 1), np.float32)
    assert request_problem(*ok, 12) is None
    assert "float32" in request_problem(ok[0].astype(np.float64), ok[1], ok[2], 12)
    assert "lead_present" in request_problem(ok[0], ok[1][:1], ok[2], 12)


def test_in_process_the_raw_model_gives_the_workers_answers(model, ecgs, exported_model_dir):
    """Torch front end + network on raw windows == numpy front end (the worker's) + network."""
    import onnxruntime as ort

    from hfrisk.model.frontend.preprocessing import prepare_windows

    conformed = [conform_window(e, CARD) for e in ecgs]
    out = model.score(np.stack([c.samples for c in conformed]), np.stack([c.mask for c in conformed]),
                      np.array([c.fs_hz for c in conformed]))
    reference = prepare_windows([(e, 0.0) for e in ecgs], CARD, backend=ArrayBackend("numpy"))
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["log_risk"], {CARD.input.name: np.stack([r.x for r in reference])})[0]
    for i, ref in enumerate(reference):
        got = preparation_of(out, i)
        assert got.quality.reasons == ref.quality.reasons and got.quality.fit_to_score == ref.quality.fit_to_score
        assert (got.n_beats_detected, got.n_beats_used) == (ref.n_beats_detected, ref.n_beats_used)
        if ref.quality.fit_to_score:
            assert out["log_risk"][i, 0] == pytest.approx(expected[i, 0], abs=1e-4)
        else:
            assert np.isnan(out["log_risk"][i, 0])


def test_a_window_the_server_cannot_take_is_refused_with_the_cards_reason(model, ecgs):
    samples = np.stack([conform_window(ecgs[0], CARD).samples] * 3)
    present = np.ones((3, 12), bool)
    present[2] = False
    out = model.score(samples, present, np.array([500.0, 2 * CARD.window.max_fs_hz, 500.0]))
    assert preparation_of(out, 0).quality is not None
    assert preparation_of(out, 1)[0] == "bad_sampling_rate"
    assert preparation_of(out, 2)[0] == "missing_leads"


class InProcessRawClient:
    """RawRiskClient's surface over :class:`RawWindowModel`; a request holding a window whose first
    sample is 1234 mV is rejected, as Triton rejects a malformed request."""

    model_version = "3"
    model_name = "hfrisk_raw"
    url = "in-process"

    def __init__(self, model, errors=()):
        self.model = model
        self.errors = list(errors)
        self.calls: list[int] = []

    async def infer_raw(self, samples, present, fs_hz):
        self.calls.append(len(samples))
        if self.errors:
            raise self.errors.pop(0)
        if (samples[:, 0, 0] == 1234.0).any():
            raise InferenceError("bad request", "StatusCode.INVALID_ARGUMENT")
        return self.model.score(samples, present, fs_hz)

    async def close(self):
        pass


def test_the_worker_sends_only_what_its_share_accepts_and_narrows_a_rejection(model, ecgs):
    short = ecgs[0].slice_s(0.0, 2.0)
    marked = ECG(samples=np.where(np.arange(5000) == 0, 1234.0, ecgs[1].samples), fs_hz=500.0,
                 lead_names=ecgs[1].lead_names)
    from hfrisk.serving.client import ServerNotReady

    client = InProcessRawClient(model, errors=[ServerNotReady("restarting")])

    async def no_sleep(_s):
        return None

    scorer = ServerSideScorer(client, CARD, sleep=no_sleep, check_declaration=False)
    batch = [ecgs[2], short, marked, ecgs[3]]
    scores = asyncio.run(score_windows(batch, None, scorer))
    assert scores[1].failure.reason == "too_short" and scores[1].prepared is None  # never sent
    assert client.calls[:2] == [3, 3]  # the outage, then the batch
    assert scores[0].scored and scores[3].scored
    assert scores[2].failure.reason == "inference_rejected"
    assert scorer.outages == 1 and scorer.model_version == "3"


def test_preprocess_on_is_a_setting_with_an_environment_override(monkeypatch):
    assert Settings().stream.preprocess_on == "worker"
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "server")
    assert Settings().stream.preprocess_on == "server"
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "gpu")
    with pytest.raises(ValidationError):
        Settings()


def test_a_triton_started_for_server_mode_also_loads_the_raw_model(monkeypatch, tmp_path):
    from hfrisk.stack.process import ServiceNotInstalled
    from hfrisk.stack.triton_server import TritonServer

    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "server")
    try:
        server = TritonServer.from_settings(Settings(), fixed_ports=False, work_dir=tmp_path)
    except ServiceNotInstalled:
        pytest.skip("no tritonserver")
    assert "--load-model=hfrisk_raw" in server.extra_args
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "worker")
    assert "--load-model=hfrisk_raw" not in TritonServer.from_settings(Settings(), work_dir=tmp_path).extra_args


def test_the_models_a_stack_loads_follow_where_preprocessing_runs(monkeypatch):
    """What ``hfrisk up``, ``hfrisk serve`` and the benchmarks' stacks pass to tritonserver."""
    from hfrisk.stack.triton_server import models_to_load

    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "server")
    assert models_to_load(Settings()) == ["--load-model=hfrisk_raw"]
    assert models_to_load(Settings(), model_name="ward_model") == ["--load-model=ward_model_raw"]
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "worker")
    assert models_to_load(Settings()) == []
