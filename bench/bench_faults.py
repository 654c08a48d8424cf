"""Recovery from faults on the real local stack: the figures of docs/reliability.md.

    .venv/bin/python -m bench.bench_faults [--repeats 1] [--down-s 10] [--faults worker_kill ...]
        [--out docs/reliability.md]
    .venv/bin/python -m bench.bench_faults --beds 128 --real-time [--duration-s 150] [--fault-at-s 40]
        [--repeats 1] [--faults baseline worker_kill ...] [--out docs/bench]

Starts its own Kafka (KRaft), Redis (AOF, fsync every second) and Triton (pytriton wheel,
untrained HFRiskNet, one ONNX Runtime thread) on loopback, then runs the fault scenarios of
``tests/integration/test_faults.py`` (the same runners, from ``hfrisk.testing``):
3 beds of real PTB-XL 500 Hz recordings, 40 s each (21 windows), replayed as fast as possible, the
first 20 s before the fault. Every run is checked window by window against the offline reference
(``prepare`` + ONNX Runtime) and the table says what was found: windows expected / written /
stored twice / lost, scores off by more than 1e-4, whether the alert events match the scores.

Times (wall clock, ``time.monotonic``): the fault lasts from the kill / stop until the server is
ready again (for a worker kill: until its replacement's process is up; for the rebalance: from the
second worker's start until it has left). Recovery is measured from the end of the fault to the
first window written after it and to the last expected window in Redis (backlog drained).
Everything shares the machine's 2 CPUs (and, on the development machine, other engineers' jobs):
the load average is recorded with the results.

**At load** (``--beds N --real-time``, issue #15): the same faults while N beds stream in real time
(``hfrisk.testing.load``): each bed's 1-s chunks are sent when their last sample is due, 10-s windows
every 5 s, ``--duration-s`` of signal per bed, the fault ``--fault-at-s`` into the stream, plus a
``baseline`` run without a fault. The worker runs as bench_stream measured it in real time (two
preprocessing processes, batches of ``--batch-size`` (32) with a 0.05-s linger, the default checkpoint interval;
session timeout 6 s); ``--stagger-s`` spreads the beds' starts as ``hfrisk replay --stagger-s`` does. Each run is
checked window by window as above, and the latencies (Redis write - when the window's last sample was
due) give the time back in real time, the peak latency and backlog (``hfrisk.testing.recovery``).
Written to ``<out>/faults-at-load-<N>.{json,md}`` (default ``docs/bench``); docs/reliability.md's
generated block is left alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save, write_marked_block, work_dir

FAULTS = ("worker_kill", "rebalance", "triton", "redis", "redis_kill", "kafka", "kafka_kill")
LOAD_FAULTS = ("baseline", *FAULTS)  # = hfrisk.testing.LOAD_FAULTS, without importing it here
# docs/reliability.md: this block is generated, the text after it is written by hand.
BEGIN, END = "<!-- bench_faults:begin -->", "<!-- bench_faults:end -->"


def run_fault(name: str, ref, servers: dict, work: Path, down_s: float, load: dict | None = None):
    """One run of fault ``name``; ``load`` (``fault_at_s``): at load, ``ref`` streamed in real time."""
    from hfrisk.testing import (
        StreamScenario,
        load_worker_env,
        load_worker_options,
        run_at_load,
        run_kafka_restart,
        run_rebalance,
        run_redis_outage,
        run_triton_outage,
        run_worker_kill,
    )

    redis, kafka, triton = servers["redis"], servers["kafka"], servers["triton"]
    at_load = {} if load is None else dict(partitions=4, worker_options=load_worker_options(load["prep_workers"]),
                                           worker_env_extra=load_worker_env(load["batch_size"]))
    sc = StreamScenario(name, ref, bootstrap=kafka.bootstrap_servers, redis_url=redis.url,
                        redis_client=redis.client, triton=triton, tmp=work / f"{name}-{time.monotonic_ns()}",
                        **at_load)
    if load is not None:
        return run_at_load(sc, name, servers, fault_at_s=load["fault_at_s"], down_s=down_s, workers=load["workers"])
    runners = {
        "worker_kill": lambda: run_worker_kill(sc),
        "rebalance": lambda: run_rebalance(sc),
        "triton": lambda: run_triton_outage(sc, triton, down_s=down_s),
        "redis": lambda: run_redis_outage(sc, redis, down_s=down_s),
        "redis_kill": lambda: run_redis_outage(sc, redis, down_s=down_s, kill=True),
        "kafka": lambda: run_kafka_restart(sc, kafka),
        "kafka_kill": lambda: run_kafka_restart(sc, kafka, kill=True),
    }
    return runners[name]()


def _exactly_once_cells(rows: list[dict]) -> str:
    """The cells both fault tables share: windows expected / written per run / duplicates / lost, scores
    off, alerts consistent."""
    return (f"{rows[0]['expected']} / {'/'.join(str(r['written']) for r in rows)} / "
            f"{sum(r['duplicates'] for r in rows)} / {sum(r['missing'] for r in rows)} "
            f"| {sum(r['wrong_scores'] for r in rows)} "
            f"| {'yes' if all(r['alerts_consistent'] for r in rows) else '**no**'}")


def _fmt(values: list, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def markdown(result: dict) -> str:
    lines = [
        BEGIN,
        "",
        "*Generated by `bench/bench_faults.py` down to the end marker; do not edit this block by hand.* The same "
        "scenarios run as tests in",
        "`tests/integration/test_faults.py` (which assert them; this records the times).",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_before']} before, {result['machine']['load_after']} after; "
        f"{result['repeats']} run(s) per fault.  ",
        "Stream: 3 beds of PTB-XL 500 Hz recordings, 40 s each as 1-s chunks (21 windows of 10 s every 5 s), replayed "
        "as fast as possible; 3 partitions; worker checkpoint every 0.5 s, session timeout 6 s, batch 16 / 0.1 s.",
        "",
        "Times in seconds; with several runs: median (min–max). *Fault*: kill/stop until the server is ready again "
        "(worker kill: until the replacement process is up; rebalance: second worker's start until it has left). "
        "*First window* / *drained*: from the end of the fault to the first window written after it / to every "
        "expected window in Redis. *Redelivered*: score records re-sent for windows already written (consumers "
        "deduplicate on (patient, window)); they never reach Redis twice.",
        "",
        "| fault | what | fault (s) | windows expected / written / duplicates / lost | scores off | alerts consistent "
        "| written during fault | first window (s) | drained (s) | redelivered | dead letters |",
        "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in result["faults"].items():
        r0 = rows[0]
        lines.append(
            f"| {name} | {r0['what']} | {_fmt([r['fault_s'] for r in rows])} | {_exactly_once_cells(rows)} "
            f"| {_fmt([r['during_fault'] for r in rows], 0)} | {_fmt([r['recover_first_s'] for r in rows])} "
            f"| {_fmt([r['recover_drained_s'] for r in rows])} | {sum(r['redelivered'] for r in rows)} "
            f"| {sum(r['dead_letters'] for r in rows)} |"
        )
    lines += ["", "Notes per run:", ""]
    for name, rows in result["faults"].items():
        for i, r in enumerate(rows, 1):
            lines.append(f"- {name} #{i}: " + "; ".join(r["notes"]))
    lines += ["", result["explanation"], "", END]
    return "\n".join(lines)


def _load_cell(rows: list, key: str, digits: int = 1) -> str:
    """A figure of ``row["load"]`` over the runs; a run where it never happened shows as 'never'."""
    values = [r["load"].get(key) for r in rows]
    missing = sum(v is None for v in values)
    text = _fmt(values, digits)
    return text if not missing else ("never" if missing == len(values) else f"{text}, {missing}x never")


def _workers(n: int) -> str:
    return "worker: " if n == 1 else f"{n} workers sharing them (the worker kill kills one), each: "


def _starts(result: dict) -> str:
    beds, stagger = result["beds"], result.get("stagger_s") or 1.0
    if stagger <= 1.0:
        return (f"bed i starts i/{beds} s after bed 0 (as `hfrisk replay` staggers them by default), so every 5 s "
                "all beds' windows fall due within one second.")
    return (f"bed i starts i/{beds} x {stagger:g} s after bed 0 (`hfrisk replay --stagger-s {stagger:g}`), so the "
            f"beds' windows fall due spread over {stagger:g} s, as on a ward whose monitors were attached at "
            "different times.")


def load_markdown(result: dict) -> str:
    """docs/bench/faults-at-load-<beds>.md: the fault scenarios while ``beds`` beds stream in real time."""
    # Runs from before these settings were recorded used the then defaults.
    w = result.get("worker", {"prep_workers": 2, "batch_size": 32, "batch_timeout_s": 0.2, "checkpoint_interval_s": 2})
    lines = [
        f"# Faults at load: {result['beds']} beds in real time",
        "",
        "Generated by `bench/bench_faults.py --real-time`; do not edit by hand. What it shows: "
        "[reliability.md, \"At load\"](../reliability.md#at-load).",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_before']} before, {result['machine']['load_after']} after (after each run: "
        "see the notes); " f"{result['repeats']} run(s) per fault.  ",
        f"Stream: {result['beds']} beds of PTB-XL 500 Hz recordings (looped), {result['duration_s']:g} s each as 1-s "
        f"chunks, each sent when its last sample is due; {_starts(result)} {result['windows']} "
        f"windows of 10 s every 5 s, {result['alert_events']} alert events expected. The fault comes "
        f"{result['fault_at_s']:g} s into the stream (Triton / Redis down {result['down_s']:g} s). 4 partitions; "
        f"{_workers(w.get('workers', 1))}{w['prep_workers']} preprocessing processes, batch {w['batch_size']} / "
        f"{w['batch_timeout_s']:g} s, "
        f"checkpoint every {w['checkpoint_interval_s']:g} s; session timeout 6 s. Kafka, Redis, Triton, the feed "
        "and the worker(s) share the machine.",
        "",
        "Seconds; with several runs: median (min–max). *Latency* of a window: Redis write - when its last sample "
        "was due. *Fault*: as in docs/reliability.md (kill/stop until the server is ready again; worker kill: "
        "until the replacement process is up; rebalance: second worker's start until it has left). From the end "
        "of the fault: *first window* written after it; *back in real time*: the first moment from which no "
        "window due more than 1 s earlier is still unwritten and the windows written in the next 10 s have "
        "latency p95 <= 1 s; *drained*: the last window due before the end of the fault is written. *Peak "
        "latency* / *peak backlog*: from the fault's start until 10 s after back in real time (to the end when "
        "never back), the longest latency of a window written then / the most windows due and not yet written at "
        "one moment (without a fault, part of each burst: see *baseline*). *p95 before / after*: windows written "
        "before the fault / from back in real time on. *Feed lag*: how late the feed sent its latest chunk at worst.",
        "",
        "| fault | fault (s) | windows expected / written / duplicates / lost | scores off | alerts consistent "
        "| p95 before (s) | first window (s) | back in real time (s) | drained (s) | peak latency (s) "
        "| peak backlog | p95 after (s) | redelivered | dead letters | feed lag (s) |",
        "| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in result["faults"].items():
        lines.append(
            f"| {name} | {_fmt([r['fault_s'] for r in rows]) if name != 'baseline' else '–'} "
            f"| {_exactly_once_cells(rows)} "
            f"| {_load_cell(rows, 'before_p95_s', 2)} | {_load_cell(rows, 'first_s')} | {_load_cell(rows, 'back_s')} "
            f"| {_load_cell(rows, 'drained_s')} | {_load_cell(rows, 'peak_latency_s')} "
            f"| {_load_cell(rows, 'peak_backlog', 0)} | {_load_cell(rows, 'after_p95_s', 2)} "
            f"| {sum(r['redelivered'] for r in rows)} | {sum(r['dead_letters'] for r in rows)} "
            f"| {_load_cell(rows, 'feed_max_lag_s', 2)} |"
        )
    if result.get("unfinished"):
        lines += ["", "Runs that did not finish (no row above; the servers were kept for the next run):", ""]
        lines += [f"- {r['fault']}: {r['error']}; load average after {r['load_average']}" for r in result["unfinished"]]
    lines += ["", "Per run: what was done, the latency over the whole run, the notes.", ""]
    for name, rows in result["faults"].items():
        for i, r in enumerate(rows, 1):
            lat = r["load"]["latency_s"] or {}
            lines.append(f"- {name} #{i}: {r['what']}; fault at {r['load']['fault_at_s']:g} s of "
                         f"{r['load']['stream_s']:g} s; latency p50 / p95 / max {lat.get('p50')} / {lat.get('p95')} / "
                         f"{lat.get('max')} s; load average after {r['load_average']}; " + "; ".join(r["notes"]))
    return "\n".join(lines) + "\n"


EXPLANATION = """## What the figures say

