"""What handing windows to the preprocessing processes costs: pickled through the pool's pipe, or
through shared memory (the worker's default since 2026-12-06); with ``--compare results``, what
handing their model inputs back costs, pickled or through the same shared memory; with
``--compare parts``, parts of 8 windows against parts of up to 32; with ``--compare budget``, a
backlog's batch (parts of up to 32) through the fixed 32 MB of shared memory of before or through
a budget sized for the batch (``shared_memory_for_batch``).

    .venv/bin/python -m bench.bench_pool_handoff [--data tests/data/ecg/ptbxl/records500]
        [--prep-workers 1] [--batch 32] [--batches 40] [--rounds 5] [--out docs/bench]

Real 10-s, 12-lead, 500-Hz windows (the replay's PTB-XL beds through the worker's assembler) go
through the worker's :class:`~hfrisk.stream.scoring.batch.Preprocessor` in batches of ``--batch``
(parts of at most 8), the real front end included, once with ``shared_mb=0`` (pickled) and once
with the default (shared memory), alternating, ``--rounds`` times. Per window: the worker
process's CPU (every thread: the event loop's copies, the pool's feeder and result threads), the
pool processes' CPU (the front end itself plus reading what they were sent), and wall time. The
model inputs of the two must be identical; the run stops if they are not. Written to
``<out>/pool-handoff.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np
import psutil

from bench.record import command_line, load_average, machine, save
from hfrisk.model.contract.card import default_card
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.scoring.batch import PrepareFailure, Preprocessor, shared_memory_for_batch
from hfrisk.stream.windowing import Window, WindowAssembler

# --compare: which Preprocessor settings alternate (the second of each is the worker's default).
COMPARISONS = {
    "handoff": {"pickled (shared_mb=0, before)": {"shared_mb": 0},
                "shared memory (shared_mb=32)": {"shared_mb": 32}},
    "allocator": {"allocator defaults (keep_freed_mb=0, before)": {"keep_freed_mb": 0},
                  "kept freed memory (keep_freed_mb=256)": {"keep_freed_mb": 256}},
    # Both as the worker runs its pool (windows through shared memory, freed memory kept).
    "results": {"model inputs pickled back (shared_results=False, before)": {"shared_results": False,
                                                                             "keep_freed_mb": 256},
                "model inputs through shared memory (shared_results=True)": {"shared_results": True,
                                                                            "keep_freed_mb": 256}},
    # Both as the worker runs its pool; a batch of --batch windows in parts of 8 or of up to 32.
    "parts": {"parts of 8 (part_windows=8, the default)": {"part_windows": 8, "keep_freed_mb": 256},
              "parts of up to 32 (part_windows=32)": {"part_windows": 32, "keep_freed_mb": 256}},
    # A backlog's batch as the worker drains it (parts of up to 32, every part in flight at once):
    # shared_mb None is the worker's default, sized for --batch windows.
    "budget": {"fixed 32 MB (prep_shared_mb=32, before)": {"shared_mb": 32, "part_windows": 32,
                                                            "keep_freed_mb": 256},
               "sized for the batch (prep_shared_mb unset)": {"shared_mb": None, "part_windows": 32,
                                                              "keep_freed_mb": 256}},
}
# Per comparison: the page's file name, its title and the head of its first column.
PAGES = {
    "handoff": ("pool-handoff", "Windows to the preprocessing processes: pickled or through shared memory",
                "hand-off"),
    "allocator": ("pool-allocator",
                  "The preprocessing processes' allocator: the C library's defaults or keeping freed memory",
                  "pool allocator"),
    "results": ("pool-results", "Model inputs back from the preprocessing processes: pickled or through shared "
                                "memory", "results"),
    "parts": ("pool-parts", "Parts of 8 windows or of up to 32 through the preprocessing processes", "parts"),
    "budget": ("pool-budget", "Shared memory for a backlog's batch: a fixed 32 MB or room for the whole batch",
               "shared-memory budget"),
}


def windows(data: Path, card, n: int) -> list:
    beds = max(4, n // 10)
    chunks = [c for _, c in feed([data], beds=beds, loop=True, duration_s=60, start_us=1_700_000_000_000_000,
                                  salt="handoff")]
    assembler = WindowAssembler(window_s=card.window.window_s, hop_s=5.0, reorder_s=5.0)
    out = [o.ecg for c in chunks for o in assembler.feed(c) if isinstance(o, Window)]
    if len(out) < n:
        raise SystemExit(f"only {len(out)} windows from {data}; fewer --batch x --batches")
    return out[:n]


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def pool_processes() -> list[psutil.Process]:
    """The pool's processes (not multiprocessing's resource tracker, also a child)."""
    return [p for p in psutil.Process().children() if "resource_tracker" not in " ".join(p.cmdline())]


def one_round(pre: Preprocessor, batches: list[list]) -> tuple[dict, list]:
    me, pool = psutil.Process(), pool_processes()
    worker0, pool0, wall0 = _cpu(me), sum(map(_cpu, pool)), time.perf_counter()

    async def go() -> list:
        return [await pre.prepare(batch) for batch in batches]

    prepared = asyncio.run(go())
    wall = time.perf_counter() - wall0
    n = sum(map(len, batches))
    row = {"worker_us": (_cpu(me) - worker0) / n * 1e6, "pool_us": (sum(map(_cpu, pool)) - pool0) / n * 1e6,
           "wall_us": wall / n * 1e6}
    row["total_us"] = row["worker_us"] + row["pool_us"]
    return row, [item for batch in prepared for item in batch]


def same_inputs(a: list, b: list) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, PrepareFailure) or isinstance(y, PrepareFailure):
            if x != y:
                return False
        elif not (np.array_equal(x.x, y.x) and np.array_equal(x.lead_mask, y.lead_mask) and x.quality == y.quality
                  and np.array_equal(x.median_beat_mv, y.median_beat_mv)):
            return False
    return True


def _resolved(settings: dict, card, args) -> dict:
    """``settings`` with ``shared_mb`` None replaced by the budget and block size the worker sizes
    for ``--batch``."""
    if "shared_mb" in settings and settings["shared_mb"] is None:
        budget_mb, block_bytes = shared_memory_for_batch(card, args.batch, args.prep_workers,
                                                         settings.get("part_windows", 8))
        return settings | {"shared_mb": budget_mb, "block_bytes": block_bytes}
    return settings


def run(args) -> dict:
    card = default_card()
    ecgs = windows(args.data, card, args.batch * args.batches)
    batches = [ecgs[i:i + args.batch] for i in range(0, len(ecgs), args.batch)]
    rows, reference = [], None
    variants = {name: _resolved(settings, card, args) for name, settings in COMPARISONS[args.compare].items()}
    for name, settings in variants.items():  # one warm-up round each, not counted
        pre = Preprocessor(card, workers=args.prep_workers, **settings)
        pre.warm_up()
        try:
            one_round(pre, batches[:4])
        finally:
            pre.close()
    for rnd in range(args.rounds):
        for name, settings in variants.items():
            pre = Preprocessor(card, workers=args.prep_workers, **settings)
            pre.warm_up()
            try:
                row, prepared = one_round(pre, batches)
                row |= {"variant": name, "round": rnd,
                        "pickled_parts": pre.blocks.pickled_parts if pre.blocks is not None else None}
            finally:
                pre.close()
            if reference is None:
                reference = prepared
            elif not same_inputs(reference, prepared):
                raise SystemExit(f"{name} gave other model inputs than the first variant")
            print({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            rows.append(row)
    medians = []
    for name in variants:
        runs = [r for r in rows if r["variant"] == name]
        medians.append({"variant": name, **{k: statistics.median(r[k] for r in runs)
                                            for k in ("worker_us", "pool_us", "total_us", "wall_us")},
                        "rounds_total_us": [round(r["total_us"], 1) for r in runs],
                        "shared_mb": variants[name].get("shared_mb", 32),
                        "pickled_parts": [r["pickled_parts"] for r in runs]})
    return {"windows": len(ecgs), "rows": rows, "medians": medians, "identical_inputs": True}


def markdown(result: dict) -> str:
    a = result
    compare = a.get("compare", "handoff")
    _, title, column = PAGES[compare]
    parts = "parts as each variant says" if compare in ("parts", "budget") else "parts of at most 8"
    lines = [
        f"# {title}",
        "",
        f"Command: `{a['command']}`  ",
        f"When: {a['when']}; machine: {a['machine']['cpus']} CPUs ({a['machine']['processor']}), "
        f"load average {a['machine']['load_before']} before, {a['machine']['load_after']} after.",
        "",
        f"{a['windows']} real 10-s, 12-lead, 500-Hz windows (PTB-XL through the worker's assembler), batches of "
        f"{a['batch']} through the worker's `Preprocessor` ({a['prep_workers']} process(es), {parts}), the "
        "real front end included; the two variants alternating, a fresh pool each round, medians over "
        f"{a['rounds']} rounds. Model inputs identical between the two: **{'yes' if a['identical_inputs'] else 'no'}**.",
        "",
        f"| {column} "
        "| worker process (µs CPU / window) | pool processes (µs CPU / window) | both | wall (µs / window) "
        "| rounds, both (µs) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in a["medians"]:
        lines.append(f"| {m['variant']} | {m['worker_us']:.0f} | {m['pool_us']:.0f} | {m['total_us']:.0f} | "
                     f"{m['wall_us']:.0f} | {', '.join(f'{v:.0f}' for v in m['rounds_total_us'])} |")
    before, after = a["medians"]
    return "\n".join([*lines, "", NOTES[compare](before, after)]) + "\n"


def _saved(before: dict, after: dict, key: str) -> str:
    return f"{before[key] - after[key]:.0f}"


# The paragraph under each comparison's table: what was saved and why.
NOTES = {
    "handoff": lambda b, a: (
        f"Saved per window: **{_saved(b, a, 'worker_us')} µs** of the worker's CPU and {_saved(b, a, 'pool_us')} µs "
        "of the pool's (the pool's figure includes the front end, ~2–3 ms a window, so its difference is the "
        "noisier one). The worker's CPU includes its threads: pickled, the pool's feeder thread copies each 240-kB "
        "window into a pickle and writes it through a 64-kB pipe in pieces, waiting for the pool process to read "
        "each; shared, the event loop copies it once into a block (`stream/scoring/shared_windows.py`)."),
    "allocator": lambda b, a: (
        f"Saved per window: **{_saved(b, a, 'pool_us')} µs** of the pool's CPU ({b['pool_us']:.0f} -> "
        f"{a['pool_us']:.0f}) and {_saved(b, a, 'worker_us')} µs of the worker's. The pool processes are spawned, "
        "so the worker's own allocator setting (`stream.keep_freed_mb`) did not reach them before 2026-12-06: each "
        "part's arrays went back to the kernel when freed and were faulted in again for the next part "
        "(`hfrisk/core/allocator.py`)."),
    "results": lambda b, a: (
        f"Saved per window: **{_saved(b, a, 'worker_us')} µs** of the worker's CPU and {_saved(b, a, 'pool_us')} µs "
        "of the pool's (the noisier figure: it includes the front end). Pickled, each prepared window's model "
        "input and median beat (~58 kB) went through the pool's 64-kB result pipe in pieces and were unpickled by "
        "the worker's result thread under its interpreter lock; now the pool process writes them into room "
        "reserved behind the windows in the part's block, and the result thread copies them out before the block "
        "is lent again (`stream/scoring/shared_windows.py`, `put_arrays` and `take_arrays`)."),
    "parts": lambda b, a: (
        f"Saved per window with the larger parts: **{_saved(b, a, 'total_us')} µs** of CPU "
        f"({_saved(b, a, 'worker_us')} in the worker, {_saved(b, a, 'pool_us')} in the pool): the batched front "
        "end costs less a window in larger batches, and each part has its own hand-off. What larger parts cost a "
        "burst's latency (the model waits for a whole part): docs/bench/stream-tuning.md, \"Parts larger than 8, "
        "again\"."),
    "budget": lambda b, a: (
        f"Saved per window with the budget sized for the batch ({a['shared_mb']} MB): **{_saved(b, a, 'total_us')} "
        f"µs** of CPU ({_saved(b, a, 'worker_us')} in the worker, {_saved(b, a, 'pool_us')} in the pool). Parts "
        f"that found the budget in use and went pickled, per round: {', '.join(map(str, b['pickled_parts']))} with "
        f"{b['shared_mb']} MB, {', '.join(map(str, a['pickled_parts']))} sized. Every part of a batch is submitted "
        "at once and holds its block (a part of ~32 windows with their results takes 10 MiB) until its results "
        "are copied out, so a fixed 32 MB held three parts of a backlog's batch and pickled the rest."),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("tests/data/ecg/ptbxl/records500"))
    parser.add_argument("--prep-workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="handoff",
                        help="handoff: pickled against shared memory; allocator: the pool's allocator defaults "
                             "against keeping freed memory; results: model inputs pickled back against through "
                             "shared memory; parts: parts of 8 against up to 32; budget: a fixed 32 MB of shared "
                             "memory against a budget sized for --batch")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    load_before = load_average()
    result = {"command": command_line("bench_pool_handoff", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "batch": args.batch, "prep_workers": args.prep_workers, "rounds": args.rounds,
              "compare": args.compare} | run(args)
    result["machine"] = machine(load_before)
    save(args.out, PAGES[args.compare][0], result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
