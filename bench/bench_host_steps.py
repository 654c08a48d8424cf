"""The front end's steps that stay on the host, against another commit.

    .venv/bin/python -m bench.bench_host_steps [--records DIR] [--baseline REV] [--repeats 5]
        [--steps window_and_leads quality ...] [--out docs/bench]

Two steps of ``prepare_windows`` run in Python on the host for every window, whatever device the
rest of the front end runs on: ``window_and_leads`` (the card's stretch of a recording, its leads in
the card's order) before the batch, and ``quality`` (each window's quality report and model input)
after it. With the front end on a GPU they are most of the host's share of a window
(docs/bench/sizing.md); on a CPU they are part of ``prepare_windows``. Each child process (a fresh interpreter, the baseline's code from its own
extracted tree or the checkout's, alternating ``--repeats`` times; one BLAS thread and the pool's
allocator setting, as a preprocessing process runs) reads the records (default: the 500 PTB-XL
500 Hz records of the reference data) and reports CPU ms a window of:

1. ``window_and_leads`` alone, over every record (the first 10 s);
2. ``prepare_windows`` on the same windows in batches of 32 (the stream's pool and screening on a
   CPU) and of 256 (the batch a GPU host's pool process takes), and of it its ``window_and_leads``
   and ``quality`` steps (its own ``timings``), or the steps ``--steps`` names (any of
   ``prepare_windows``' timings: ``lead_flags``, ``filter``, ``r_peaks``, ``beats_and_median``,
   ``normalise_and_pad``), for a change to another step.

Both trees must prepare identical model inputs, lead masks, beats and quality reports (a digest of
them is compared). Results: ``<out>/host-steps.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from bench.trees import ROOT, child_json, extract, git, use_tree

DEFAULT_BASELINE = "7a39373"
BATCHES = (32, 256)
HOST_STEPS = ("window_and_leads", "quality")
# prepare_windows' timings, in order (model/frontend/batch.py's Stopwatch laps).
STEPS = ("window_and_leads", "lead_flags", "filter", "r_peaks", "beats_and_median", "normalise_and_pad", "quality")
PASSES = 3


def measure(records: Path) -> dict:
    """This process's figures (in a child, after :func:`use_tree` where it measures a baseline)."""
    from hfrisk.core.allocator import keep_freed_memory
    from hfrisk.core.config import get_settings
    from hfrisk.model.contract.card import default_card
    from hfrisk.model.frontend.arrays import one_blas_thread
    from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows, window_and_leads
    from hfrisk.model.readers.dispatch import read_ecg, record_paths

    one_blas_thread()
    keep_freed_memory(get_settings().stream.keep_freed_mb)
    card = default_card()
    ecgs = [read_ecg(p) for p in record_paths([records])]
    requests = [(ecg, 0.0) for ecg in ecgs]
    n = len(requests)

    def cpu_ms(step) -> float:
        step()  # untimed: imports, filter plans, the allocator's first pages
        runs = []
        for _ in range(PASSES):
            start = time.process_time()
            step()
            runs.append(1e3 * (time.process_time() - start) / n)
        return statistics.median(runs)

    result = {"windows": n, "window_and_leads_ms": cpu_ms(lambda: [window_and_leads(e, card, s) for e, s in requests])}
    digest = hashlib.sha256()
    for size in BATCHES:
        steps: dict[str, float] = {}
        result[f"prepare_{size}_ms"] = cpu_ms(lambda: [prepare_windows(requests[i:i + size], card, batch_size=size)
                                                       for i in range(0, n, size)])
        for i in range(0, n, size):
            prepare_windows(requests[i:i + size], card, batch_size=size, timings=steps)
        for step, seconds in steps.items():
            result[f"prepare_{size}_{step}_ms"] = 1e3 * seconds / n
    for item in prepare_windows(requests, card, batch_size=BATCHES[0]):
        if isinstance(item, ModelInput):
            digest.update(item.x.tobytes() + item.lead_mask.tobytes() + item.detected_r_peaks_s.tobytes()
                          + item.r_peaks_s.tobytes() + repr(item.quality.to_dict()).encode())
        else:
            digest.update(repr(item).encode())
    result["digest"] = digest.hexdigest()
    return result