* **Exactly once held in every run.** Each window is written to Redis in one transaction with a
  per-window idempotency record, and chunk messages are acknowledged (so committed) only after their windows
  are written and the patients' buffers saved ([the stream worker, "At-least-once, and why it holds"](stream-worker.md#at-least-once-and-why-it-holds)). A fault therefore only delays windows:
  what was in flight is redelivered, rebuilt from the saved buffers with the same ids and recognised
  (*redelivered*, summed over the runs, counts the score records re-sent for them; Redis holds each
  window once).
* **Worker SIGKILL**: almost all of the *fault* time is the replacement process starting (imports, the
  preprocessing process warming up) on the 2-core machine; once up it joins the group, restores the
  buffers and redoes everything after the last commit within about 2 s. The kill comes after a checkpoint
  has saved the first 20 s (so that some windows can only be rebuilt from saved buffers); the backlog
  windows written since then are the ones redone and re-sent. Partitions of a worker that vanishes
  without a replacement move after the session timeout (6 s here; Faust's default is 60 s).
* **Rebalance**: the joining worker gets partitions as soon as it is up (see the notes) and restores their
  patients' buffers; the leaving one checkpoints first (SIGTERM), so its partitions resume at once on the
  other worker.
* **Triton / Redis outages**: the batch in progress is held and retried (nothing acknowledged, nothing
  dead-lettered, nothing written meanwhile). Recovery after the server is back is bounded by two backoffs,
  both shortened after the first measurements (a 10-s Triton outage then took 6.1 s, later 5.6 s, to
  recover): the worker's retry cap was 10 s and is now 2 s (`hfrisk worker --retry-max-s`, default 2), and
  gRPC's own reconnect backoff (growing to 120 s; while it runs every call fails at once, so a ready Triton
  went unused) is now 0.25-2 s in `hfrisk.serving.client.RiskClient`. Redis runs with the launcher's
  recommended persistence (AOF, `appendfsync everysec`): neither a SIGTERM nor a SIGKILL of the server lost
  a window, because Redis writes the AOF before it replies; only a machine crash can lose the last second,
  and the chunks of those windows are redelivered unless a checkpoint committed them in that second.
