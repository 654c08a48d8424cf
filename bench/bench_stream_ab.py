"""Two worker settings, or two commits, against each other, alternating on one stack.

    HFRISK_STREAM__BATCH_SIZE=128 .venv/bin/python -m bench.bench_stream_ab \\
        --a HFRISK_STREAM__PREP_SHARED_MB=0 --b HFRISK_STREAM__PREP_SHARED_MB=32 \\
        [--a-rev REV] [--section realtime|throughput|overhead] \\
        [--beds 900] [--rounds 2] [--workers 2] [--seconds 60] [--stagger-s 5] [--out docs/bench/ab]

Single sequential runs of ``bench_stream`` on this shared machine move by ±20 % by themselves
(docs/bench/stream-tuning.md, "2026-12-06"), which hides a change worth a tenth of a core. Here one
stack (Kafka, Redis, Triton) serves both: a warm-up run first (the broker's JIT), then fresh workers
with the environment of ``--a`` and of ``--b`` in turn, swapping which goes first each round, each on
its own topics (or consumer group) and Redis prefix. ``--a-rev`` makes variant a run that commit's
code (``bench.trees``) instead of the checkout.

Sections:

* ``realtime``: ``--beds`` beds replayed in real time. Per run: p50/p95 latency, whether it was
  sustained, and the cores each process kept busy (the workers with their pools together).
* ``throughput``: ``--beds`` beds × ``--seconds`` of signal replayed as fast as possible to
  ``--workers`` workers (default one); steady windows/s (``bench_stream``'s throughput section).
  ``--a-workers``/``--b-workers`` (and ``--a-prep-workers``/``--b-prep-workers``) give a variant
  its own process layout, here and in ``realtime``.
* ``overhead``: one backlog of ``--beds`` × ``--seconds`` produced once, read by each variant's
  worker with the no-op model and front end, and by the raw Faust consumer as the warm-up; chunks/s
  (``bench_stream``'s overhead section).

Written to ``<out>/stream-ab.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

from bench.bench_stream import (REPLAY, Stack, chunks_per_s, overhead_backlog, raw_consumer_rate, realtime_run,
                                stretches_cell, throughput_run)
from bench.bench_triton import export_model
from bench.process_cpu import MACHINE
from bench.record import command_line, load_average, machine, save, work_dir
from bench.trees import extract
from hfrisk.core.config import get_settings
from hfrisk.model.contract.card import default_card


def assignments(values: list[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict; a malformed one is an error, not a silent no-op."""
    out = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("HFRISK_"):
            raise SystemExit(f"expected HFRISK_NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def order(rounds: int) -> list[str]:
    """Which variant runs when: a, b, then b, a, ... so neither always goes first."""
    return [v for r in range(rounds) for v in (("a", "b") if r % 2 == 0 else ("b", "a"))]


def workers_cores(cores: dict) -> float:
    return round(sum(v for k, v in cores.items() if k.startswith("worker")), 3)


def drain_ms_per_window(row: dict) -> float:
    """The workers' (with their pools) ms of CPU a window while a backlog drained."""
    return workers_cores(row["drain_cpu_cores"]) / row["steady_windows_per_s"] * 1e3


class environment:
    """``os.environ`` updated by ``env`` inside the block, as it was after. The workers inherit it,
    and so do this process's own settings (``get_settings`` is cached: it is read afresh on the way
    in and out), such as the replay's linger."""

    def __init__(self, env: dict[str, str]):
        self.env, self.saved = env, {k: os.environ.get(k) for k in env}

    def __enter__(self):
        os.environ.update(self.env)
        get_settings.cache_clear()

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def layout(args, name: str) -> tuple[int, int]:
    """(workers, preprocessing processes per worker) of a variant; the warm-up runs ``--workers``
    and ``--prep-workers``, as does a variant without its own."""
    workers = getattr(args, f"{name}_workers", None) if name in ("a", "b") else None
    prep = getattr(args, f"{name}_prep_workers", None) if name in ("a", "b") else None
    return workers or args.workers, prep or args.prep_workers


def on_fresh_workers(stack: Stack, args, i: int, name: str, measure) -> dict:
    """``measure(kafka, prefix, ports, proc, beds)`` on the variant's workers, started for this run
    on topics and a Redis prefix of their own, and stopped after it."""
    kafka = stack.topics(f"ab{i}-{uuid.uuid4().hex[:6]}")
    prefix = f"bench-ab{i}-{uuid.uuid4().hex[:6]}"
    proc, ports = stack.workers(layout(args, name)[0], f"ab{i}", kafka, prefix)
    try:
        return measure(kafka, prefix, ports, proc, args.warmup_beds if name == "warm-up" else args.beds)
    finally:
        proc.stop()


def realtime_row(stack: Stack, args, card, i: int, name: str) -> dict:
    row = on_fresh_workers(stack, args, i, name, lambda kafka, prefix, ports, proc, beds: realtime_run(
        stack, kafka, prefix, ports, proc, beds, args.seconds, card, args.stagger_s))
    return row | {"workers_cores": workers_cores(row["cpu_cores"])}


def throughput_row(stack: Stack, args, card, i: int, name: str) -> dict:
    return on_fresh_workers(stack, args, i, name, lambda kafka, prefix, ports, proc, beds: throughput_run(
        stack, kafka, prefix, ports, proc, beds, args.seconds, card))


def overhead_row(stack: Stack, backlog, i: int, name: str) -> dict:
    """Chunks/s of the variant's no-op worker over the whole backlog, in a consumer group of its own;
    the warm-up runs the raw Faust consumer instead."""
    kafka, chunks = backlog
    if name == "warm-up":
        return {"chunks": chunks, "chunks_per_s": round(raw_consumer_rate(stack, kafka, chunks, f"ab{i}-raw"), 1)}
    proc, port = stack.worker(f"ab{i}-noop", kafka, f"bench-ab{i}-{uuid.uuid4().hex[:6]}", "--noop-model",
                              "--noop-prep", app_id=f"ab{i}-{uuid.uuid4().hex[:6]}")
    return {"chunks": chunks, "chunks_per_s": round(chunks_per_s(proc, port, chunks), 1)}


FIGURE = {"realtime": "workers_cores", "throughput": "steady_windows_per_s", "overhead": "chunks_per_s"}


def run(args) -> dict:
    variants = {"a": assignments(args.a), "b": assignments(args.b)}
    card = default_card()
    rows = []
    with work_dir("stream-ab") as work:
        stack = Stack(work, export_model(work, card), card, args.partitions, args.prep_workers)
        trees = {"a": extract(args.a_rev, work / "a-tree") if args.a_rev else None}
        backlog = overhead_backlog(stack, args.beds, args.seconds) if args.section == "overhead" else None
        try:
            for i, name in enumerate(["warm-up", *order(args.rounds)]):
                stack.tree = trees.get(name)
                stack.prep_workers = layout(args, name)[1]
                with environment(variants.get(name, {})):
                    if args.section == "realtime":
                        row = realtime_row(stack, args, card, i, name)
                    elif args.section == "throughput":
                        row = throughput_row(stack, args, card, i, name)
                    else:
                        row = overhead_row(stack, backlog, i, name)
                row["variant"] = name
                print({k: row.get(k) for k in ("variant", "beds", "latency_s", "sustained", FIGURE[args.section])},
                      flush=True)
                rows.append(row)
        finally:
            stack.stop()
    summary = {}
    figure = FIGURE[args.section]
    for name in ("a", "b"):
        mine = [r for r in rows if r["variant"] == name]
        summary[name] = {"env": variants[name], "rev": args.a_rev if name == "a" else None,
                         "workers": layout(args, name)[0], "prep_workers": layout(args, name)[1],
                         figure: [r[figure] for r in mine], f"median_{figure}": round(statistics.median(r[figure] for r in mine), 3)}
        if args.section != "overhead":
            summary[name]["p95_s"] = [r["latency_s"]["p95"] for r in mine]
        if args.section == "realtime":
            summary[name] |= {"machine_cores": [r["cpu_cores"].get(MACHINE) for r in mine],
                              "sustained": [r["sustained"] for r in mine]}
    if args.section == "overhead":
        summary["raw_faust_chunks_per_s"] = rows[0]["chunks_per_s"]
    return {"rows": rows, "summary": summary}


def _variant(summary: dict) -> str:
    env = " ".join(f"{k}={v}" for k, v in summary["env"].items())
    code = f"commit `{summary['rev']}`" if summary.get("rev") else "the checkout"
    processes = f", {summary['workers']} worker(s) of {summary['prep_workers']} preprocessing process(es)" \
        if "workers" in summary else ""
    return f"{code}{f', `{env}`' if env else ''}{processes}"


def _runs_table(r: dict, intro: str, columns: list[tuple[str, str]], cells, summary: str) -> list[str]:
    """A section's page: ``intro``, a table with a row per run (its number, then ``cells(row)`` under
    ``columns``, each a heading and its alignment), and ``summary`` below it."""
    lines = [intro, "", "| run | " + " | ".join(name for name, _ in columns) + " |",
             "| ---: | " + " | ".join(align for _, align in columns) + " |"]
    lines += [f"| {i} | " + " | ".join(cells(row)) + " |" for i, row in enumerate(r["rows"])]
    return [*lines, "", summary]


def _realtime_lines(r: dict) -> list[str]:
    def cells(row: dict) -> list[str]:
        c = row["cpu_cores"]
        return [row["variant"], f"{row['windows']}/{row['expected_windows']}",
                f"{row['latency_s']['p50']} / {row['latency_s']['p95']}", "yes" if row["sustained"] else "no",
                f"{row['workers_cores']:.3f}",
                *(f"{c.get(name, 0):.2f}" for name in ("Kafka broker", "Redis", "Triton", REPLAY, MACHINE)),
                stretches_cell(row)]

    sa, sb = r["summary"]["a"], r["summary"]["b"]
    return _runs_table(
        r,
        f"{r['beds']} beds in real time for {r['seconds']:g} s, starts over {r['stagger_s']:g} s, {r['workers']} "
        f"worker(s) of {r['prep_workers']} preprocessing process(es); a {r['warmup_beds']}-bed warm-up first.",
        [("variant", "---"), ("windows", "---:"), ("p50 / p95 (s)", "---"), ("sustained", "---"),
         ("workers with pools (cores)", "---:"), ("Kafka", "---:"), ("Redis", "---:"), ("Triton", "---:"),
         ("replay", "---:"), ("machine busy", "---:"), ("p95 of each 10 s (s)", "---")],
        cells,
        f"Workers with their pools, median over the rounds: a {sa['median_workers_cores']:.3f}, "
        f"b {sb['median_workers_cores']:.3f} cores; p95 a {sa['p95_s']}, b {sb['p95_s']} s.")


def _throughput_lines(r: dict) -> list[str]:
    sa, sb = r["summary"]["a"], r["summary"]["b"]
    return _runs_table(
        r,
        f"{r['beds']} beds x {r['seconds']:g} s of signal replayed as fast as possible to {r['workers']} "
        f"worker(s) of {r['prep_workers']} preprocessing process(es) unless a variant says otherwise; a "
        f"{r['warmup_beds']}-bed warm-up first. Steady windows/s "
        "as in `bench_stream`'s throughput section; latency: Redis write - Kafka timestamp of the chunk that "
        "completed the window.",
        [("variant", "---"), ("windows", "---:"), ("steady windows/s", "---:"), ("windows/s", "---:"),
         ("latency p50 / p95 (s)", "---"), ("workers with pools (cores)", "---:"),
         ("workers, ms of CPU a window", "---:"), ("Triton (cores)", "---:"), ("machine busy", "---:")],
        lambda row: [row["variant"], str(row["windows"]), str(row["steady_windows_per_s"]), str(row["windows_per_s"]),
                     f"{row['latency_s']['p50']} / {row['latency_s']['p95']}",
                     f"{workers_cores(row['drain_cpu_cores']):.3f}", f"{drain_ms_per_window(row):.2f}",
                     f"{row['drain_cpu_cores'].get('Triton', 0):.2f}", f"{row['drain_cpu_cores'].get(MACHINE, 0):.2f}"],
        f"Steady windows/s, median over the rounds: a {sa['median_steady_windows_per_s']}, "
        f"b {sb['median_steady_windows_per_s']}. The workers' ms of CPU a window, median: "
        f"a {statistics.median(drain_ms_per_window(x) for x in r['rows'] if x['variant'] == 'a'):.2f}, "
        f"b {statistics.median(drain_ms_per_window(x) for x in r['rows'] if x['variant'] == 'b'):.2f}. "
        "CPU: cores each process kept busy while the backlog drained after the replay ended; a window's "
        "CPU is the workers' cores over the steady windows/s.")


def _overhead_lines(r: dict) -> list[str]:
    raw = r["summary"]["raw_faust_chunks_per_s"]
    sa, sb = r["summary"]["a"], r["summary"]["b"]
    return _runs_table(
        r,
        f"One backlog of {r['beds']} beds x {r['seconds']:g} s ({r['rows'][0]['chunks']} chunks), read by each run "
        "in a consumer group of its own: the raw Faust consumer first (run 0, the warm-up), then each variant's "
        "worker with `--noop-model --noop-prep`.",
        [("variant", "---"), ("chunks/s", "---:"), ("÷ raw Faust consumer", "---:")],
        lambda row: ["raw Faust consumer" if row["variant"] == "warm-up" else row["variant"],
                     str(row["chunks_per_s"]), f"{row['chunks_per_s'] / raw:.3f}"],
        f"No-op worker chunks/s, median over the rounds: a {sa['median_chunks_per_s']} "
        f"({sa['median_chunks_per_s'] / raw:.3f} of the raw consumer), b {sb['median_chunks_per_s']} "
        f"({sb['median_chunks_per_s'] / raw:.3f}).")


TITLES = {"realtime": "in real time", "throughput": "draining a backlog", "overhead": "with no-op model and front end"}


def markdown(r: dict) -> str:
    section = r.get("section", "realtime")
    lines = [
        f"# Two worker variants {TITLES[section]}, alternating on one stack",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs ({r['machine']['processor']}), "
        f"load average {r['machine']['load_before']} before, {r['machine']['load_after']} after.",
        "",
        f"**a**: {_variant(r['summary']['a'])}; **b**: {_variant(r['summary']['b'])}.",
        "",
    ]
    if r.get("note"):
        lines += [r["note"], ""]
    lines += {"realtime": _realtime_lines, "throughput": _throughput_lines, "overhead": _overhead_lines}[section](r)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", metavar="HFRISK_NAME=VALUE")
    parser.add_argument("--b", nargs="+", metavar="HFRISK_NAME=VALUE")
    parser.add_argument("--a-rev", metavar="REV", help="variant a runs this commit's code instead of the checkout")
    parser.add_argument("--section", choices=sorted(FIGURE), default="realtime")
    parser.add_argument("--beds", type=int, default=900)
    parser.add_argument("--warmup-beds", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None,
                        help="default: 2 for the realtime section, 1 for throughput (as its runs before 2026-12-06)")
    parser.add_argument("--prep-workers", type=int, default=1)
    for name in ("a", "b"):
        parser.add_argument(f"--{name}-workers", type=int, help=f"variant {name}'s workers (default --workers)")
        parser.add_argument(f"--{name}-prep-workers", type=int,
                            help=f"variant {name}'s preprocessing processes per worker (default --prep-workers)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--stagger-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/ab"))
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = 2 if args.section == "realtime" else 1
    if args.section == "overhead" and any(layout(args, n) != layout(args, "warm-up") for n in "ab"):
        parser.error("the overhead section runs one no-op worker per variant: no --a/--b-workers there")
    if not (args.a or args.b or args.a_rev or layout(args, "a") != layout(args, "b")):
        parser.error("the variants would be the same: give --a, --b, --a-rev or a layout (--a-workers, ...)")
    load_before = load_average()
    result = {"command": command_line("bench_stream_ab", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "section": args.section, "beds": args.beds, "warmup_beds": args.warmup_beds, "seconds": args.seconds,
              "stagger_s": args.stagger_s, "workers": args.workers, "prep_workers": args.prep_workers} | run(args)
    result["machine"] = machine(load_before)
    save(args.out, "stream-ab", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
