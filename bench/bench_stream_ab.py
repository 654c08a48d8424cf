"""Two worker settings against each other in real time, alternating on one stack.

    HFRISK_STREAM__BATCH_SIZE=128 .venv/bin/python -m bench.bench_stream_ab \\
        --a HFRISK_STREAM__PREP_SHARED_MB=0 --b HFRISK_STREAM__PREP_SHARED_MB=32 \\
        [--beds 900] [--rounds 2] [--workers 2] [--seconds 60] [--stagger-s 5] [--out docs/bench/ab]

Single sequential runs of ``bench_stream`` on this shared machine move by ±20 % by themselves
(docs/bench/stream-tuning.md, "2026-12-06"), which hides a change worth a tenth of a core. Here one
stack (Kafka, Redis, Triton) serves both: a warm-up run first (the broker's JIT), then fresh workers
with the environment of ``--a`` and of ``--b`` in turn, swapping which goes first each round, each on
its own topics and Redis prefix, ``--beds`` beds replayed in real time. Per run: p50/p95 latency,
whether it was sustained, and the cores each process kept busy (the workers with their pools
together). Written to ``<out>/stream-ab.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

from bench.bench_stream import REPLAY, Stack, realtime_run
from bench.bench_triton import export_model
from bench.process_cpu import MACHINE
from bench.record import command_line, load_average, machine, save, work_dir
from hfrisk.model.contract.card import default_card


def assignments(values: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict; a malformed one is an error, not a silent no-op."""
    out = {}
    for item in values:
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


def run(args) -> dict:
    variants = {"a": assignments(args.a), "b": assignments(args.b)}
    card = default_card()
    rows = []
    with work_dir("stream-ab") as work:
        stack = Stack(work, export_model(work, card), card, args.partitions, args.prep_workers)
        try:
            for i, name in enumerate(["warm-up", *order(args.rounds)]):
                env = variants.get(name, {})
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)  # the workers inherit this process's environment
                try:
                    kafka = stack.topics(f"ab{i}-{uuid.uuid4().hex[:6]}")
                    prefix = f"bench-ab{i}-{uuid.uuid4().hex[:6]}"
                    proc, ports = stack.workers(args.workers, f"ab{i}", kafka, prefix)
                    try:
                        beds = args.warmup_beds if name == "warm-up" else args.beds
                        row = realtime_run(stack, kafka, prefix, ports, proc, beds, args.seconds, card, args.stagger_s)
                    finally:
                        proc.stop()
                finally:
                    for k, v in saved.items():
                        if v is None:
                            os.environ.pop(k, None)
                        else:
                            os.environ[k] = v
                row |= {"variant": name, "workers_cores": workers_cores(row["cpu_cores"])}
                print({k: row[k] for k in ("variant", "beds", "latency_s", "sustained", "workers_cores")}, flush=True)
                rows.append(row)
        finally:
            stack.stop()
    summary = {}
    for name in ("a", "b"):
        mine = [r for r in rows if r["variant"] == name]
        summary[name] = {"env": variants[name], "p95_s": [r["latency_s"]["p95"] for r in mine],
                         "workers_cores": [r["workers_cores"] for r in mine],
                         "machine_cores": [r["cpu_cores"].get(MACHINE) for r in mine],
                         "sustained": [r["sustained"] for r in mine],
                         "median_workers_cores": statistics.median(r["workers_cores"] for r in mine)}
    return {"rows": rows, "summary": summary}


def markdown(r: dict) -> str:
    a = r
    lines = [
        "# Two worker settings in real time, alternating on one stack",
        "",
        f"Command: `{a['command']}`  ",
        f"When: {a['when']}; machine: {a['machine']['cpus']} CPUs ({a['machine']['processor']}), "
        f"load average {a['machine']['load_before']} before, {a['machine']['load_after']} after.",
        "",
        f"{a['beds']} beds in real time for {a['seconds']:g} s, starts over {a['stagger_s']:g} s, {a['workers']} "
        f"worker(s) of {a['prep_workers']} preprocessing process(es); a {a['warmup_beds']}-bed warm-up first. "
        f"**a**: `{' '.join(f'{k}={v}' for k, v in a['summary']['a']['env'].items())}`; "
        f"**b**: `{' '.join(f'{k}={v}' for k, v in a['summary']['b']['env'].items())}`.",
        "",
        "| run | variant | windows | p50 / p95 (s) | sustained | workers with pools (cores) | Kafka | Redis | Triton "
        "| replay | machine busy |",
        "| ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, row in enumerate(a["rows"]):
        c = row["cpu_cores"]
        lines.append(
            f"| {i} | {row['variant']} | {row['windows']}/{row['expected_windows']} | {row['latency_s']['p50']} / "
            f"{row['latency_s']['p95']} | {'yes' if row['sustained'] else 'no'} | {row['workers_cores']:.3f} | "
            f"{c.get('Kafka broker', 0):.2f} | {c.get('Redis', 0):.2f} | {c.get('Triton', 0):.2f} | "
            f"{c.get(REPLAY, 0):.2f} | {c.get(MACHINE, 0):.2f} |")
    sa, sb = a["summary"]["a"], a["summary"]["b"]
    lines += ["", f"Workers with their pools, median over the rounds: a {sa['median_workers_cores']:.3f}, "
                  f"b {sb['median_workers_cores']:.3f} cores; p95 a {sa['p95_s']}, b {sb['p95_s']} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", required=True, metavar="HFRISK_NAME=VALUE")
    parser.add_argument("--b", nargs="+", required=True, metavar="HFRISK_NAME=VALUE")
    parser.add_argument("--beds", type=int, default=900)
    parser.add_argument("--warmup-beds", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prep-workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--stagger-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/ab"))
    args = parser.parse_args(argv)
    load_before = load_average()
    result = {"command": command_line("bench_stream_ab", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "beds": args.beds, "warmup_beds": args.warmup_beds, "seconds": args.seconds,
              "stagger_s": args.stagger_s, "workers": args.workers, "prep_workers": args.prep_workers} | run(args)
    result["machine"] = machine(load_before)
    save(args.out, "stream-ab", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
