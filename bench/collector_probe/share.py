"""The collector's share of each worker's CPU while it was busy, from the probe's files.

    .venv/bin/python bench/collector_probe/share.py [--skip-s 10] /tmp/gc/gc-*.txt

Busy: the 2-s intervals in which the worker used at least a tenth of a core, from ``--skip-s``
after the probe's first line on (start-up, its collections and the freeze's, and idle waits between
runs left out). Prints, per file and in all, the CPU seconds of the young, middle and
full collections and their sum as a share of the worker's CPU over those intervals.
"""

from __future__ import annotations

import ast
import sys


def busy_share(lines: list[str], skip_s: float = 10.0) -> tuple[list[float], float]:
    rows = []
    for line in lines:
        wall, rest = line.split(" ", 1)
        counts_end = rest.index("]") + 1
        times_end = rest.index("]", counts_end) + 1
        rows.append((float(wall), ast.literal_eval(rest[counts_end:times_end].strip()), float(rest[times_end:])))
    gc_s, cpu_s = [0.0, 0.0, 0.0], 0.0
    for (w0, g0, c0), (w1, g1, c1) in zip(rows, rows[1:]):
        if w0 - rows[0][0] >= skip_s and (c1 - c0) / (w1 - w0) >= 0.1:
            cpu_s += c1 - c0
            gc_s = [total + b - a for total, a, b in zip(gc_s, g0, g1)]
    return gc_s, cpu_s


def main(argv: list[str]) -> None:
    skip_s = 10.0
    if argv[:1] == ["--skip-s"]:
        skip_s, argv = float(argv[1]), argv[2:]
    paths = argv
    all_gc, all_cpu = [0.0, 0.0, 0.0], 0.0
    for path in paths:
        with open(path) as f:
            gc_s, cpu_s = busy_share([line for line in f if line.strip()], skip_s)
        all_gc, all_cpu = [a + b for a, b in zip(all_gc, gc_s)], all_cpu + cpu_s
        print(f"{path}: collections {[round(s, 3) for s in gc_s]} s of {cpu_s:.2f} s CPU = "
              f"{100 * sum(gc_s) / cpu_s:.1f} %")
    if all_cpu:
        print(f"all: collections {[round(s, 3) for s in all_gc]} s of {all_cpu:.2f} s CPU = "
              f"{100 * sum(all_gc) / all_cpu:.1f} %")


if __name__ == "__main__":
    main(sys.argv[1:])
