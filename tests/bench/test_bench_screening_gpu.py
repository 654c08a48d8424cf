"""The GPU host's screening measurement (bench/bench_screening_gpu.py), run here on torch's CPU: the
code a lent GPU runs in ``scripts/gpu_check.sh run``, so that its few minutes are not spent on bugs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.bench_screening_gpu import TorchNetworkScorer, markdown, steady_rate
from hfrisk.model.contract.card import load_card
from hfrisk.serving.scorers import OnnxScorer, find_model_version

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = find_model_version(ROOT / "triton_models")


def test_the_run_screens_every_recording_and_times_each_stage(tmp_path):
    # A process of its own: the run sets the front end's settings in its environment, and torch's
    # thread count in its pool.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFRISK_FRONTEND__")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_screening_gpu", "--device", "cpu", "--network", "torch",
         "--records", "60", "--workers", "2", "--chunk-size", "8", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "screening-gpu.json").read_text())
    run, stages = result["run"], result["stages"]
    # 60 recordings from 24 sources: three copies, the last one cut to 12.
    assert run["records"] == 60 and sum(run["statuses"].values()) == 60
    assert run["ecg_per_s"] > 0 and run["pool_cpu_ms_per_ecg"] > 0
    assert result["pool_start"] == "fork" and result["network"].startswith("torch eager")
    for key in ("read_cpu_ms", "frontend_wall_ms", "frontend_cpu_ms", "network_wall_ms"):
        assert stages[key] > 0
    assert result["cores_bound_ecg_per_s"] == pytest.approx(2 * 1e3 / stages["host_cpu_ms"])
    page = (tmp_path / "screening-gpu.md").read_text()
    assert "**Not a GPU host**" in page and "| reading the WFDB files |" in page


def test_the_steady_rate_is_the_slope_between_a_tenth_and_nine_tenths():
    samples = [(0.5, 50), (1.0, 100), (2.0, 300), (3.0, 500), (4.0, 700), (5.0, 900), (5.2, 1000)]
    assert steady_rate(samples, 1000) == pytest.approx((900 - 100) / (5.0 - 1.0))
    # One flush inside the span says nothing about a rate.
    assert steady_rate([(0.5, 50), (2.0, 500), (3.0, 1000)], 1000) is None


def test_the_torch_network_and_its_replica_give_the_card_outputs_alike():
    card = load_card(SHIPPED / "model_card.json")
    scorer = TorchNetworkScorer(card, "cpu")
    x = np.random.default_rng(0).standard_normal((3, *card.input.shape[1:])).astype(np.float32)
    out, again = scorer.score(x), scorer.replica()().score(x)
    assert list(out) == [o.name for o in card.outputs]
    reference = OnnxScorer(SHIPPED / "model.onnx", card, threads=1).score(x)
    for name, values in out.items():
        assert values.shape == reference[name].shape  # the shipped graph's shapes (its weights differ)
        np.testing.assert_array_equal(values, again[name])


@pytest.mark.parametrize("backend, one", [("torch", True), ("numpy", False)])
def test_a_pool_process_on_torch_runs_torch_on_one_thread(backend, one):
    code = ("import torch; before = torch.get_num_threads();"
            "from hfrisk.model.frontend.arrays import one_blas_thread; one_blas_thread();"
            "print(before, torch.get_num_threads())")
    env = os.environ | {"HFRISK_FRONTEND__ARRAY_BACKEND": backend}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    before, after = map(int, done.stdout.split())
    assert after == (1 if one else before)


def test_a_gpu_hosts_page_gives_the_verdict_against_the_goal():
    # The page of a GPU host is made only there: its text is checked here, on made-up figures.
    stages = {"read_cpu_ms": 0.3, "read_wall_ms": 0.3, "frontend_wall_ms": 0.05, "frontend_cpu_ms": 0.2,
              "network_wall_ms": 0.01, "network_cpu_ms": 0.02, "windows_fit": 256, "chunk_size": 256,
              "host_cpu_ms": 0.52}
    run = {"records": 200_000, "workers": 16, "chunk_size": 256, "wall_s": 12.0, "ecg_per_s": 16_667.0,
           "steady_ecg_per_s": 21_500.0, "pool_cpu_ms_per_ecg": 0.7, "caller_cpu_ms_per_ecg": 0.03,
           "cores_busy": 14.2, "statuses": {"scored": 200_000}, "samples": []}
    result = {"command": "x", "when": "now", "machine": {"cpus": 16, "processor": "x86_64", "load_before": [0.1],
                                                         "load_after": [9.0]},
              "versions": {"torch": "2", "onnxruntime": "1", "python": "3.12"}, "device": "cuda",
              "device_name": "NVIDIA H100", "network": "torch eager fp32 on cuda", "source": "tests/data",
              "source_records": 24, "workers": 16, "pool_start": "spawn", "stages": stages,
              "cores_bound_ecg_per_s": 16 * 1e3 / 0.52, "run": run, "goal_ecg_per_s": 20_000.0}
    page = markdown(result)
    assert "**ECG/s, steady** (records.csv between 10% and 90% of the recordings) | **21,500** |" in page
    assert "21,500 ECG/s steady, met** on this 16-core host" in page
    assert "measured here: 0.200, an upper bound" in page and "(spawned)" in page
    run["steady_ecg_per_s"] = None
    assert "16,667 ECG/s over the whole call, NOT met**" in markdown(result)