def markdown(r: dict) -> str:
    base, cur = r["median"]["baseline"], r["median"]["current"]
    steps = r["steps"]
    rows = [("`window_and_leads` alone", "window_and_leads_ms")]
    for size in BATCHES:
        rows += [(f"`prepare_windows`, batches of {size}", f"prepare_{size}_ms"),
                 *((f"… of it, its `{step}` step", f"prepare_{size}_{step}_ms") for step in steps)]
    m = r["machine"]
    named = ", ".join(f"`{step}`" for step in steps)
    what = "host-side steps" if tuple(steps) == HOST_STEPS else "steps"
    lines = [
        f"# The front end's {what} ({named}): the checkout against a baseline",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {m['cpus']} CPUs ({m['processor']}), load average {m['load_before']} before, "
        f"{m['load_after']} after.  ",
        f"Baseline: commit `{r['baseline_rev'][:12]}` (extracted, its own processes); current: the checkout at "
        f"`{r['current_rev'][:12]}`. {r['repeats']} fresh processes each, alternating; CPU time of one process, one "
        f"BLAS thread, the pool's allocator setting; medians over the processes (each the median of {PASSES} passes).",
        "",
        f"Windows: the first 10 s of each of the {r['windows']} records under `{r['records']}`. Both prepared the same "
        f"model inputs, lead masks, beats and quality reports (digest `{r['digest'][:16]}`).",
        "",
        "| CPU ms a window | baseline | current | current / baseline | processes (baseline; current) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, key in rows:
        runs = r["runs"]
        lines.append(f"| {label} | {base[key]:.4f} | {cur[key]:.4f} | {cur[key] / base[key]:.2f} | "
                     f"{', '.join(f'{x:.3f}' for x in runs['baseline'][key])}; "
                     f"{', '.join(f'{x:.3f}' for x in runs['current'][key])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=Path, default=None, help="default: PTB-XL records500 of the reference data")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", nargs="+", default=list(HOST_STEPS), choices=STEPS,
                        help="steps of prepare_windows to report (default: the two that stay on the host)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.records is None:
        from bench.references.root import data_root

        args.records = data_root() / "ptbxl" / "records500"
    if args.child:
        if args.tree:
            use_tree(args.tree)  # before anything imports hfrisk
        print(json.dumps(measure(args.records)))
        return None

    load_before = load_average()
    keys = ["window_and_leads_ms"] + [f"prepare_{s}{k}" for s in BATCHES
                                      for k in ("_ms", *(f"_{step}_ms" for step in args.steps))]
    runs: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in ("baseline", "current")}
    digests: dict[str, set[str]] = {"baseline": set(), "current": set()}
    windows = 0
    with tempfile.TemporaryDirectory(prefix="bench-host-steps-") as tmp:
        tree = str(extract(args.baseline, Path(tmp) / "baseline"))
        for i in range(args.repeats):
            for variant in (("baseline", "current") if i % 2 == 0 else ("current", "baseline")):
                child = ["--child", "--records", str(args.records)] + (["--tree", tree] if variant == "baseline" else [])
                got = child_json("bench.bench_host_steps", child)
                for k in keys:
                    runs[variant][k].append(got[k])
                digests[variant].add(got["digest"])
                windows = got["windows"]
                print(json.dumps({"repeat": i + 1, "variant": variant, **{k: round(got[k], 4) for k in keys}}),
                      file=sys.stderr, flush=True)
    if len(digests["baseline"] | digests["current"]) != 1:
        raise SystemExit(f"the trees prepared different inputs: {digests}")
    result = {
        "command": command_line("bench_host_steps", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(load_before),
        "baseline_rev": git("rev-parse", args.baseline), "current_rev": git("rev-parse", "HEAD"),
        "records": os.path.relpath(args.records.resolve(), ROOT),
        "windows": windows, "repeats": args.repeats, "steps": args.steps, "digest": digests["current"].pop(),
        "runs": runs, "median": {v: {k: statistics.median(x) for k, x in runs[v].items()} for v in runs},
    }
    save(args.out, "host-steps", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
