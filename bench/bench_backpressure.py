"""Back-pressure and bad input at scale on the real local stack: the figures of docs/reliability-input.md.

    .venv/bin/python -m bench.bench_backpressure [--beds 24 96] [--bad-input]

Runs ``tests/integration/test_backpressure.py`` once per ward size (``HFRISK_BENCH_BACKPRESSURE_BEDS``;
each bed sends 60 s of 1-s PTB-XL chunks, all produced at once) and, with ``--bad-input``,
``tests/integration/test_bad_input_at_scale.py``, each as its own pytest session (so each starts its
own Kafka, Redis and Triton on loopback), and prints the figures line each test prints together with
the test verdict and the load average. The tests themselves assert the behaviour (lag grows and
drains, RSS under the derived bound, every window once, one dead letter per bad message); this script
only collects their numbers for the document.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_test(test: str, env: dict[str, str], marker: str) -> tuple[int, list[str]]:
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test]
    proc = subprocess.run(argv, cwd=ROOT, env=os.environ | env, capture_output=True, text=True)
    figures = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    verdict = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return proc.returncode, figures + [verdict]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, nargs="+", default=[24], help="ward sizes of the bursts")
    parser.add_argument("--bad-input", action="store_true", help="also run the bad-input-at-scale test")
    args = parser.parse_args(argv)
    status = 0
    for beds in args.beds:
        rc, lines = run_test("tests/integration/test_backpressure.py",
                             {"HFRISK_BENCH_BACKPRESSURE_BEDS": str(beds), "CI": "true"}, "backpressure:")
        status |= rc
        print(f"## {beds} beds (load average {os.getloadavg()[0]:.2f})", *lines, sep="\n", flush=True)
    if args.bad_input:
        rc, lines = run_test("tests/integration/test_bad_input_at_scale.py", {"CI": "true"}, "bad input at scale:")
        status |= rc
        print(f"## bad input (load average {os.getloadavg()[0]:.2f})", *lines, sep="\n", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
