"""The README's main job: `hfrisk up` brings up the real stack, scores a ward, `hfrisk down` cleans up."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from hfrisk.services.process import ServiceNotInstalled
from hfrisk.services.prometheus import find_prometheus
from hfrisk.services.redis_server import find_redis_server

from .service_required import service_unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _hfrisk(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfrisk.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_up_scores_a_ward_and_down_leaves_nothing_running(tmp_path, ecg_data_dir):
    try:
        find_redis_server(), find_prometheus()
    except ServiceNotInstalled as err:
        service_unavailable(str(err))
    records = [ecg_data_dir / "ptbxl" / "records500" / "00000" / f"{i:05d}_hr.hea" for i in range(1, 5)]
    env = {**os.environ, "HFRISK_PATHS__STATE_DIR": str(tmp_path), "HFRISK_LOG__LEVEL": "WARNING"}
    up = _hfrisk("up", *map(str, records), "--beds", "2", "--fast", "--view-s", "150", env=env, timeout=400)
    stack = json.loads((tmp_path / "stack" / "stack.json").read_text())
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "flagged patients:" in up.stdout
        assert set(stack["processes"]) >= {"redis", "kafka", "triton", "worker-0", "prometheus", "replay"}
        # Two 10-s recordings per bed, 10-s windows every 5 s: windows at 0, 5 and 10 s per bed.
        client = redis.Redis.from_url(stack["urls"]["redis"])
        assert {m.decode() for m in client.zrange("hfrisk:ranking", 0, -1)} == {"bed-0", "bed-1"}
        for bed in ("bed-0", "bed-1"):
            scored = client.zcard(f"hfrisk:trend:{bed}")
            low_quality = client.zcard(f"hfrisk:quality:{bed}")
            assert scored + low_quality == 3, (bed, scored, low_quality)
            assert client.hget(f"hfrisk:latest:{bed}", "model_version") is not None
        client.close()
    finally:
        down = _hfrisk("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(_group_alive(pgid) for pgid in stack["processes"].values())
    assert not (tmp_path / "stack" / "stack.json").exists()
