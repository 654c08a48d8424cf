"""Screening's pool processes with the C library's allocator defaults against keeping what they free
(``screening.keep_freed_mb``), alternating, each run in a fresh process as ``hfrisk screen`` is.

    .venv/bin/python -m bench.bench_screening_allocator [--records DIR] [--rounds 4] [--out docs/bench]

A pool process reads and preprocesses eight recordings, hands back their model inputs and frees
the rest before the next eight. With glibc's defaults blocks of this size go back to the kernel
when freed (mmapped, or trimmed off the heap) and the next chunk faults every page in again
(``tests/screening/test_screening.py`` counts the faults). Each run screens the same recordings
in-process with two pool processes, the way ``bench_screening`` does, and reports ECG/s and the CPU
of this process and of the pool per recording; medians over ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from bench.trees import child_json

SETTINGS = (0, 256)  # MB kept: 0 is the C library's defaults


def run_child(folder: Path, keep_mb: int, workers: int) -> dict:
    import resource
    import tempfile

    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # as `hfrisk screen` sets it
    from bench.bench_screening import SHIPPED_MODEL
    from hfrisk.cli.screening import _in_process_scorer
    from hfrisk.model.readers.dispatch import iter_records
    from hfrisk.screening import screen, screening_threads

    def cpu(who: int) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    scorer = _in_process_scorer(SHIPPED_MODEL, "hfrisk", untrained=False, threads=screening_threads(workers))
    n = len(list(iter_records([folder])))
    with tempfile.TemporaryDirectory() as out:
        own, pool, start = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        screen([folder], scorer, out, threshold=0.0, batch_size=32, resume=False, progress=False, workers=workers,
               keep_freed_mb=keep_mb)
        wall = time.perf_counter() - start
        own, pool = cpu(resource.RUSAGE_SELF) - own, cpu(resource.RUSAGE_CHILDREN) - pool
    return {"records": n, "ecg_per_s": n / wall, "process_ms_per_ecg": 1e3 * own / n, "pool_ms_per_ecg": 1e3 * pool / n}


def child(folder: Path, keep_mb: int, workers: int) -> dict:
    return child_json("bench.bench_screening_allocator",
                      ["--child", str(keep_mb), "--records", str(folder), "--workers", str(workers)])


def markdown(r: dict) -> str:
    rows = []
    for keep in SETTINGS:
        runs, med = r["runs"][str(keep)], r["median"][str(keep)]
        name = "C library defaults (0)" if keep == 0 else f"keep {keep} MB"
        each = ", ".join(f"{x['ecg_per_s']:.0f}" for x in runs)
        rows.append(f"| {name} | {each} | **{med['ecg_per_s']:.0f}** "
                    f"| {med['pool_ms_per_ecg']:.2f} | {med['process_ms_per_ecg']:.2f} |")
    a, b = r["median"]["0"], r["median"]["256"]
    return "\n".join([
        "# Screening pool processes: the allocator's defaults against keeping freed memory",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_before']} before, "
        f"{r['machine']['load_after']} after.  ",
        f"Each run: `screen()` of {r['records']} recordings ({r['records_dir']}) in-process with {r['workers']} pool "
        f"processes, in a fresh Python process; {r['rounds']} rounds, the two settings alternating; medians.",
        "",
        "| pool processes' allocator | ECG/s, each run | median ECG/s | pool CPU ms per ECG | screening process CPU ms per ECG |",
        "| --- | --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"Keeping what they free, the pool processes spend {a['pool_ms_per_ecg'] - b['pool_ms_per_ecg']:.2f} ms less "
        f"CPU a recording ({a['pool_ms_per_ecg']:.2f} -> {b['pool_ms_per_ecg']:.2f}) and screening runs at "
        f"{b['ecg_per_s']:.0f} against {a['ecg_per_s']:.0f} ECG/s ({b['ecg_per_s'] / a['ecg_per_s'] - 1:+.0%}). "
        "Since 2026-12-06 `hfrisk screen` keeps 256 MB (`HFRISK_SCREENING__KEEP_FREED_MB`; hfrisk/core/allocator.py).",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=None, help="default: PTB-XL records500 of the reference data")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bench.references.root import data_root

    folder = args.records or data_root() / "ptbxl" / "records500"
    if args.child is not None:
        print(json.dumps(run_child(folder, args.child, args.workers)))
        return
    load_before = load_average()
    runs: dict[str, list[dict]] = {str(k): [] for k in SETTINGS}
    for i in range(args.rounds):
        for keep in SETTINGS if i % 2 == 0 else SETTINGS[::-1]:
            run = child(folder, keep, args.workers)
            runs[str(keep)].append(run)
            print(f"[{i}] keep {keep:3d} MB: {run['ecg_per_s']:.0f} ECG/s, pool {run['pool_ms_per_ecg']:.2f} ms/ECG",
                  file=sys.stderr, flush=True)
    result = {
        "command": command_line("bench_screening_allocator", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(load_before),
        "records_dir": str(folder.relative_to(data_root())) if folder.is_relative_to(data_root()) else folder.name,
        "records": runs[str(SETTINGS[0])][0]["records"],
        "workers": args.workers,
        "rounds": args.rounds,
        "runs": runs,
        "median": {k: {m: statistics.median(r[m] for r in v) for m in v[0] if m != "records"} for k, v in runs.items()},
    }
    text = markdown(result)
    if args.out:
        save(args.out, "screening-allocator", result, text)
    print(text)


if __name__ == "__main__":
    main()
