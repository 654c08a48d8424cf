"""`hfrisk serve`: the local Triton on loopback, ready for clients, stopped cleanly by SIGTERM."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hfrisk.core.retries import wait_until
from hfrisk.model.contract.card import default_card
from hfrisk.serving.client import SyncRiskClient
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.stack.triton_server import find_triton
from hfrisk.stack.process import ServiceNotInstalled
from hfrisk.testing import served_card

from tests.integration.service_required import service_unavailable

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (tritonserver and its backend stubs name the repository)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_serve_runs_until_sigterm_and_leaves_nothing(exported_model_dir, tmp_path):
    try:
        find_triton()
    except ServiceNotInstalled as err:
        service_unavailable(f"tritonserver ({err})")
    repository = tmp_path / "repo"
    write_model_repository(exported_model_dir / "model.onnx", default_card(), repository, intra_op_threads=1)
    env = {**os.environ, "HFRISK_PATHS__STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfrisk.cli", "serve", "--model-repository", str(repository), "--free-ports"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline, grpc = time.monotonic() + 120, None
        lines = []
        while grpc is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            match = re.search(r"triton ready: grpc (127\.0\.0\.1:\d+)", line)
            grpc = match.group(1) if match else None
        assert grpc, "".join(lines[-20:])
        with SyncRiskClient(grpc, "hfrisk", card=served_card(repository)) as client:
            out = client.infer(np.zeros((3, 12, 608), dtype=np.float32))
        assert out["log_risk"].shape == (3, 1)
        assert _processes_mentioning(str(repository)), "the server should be running now"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        # Triton's backend stubs may exit a moment after `hfrisk serve` does: poll, do not sleep.
        wait_until(lambda: not _processes_mentioning(str(repository)), timeout_s=5.0,
                   what="tritonserver or its stubs outlived `hfrisk serve`")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