* **Kafka restart**: the worker's consumer and producer reconnect by themselves; a SIGKILLed broker takes
  longer to come back (KRaft keeps the dead broker's registration until its session times out).
* **Stopping**: once (1 stop in ~15, under heavy load) a worker hung at exit for 30 s after Faust had
  stopped cleanly, until it was SIGKILLed. The likeliest cause is its grpc.aio channel to Triton, never
  closed before Faust closed the event loop (cf. grpc/grpc#40989); the channel is now closed on shutdown, and
  as a guarantee a worker still alive 10 s after Faust stopped dumps its stacks and exits with its status
  (the notes say if that happened).
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", nargs="+", choices=LOAD_FAULTS,
                        help=f"default: {' '.join(FAULTS)}; at load also baseline (no fault), first")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--down-s", type=float, default=10.0, help="how long Triton / Redis stay stopped")
    parser.add_argument("--out", type=Path,
                        help="default: docs/reliability.md (its generated block); at load: docs/bench")
    load = parser.add_argument_group("at load (issue #15)")
    load.add_argument("--real-time", action="store_true", help="stream --beds beds in real time through each fault")
    load.add_argument("--beds", type=int, help="beds streaming in real time (with --real-time)")
    load.add_argument("--duration-s", type=float, default=150.0, help="signal per bed at load")
    # A fresh worker takes ~30 s at 192 beds to reach real time (first batches: filter plans,
    # Triton's first calls): the fault comes once it has.
    load.add_argument("--fault-at-s", type=float, default=40.0, help="when the fault comes, from the stream's start")
    load.add_argument("--stagger-s", type=float, default=None,
                      help="spread the beds' starts over this many seconds (default: one chunk, a burst every 5 s)")
    load.add_argument("--batch-size", type=int, default=32, help="the worker's micro-batch (chunks)")
    load.add_argument("--workers", type=int, default=1, help="worker processes sharing the partitions")
    load.add_argument("--prep-workers", type=int, default=2, help="preprocessing processes per worker")
    args = parser.parse_args(argv)
    if args.real_time != (args.beds is not None):
        parser.error("--beds and --real-time go together (without them: 3 beds, as fast as possible)")
    if args.faults is None:
        args.faults = list(LOAD_FAULTS if args.real_time else FAULTS)
    if not args.real_time and "baseline" in args.faults:
        parser.error("baseline (no fault) is a run at load: add --beds N --real-time")
    if args.out is None:
        args.out = Path("docs/bench") if args.real_time else Path("docs/reliability.md")
    with work_dir("faults") as work:
        return run(args, argv, work)


def run(args, argv, work: Path) -> dict:
    import onnxruntime as ort
    from tqdm import tqdm

    from bench.bench_triton import export_model
    from hfrisk.model.contract.card import default_card
    from hfrisk.serving.model_repository import write_model_repository
    from hfrisk.stack.triton_server import TritonServer, models_to_load
    from hfrisk.stack.kafka import KafkaBroker
    from hfrisk.stack.redis_server import RedisServer
    from hfrisk.testing import LOAD_WORKER_ENV, Reference

    card = default_card()
    onnx_path = export_model(work, card)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if args.real_time:
        started = time.monotonic()
        ref = Reference.build(card, session, beds=args.beds, duration_s=args.duration_s, salt="faults-load",
                              stagger_s=args.stagger_s)
        print(f"reference: {len(ref.expected)} windows, {len(ref.expected_events)} alert events, "
              f"{time.monotonic() - started:.0f} s", flush=True)
        load = {"fault_at_s": args.fault_at_s, "batch_size": args.batch_size, "workers": args.workers,
                "prep_workers": args.prep_workers}
    else:
        ref = Reference.build(card, session, beds=3, records=12, salt="faults")
        load = None
    load_before = load_average()
    repo = work / "repository"
    write_model_repository(onnx_path, card, repo, intra_op_threads=1)
    servers: dict = {}
    try:
        servers["kafka"] = KafkaBroker(work / "kafka").start()
        servers["redis"] = RedisServer(work / "redis", persistence="aof").start()
        servers["triton"] = TritonServer(repo, "hfrisk", work_dir=work / "triton",
                                         extra_args=models_to_load(model_name="hfrisk")).start()
        faults: dict[str, list[dict]] = {}
        unfinished: list[dict] = []
        plan = [(name, i) for name in args.faults for i in range(args.repeats)]
        for name, _ in tqdm(plan, desc="faults", unit="run"):
            try:
                out = run_fault(name, ref, servers, work, args.down_s, load)
            except Exception as exc:
                if load is None:
                    raise
                # At load a run can fail to drain in time; the runs before and after it still count.
                unfinished.append({"fault": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                                   "load_average": load_average()})
                print(unfinished[-1], flush=True)
                continue
            row = out.row() | {"load_average": load_average()}
            if not (out.exactly_once and out.alerts_consistent):
                row["notes"].append("**CHECK FAILED**: see the counts")
            print(row, flush=True)
            faults.setdefault(name, []).append(row)
    finally:
        for key in ("triton", "redis", "kafka"):
            if key in servers:
                (servers[key].cleanup if key == "triton" else servers[key].stop)()

    result = {
        "command": command_line("bench_faults", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "machine": machine(load_before),
        "repeats": args.repeats,
        "faults": faults,
        "unfinished": unfinished,
    }
    if args.real_time:
        from hfrisk.core.config import get_settings

        result |= {"beds": args.beds, "duration_s": args.duration_s, "fault_at_s": args.fault_at_s,
                   "down_s": args.down_s, "windows": len(ref.expected), "alert_events": len(ref.expected_events),
                   "stagger_s": args.stagger_s,
                   "worker": {"workers": args.workers, "prep_workers": args.prep_workers, "batch_size": args.batch_size,
                              "batch_timeout_s": float(LOAD_WORKER_ENV["HFRISK_STREAM__BATCH_TIMEOUT_S"]),
                              "checkpoint_interval_s": get_settings().stream.checkpoint_interval_s}}
        save(args.out, f"faults-at-load-{args.beds}", result, load_markdown(result))
        print(load_markdown(result))
        return result
    result["explanation"] = EXPLANATION.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text("# Reliability: recovery from faults on the local stack\n")
    write_marked_block(args.out, markdown(result), BEGIN, END)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
