"""bench/collector_probe: the probe records a worker's collections, and share.py adds up their CPU
over the busy intervals after start-up only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.collector_probe.share import busy_share

PROBE = Path(__file__).resolve().parents[2] / "bench" / "collector_probe"


def test_a_worker_process_records_its_collections(tmp_path):
    # The probe only wakes in a stream worker: its command line names the worker's module.
    program = "import gc, time\nfor _ in range(3): gc.collect()\ntime.sleep(2.5)\n"
    env = {**os.environ, "PYTHONPATH": str(PROBE), "BENCH_GC_PROBE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", program, "hfrisk.stream.worker.command"], env=env, check=True, timeout=60)
    subprocess.run([sys.executable, "-c", program, "something-else"], env=env, check=True, timeout=60)
    files = list(tmp_path.glob("gc-*.txt"))
    assert len(files) == 1
    wall, rest = files[0].read_text().splitlines()[0].split(" ", 1)
    counts = [int(n) for n in rest[rest.index("[") + 1 : rest.index("]")].split(",")]
    assert counts[2] >= 3  # the three full collections (and any the interpreter made itself)


def test_share_counts_busy_intervals_after_startup_only():
    lines = [
        "0.0 [0, 0, 0] [0.0, 0.0, 0.0] 0.0",
        "2.0 [10, 1, 1] [0.01, 0.01, 0.1] 1.0",  # start-up: left out
        "12.0 [10, 1, 1] [0.01, 0.01, 0.1] 1.2",  # idle (0.02 of a core): left out
        "14.0 [20, 2, 2] [0.02, 0.02, 0.15] 2.2",  # busy: 1 s of CPU, 0.06 s collecting
        "16.0 [30, 3, 2] [0.03, 0.03, 0.15] 3.2",  # busy: 1 s of CPU, 0.02 s collecting
    ]
    gc_s, cpu_s = busy_share(lines, skip_s=10.0)
    assert abs(cpu_s - 2.0) < 1e-9
    assert [round(s, 3) for s in gc_s] == [0.02, 0.02, 0.05]
