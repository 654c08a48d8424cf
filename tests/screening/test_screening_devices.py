"""Screening with the network or the front end on a GPU: where each runs, and the refusals when
the machine cannot. This machine has no GPU and the CPU build of ONNX Runtime, so the one test
that scores on CUDA runs only where onnxruntime-gpu sees a GPU; the others make ONNX Runtime report
what such a build reports."""

import os
import signal

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from typer.testing import CliRunner

from hfrisk.cli import app
from hfrisk.core.config import FrontendSettings, ScreeningSettings
from hfrisk.screening import pool_start_method, screen
from hfrisk.serving.scorers import DeviceUnavailable, OnnxScorer, onnx_providers
from tests.screening.conftest import note_scoring_processes

CUDA = "CUDAExecutionProvider"
HAS_CUDA = CUDA in onnxruntime.get_available_providers()


@pytest.fixture()
def cuda_reported(monkeypatch):
    """ONNX Runtime says it has the CUDA provider and that each session runs on it, while
    computing on the CPU: what an onnxruntime-gpu build with a working GPU reports."""
    real_session = onnxruntime.InferenceSession

    class ReportsCuda(real_session):
        def get_providers(self):
            return [CUDA, *super().get_providers()]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", ReportsCuda)


@pytest.mark.parametrize("device, providers", [
    ("cpu", ["CPUExecutionProvider"]),
    ("cuda", [(CUDA, {"device_id": 0}), "CPUExecutionProvider"]),
    ("cuda:3", [(CUDA, {"device_id": 3}), "CPUExecutionProvider"]),
])
def test_each_device_names_its_providers(device, providers):
    assert onnx_providers(device) == providers


@pytest.mark.parametrize("device", ["gpu", "cuda:", "CUDA", "cuda:x", "cpu:0"])
def test_a_device_that_is_not_cpu_or_cuda_is_refused(device):
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
        onnx_providers(device)
    with pytest.raises(ValueError):
        ScreeningSettings(device=device)


def test_the_screening_device_comes_from_the_environment(monkeypatch):
    from hfrisk.core.config import Settings

    monkeypatch.setenv("HFRISK_SCREENING__DEVICE", "cuda:1")
    assert Settings().screening.device == "cuda:1"
    assert ScreeningSettings().device == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_the_cpu_build_of_onnx_runtime_refuses_a_gpu(exported_model_dir):
    with pytest.raises(DeviceUnavailable, match="install onnxruntime-gpu"):
        OnnxScorer.from_model_dir(exported_model_dir, device="cuda")


def test_a_gpu_session_that_fell_back_to_the_cpu_is_refused(exported_model_dir, monkeypatch):
    # onnxruntime-gpu without the CUDA or cuDNN libraries it needs warns and runs on the CPU.
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", _SessionWithoutCuda)
    with pytest.raises(DeviceUnavailable, match=r"made the session with \['CPUExecutionProvider'\] only"):
        OnnxScorer.from_model_dir(exported_model_dir, device="cuda:1")
    assert _SessionWithoutCuda.asked_for[-1] == [(CUDA, {"device_id": 1}), "CPUExecutionProvider"]


class _SessionWithoutCuda(onnxruntime.InferenceSession):
    asked_for: list = []

    def __init__(self, path, options=None, providers=None, **kwargs):
        type(self).asked_for.append(providers)
        super().__init__(path, options, providers=["CPUExecutionProvider"], **kwargs)


def test_a_scorer_on_a_gpu_replicates_onto_that_gpu_and_its_pool_is_spawned(
        ward, tmp_path, scorer, exported_model_dir, cuda_reported, monkeypatch):
    gpu = OnnxScorer.from_model_dir(exported_model_dir, threads=1, replicable=True, device="cuda:1")
    assert gpu._optimized_copy is None  # a graph optimised for the CUDA provider is each replica's own
    replica = gpu.replica()()
    assert replica.device == "cuda:1" and replica.session.get_providers()[0] == CUDA
    # The pool's processes are spawned: forked ones could not use CUDA. Forked here, since the
    # GPU is only reported in this process; this process scores, on the reported GPU.
    asked = []
    monkeypatch.setattr("hfrisk.screening.pool_start_method", lambda **kw: asked.append(kw) or "fork")
    scored_in = note_scoring_processes(monkeypatch, tmp_path / "scored-in")
    frame = screen([ward], gpu, tmp_path / "gpu", threshold=0.0, workers=2, chunk_size=2, progress=False,
                   score_in_pool=False)
    assert asked == [{"scorer_on_gpu": True}]
    assert scored_in() and set(scored_in()) == {str(os.getpid())}
    reference = screen([ward], scorer, tmp_path / "cpu", threshold=0.0, workers=0, progress=False)
    pd.testing.assert_frame_equal(frame, reference)


