"""Screening through the real Triton server gives the in-process scores (the served model is the same)."""

import time

import pytest
from typer.testing import CliRunner

from hfrisk.cli import app
from hfrisk.serving.scorers import OnnxScorer, SyncTritonScorer
from hfrisk.screening import screen

pytestmark = pytest.mark.integration


def test_screening_through_triton_matches_in_process(triton_server, exported_model_dir, ecg_data_dir, tmp_path):
    folder = ecg_data_dir / "ptbxl" / "records500" / "00000"
    local = OnnxScorer.from_model_dir(exported_model_dir, threads=1)
    served = SyncTritonScorer(triton_server.grpc_url, local.card)
    try:
        via_triton = screen([folder], served, tmp_path / "triton", threshold=0.0, batch_size=7, progress=False)
    finally:
        served.close()
    in_process = screen([folder], local, tmp_path / "local", threshold=0.0, batch_size=7, progress=False)
    assert len(via_triton) == 24 and (via_triton["status"] == "scored").sum() >= 20
    merged = via_triton.merge(in_process, on="record", suffixes=("_triton", "_local"))
    scored = merged[merged["status_triton"] == "scored"]
    assert (abs(scored["log_risk_triton"] - scored["log_risk_local"]) <= 1e-4).all()
    assert (merged["status_triton"] == merged["status_local"]).all()


def test_cli_screens_through_triton_and_writes_a_summary(triton_server, exported_model_dir, ecg_data_dir, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "screen", str(ecg_data_dir / "ptbxl" / "records500" / "00000"), "--triton-url", triton_server.grpc_url,
        "--model", str(exported_model_dir), "--out", str(out), "--threshold", "0",
    ])
    assert result.exit_code == 0, result.output
    assert (out / "summary.png").stat().st_size > 10_000
    assert (out / "scores.parquet").is_file()
    started = time.monotonic()
    refused = CliRunner().invoke(app, ["screen", str(ecg_data_dir), "--triton-url", "127.0.0.1:1",
                                       "--model", str(exported_model_dir), "--out", str(tmp_path / "none"),
                                       "--wait-for-triton-s", "1"])
    assert refused.exit_code == 2 and "not ready after 1 s" in refused.output
    assert time.monotonic() - started < 20  # gave up after its second, not the default 30