@pytest.mark.parametrize("frontend, method", [
    (FrontendSettings(), "fork"),
    (FrontendSettings(array_backend="torch"), "fork"),
    (FrontendSettings(array_backend="torch", device="cpu"), "fork"),
    (FrontendSettings(array_backend="torch", device="cuda"), "spawn"),
    (FrontendSettings(array_backend="torch", device="cuda:1"), "spawn"),
    (FrontendSettings(array_backend="cupy"), "spawn"),
])
def test_a_front_end_on_a_gpu_makes_the_pool_spawn(frontend, method):
    # A forked child cannot use CUDA once its parent has: a scorer on the GPU has, by then.
    assert pool_start_method(frontend) == method
    assert pool_start_method(frontend, scorer_on_gpu=True) == "spawn"


_TORCH_FIRST = """
import sys, tempfile
from pathlib import Path
from hfrisk.model.contract.card import load_card
from hfrisk.model.frontend.preprocessing import prepare_windows
from hfrisk.model.readers.dispatch import read_ecg, record_paths
from hfrisk.screening import screen
from hfrisk.serving.scorers import OnnxScorer, find_model_version
records = sys.argv[1]
version = find_model_version(Path(sys.argv[2]))
card = load_card(version / "model_card.json")
prepare_windows([(read_ecg(p), 0.0) for p in list(record_paths([records]))[:8]], card)
scorer = OnnxScorer(version / "model.onnx", card, threads=1, replicable=True)
with tempfile.TemporaryDirectory() as out:
    print(len(screen([records], scorer, out, threshold=0.0, workers=2, chunk_size=4, progress=False)))
"""


def test_a_forked_pool_on_torchs_cpu_screens_after_its_parent_ran_the_front_end(tmp_path):
    """A process that has run the front end on torch's CPU (its thread pool started) and then
    screens forks its pool: each child runs torch on one thread (one_blas_thread) and so never
    waits on the parent's threads, which the fork left behind. Before, the children hung for good."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"HFRISK_FRONTEND__ARRAY_BACKEND": "torch", "HFRISK_FRONTEND__DEVICE": "cpu",
                        "OMP_NUM_THREADS": "2"}
    run = subprocess.Popen([sys.executable, "-c", _TORCH_FIRST, str(root / "tests/data/ecg/ptbxl/records500"),
                            str(root / "triton_models")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = run.communicate(timeout=120)  # ~10 s here; a hung pool never ends
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)  # the pool's processes with it
        run.communicate()
        pytest.fail("screening hung: its forked pool never finished")
    assert run.returncode == 0, err[-3000:]
    assert out.split()[-1] == "24"


def test_a_spawned_pool_screens_as_a_forked_one(ward, tmp_path, scorer, monkeypatch):
    forked = screen([ward], scorer, tmp_path / "forked", threshold=0.0, workers=2, chunk_size=2, progress=False,
                    score_in_pool=False)
    monkeypatch.setattr("hfrisk.screening.pool_start_method", lambda **_: "spawn")
    spawned = screen([ward], scorer, tmp_path / "spawned", threshold=0.0, workers=2, chunk_size=2, progress=False,
                     score_in_pool=True)
    pd.testing.assert_frame_equal(spawned, forked)


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU")
def test_the_network_on_a_gpu_scores_as_on_the_cpu(exported_model_dir, scorer):
    gpu = OnnxScorer.from_model_dir(exported_model_dir, device="cuda")
    x = np.random.default_rng(0).standard_normal((64, *scorer.card.input.shape[1:])).astype(np.float32)
    expected, got = scorer.score(x), gpu.score(x)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-4)


def test_cli_refuses_a_device_it_cannot_score_on(ward, tmp_path, exported_model_dir):
    runner = CliRunner()
    base = ["screen", str(ward), "--model", str(exported_model_dir), "--out", str(tmp_path / "out")]
    bad = runner.invoke(app, [*base, "--in-process", "--device", "gpu"])
    assert bad.exit_code == 2 and "cpu, cuda or cuda:N" in bad.output
    triton = runner.invoke(app, [*base, "--device", "cuda"])
    assert triton.exit_code == 2 and "--device applies to --in-process" in triton.output
    if not HAS_CUDA:
        missing = runner.invoke(app, [*base, "--in-process", "--device", "cuda"])
        assert missing.exit_code == 2 and "install onnxruntime-gpu" in " ".join(missing.output.split())
    assert not (tmp_path / "out" / "scores.csv").exists()
