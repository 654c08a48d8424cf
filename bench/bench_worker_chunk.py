"""The stream worker's own CPU per 1-s chunk, step by step, with preprocessing and the model as no-ops.

    .venv/bin/python -m bench.bench_worker_chunk [--baseline REV] [--baseline-without MODULE ...]
        [--beds 200] [--duration-s 40] [--warmup-s 15] [--repeats 2] [--checkpoint-s S] [--out docs/bench]

Issue #15's goal: at most 0.15 ms of worker CPU per chunk, preprocessing and inference excluded.
This drives :meth:`StreamWorker.handle` and :meth:`StreamWorker.checkpoint` in-process, exactly
as the Faust agent and the checkpoint task call them, on realistic messages:

* the chunks are those the replay producer sends (``hfrisk.stream.ingest.replay.feed``, PTB-XL
  500 Hz int16 records of tests/data, looped): ``--beds`` patients, 1-s chunks, in the feed's
  interleaved order, encoded with ``encode_chunk`` once by this process and given to every run;
* micro-batches of ``stream.batch_size`` (32) chunks; 10-s windows every ``stream.hop_s`` (5 s);
  pseudonymisation on; a checkpoint every ``stream.checkpoint_interval_s`` (``--checkpoint-s``) *of signal
  time*, as a worker keeping up in real time checkpoints (every patient's buffer changed);
* a real Redis server on loopback (``hfrisk.stack.RedisServer``, no persistence) behind the real
  sink, alert policy and buffer store; the publisher keeps the records without sending them
  (Kafka's producer and Faust's per-event work are what ``bench_stream``'s raw consumer measures);
  ``prepare`` hands back one precomputed result and the model is ``NoopScorer``;
* the allocator setting ``hfrisk worker`` applies (``stream.keep_freed_mb``), where the tree has it.

CPU is ``time.process_time`` (every thread of the process: the Redis writes run off the event
loop) summed over the ``handle``/``checkpoint`` calls after ``--warmup-s`` seconds of signal (the
first windows complete after 10 s). Each run is measured twice in a fresh process: once plain
(the headline per-chunk figure) and once with every step's functions wrapped to charge their
thread's CPU (``time.thread_time``) to the step, exclusive of nested steps (the step table;
the wrappers add a little, so its total is a bit above the plain one). The Redis server's own CPU
(``/proc``) is reported beside it, not in it.

The baseline is another commit of the code (``--baseline``, default the commit this benchmark
was written against), extracted with ``git archive`` and imported in its own process in place of
the checkout (``--baseline-without hiredis``: with that package blocked, as for a commit from
before it was a dependency); both run in the same invocation, alternately, ``--repeats`` times;
figures are medians. Results: ``docs/bench/worker-chunk.json`` and ``.md``; the hand-written notes in
``docs/bench/worker-chunk-notes.md`` are appended to the generated page, so regenerating keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import os
import pickle
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from bench.trees import child_json, extract, git, use_tree

ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500"
# The commit before this benchmark's changes to the worker (issue #15, worker cost per chunk).
DEFAULT_BASELINE = "137e9496881a5d5e3cfd87f550b167e3ac6d7d63"
START_US = 1_700_000_000_000_000
PARTITIONS = 4
PSEUDONYM_KEY = b"bench-worker-chunk-key-0123456789"

# Step -> what it covers, in table order.
STEPS = {
    "decode": "Avro body, EcgChunk, key check (decode_record, decode_chunk)",
    "validation": "content rules of the chunk (validate_chunk)",
    "pseudonymisation": "patient id -> HMAC pseudonym (a remembered one is a lookup, counted in decode)",
    "windowing/buffer": "counts -> mV, sequence and grid checks, held signal (PatientBuffer.feed)",
    "assembling windows": "cutting 10-s windows, ECG + Window objects",
    "restore": "first sight of a patient: saved buffer from Redis",
    "score glue": "score_windows (score_parts since 2026-12-05) around the no-op prepare/model: stacking inputs, rows",
    "records": "WindowResult, score records (JSON), outbound messages",
    "alert policy": "hysteresis per scored window",
    "Redis encoding": "hash fields, members, idempotency record",
    "Redis writes": "WATCH/MULTI/EXEC round trips, client, off-loop thread hand-off",
    "publish (no Kafka)": "handing the records to the publisher",
    "metrics": "Prometheus counters, histograms, model monitor",
    "checkpoint: serialise": "changed buffers to bytes",
    "checkpoint: Redis": "saving them",
    "acknowledgement": "ledger (touched/processed) and ack calls",
    "batch plumbing": "handle (its front and tail)/_assemble/_checkpoint themselves: lock, tasks, event loop",
}
EXCLUDED = ("no-op prepare", "no-op model")


# --- messages -----------------------------------------------------------------------------------


def make_messages(beds: int, duration_s: float) -> list[dict]:
    """Encoded 1-s chunks of ``beds`` monitors as the replay producer makes them, in feed order."""
    from hfrisk.stream.ingest.replay import feed
    from hfrisk.stream.messages import encode_chunk

    out = []
    offsets: Counter = Counter()
    for due_s, chunk in feed([RECORDS_DIR], beds=beds, duration_s=duration_s, loop=True, start_us=START_US):
        key = chunk.key
        partition = int.from_bytes(key[-2:], "big") % PARTITIONS
        out.append({
            "key": key, "value": encode_chunk(chunk), "partition": partition, "offset": offsets[partition],
            "timestamp_ms": (START_US // 1000) + round(due_s * 1000), "due_s": due_s,
        })
        offsets[partition] += 1
    return out


# --- the step clock (child process) ---------------------------------------------------------


class StepClock:
    """Per-step thread CPU, exclusive of nested wrapped calls (a stack per thread)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._local = threading.local()
        self.on = True

    def _stack(self) -> list[float]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _close(self, step: str, t0: float, stack: list[float]) -> None:
        elapsed = time.thread_time() - t0
        child = stack.pop()
        if self.on:
            self.cpu[step] += elapsed - child
            self.calls[step] += 1
        if stack:
            stack[-1] += elapsed

    def wrap(self, step: str, fn):
        clock = self
        if inspect.isasyncgenfunction(fn):
            # Each step of the generator (up to its next yield) is one call of the step.
            @functools.wraps(fn)
            async def agenwrapper(*args, **kwargs):
                gen = fn(*args, **kwargs)
                try:
                    while True:
                        stack = clock._stack()
                        stack.append(0.0)
                        t0 = time.thread_time()
                        try:
                            item = await gen.__anext__()
                        except StopAsyncIteration:
                            return
                        finally:
                            clock._close(step, t0, stack)
                        yield item
                finally:
                    await gen.aclose()
            return agenwrapper
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args, **kwargs):
                stack = clock._stack()
                stack.append(0.0)
                t0 = time.thread_time()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    clock._close(step, t0, stack)
            return awrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            stack = clock._stack()
            stack.append(0.0)
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                clock._close(step, t0, stack)
        return wrapper

    def patch(self, owner, name: str, step: str) -> bool:
        """Wrap ``owner.name`` (a module function, method, classmethod or staticmethod) if it exists."""
        raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if raw is None:
            return False
        if isinstance(raw, classmethod):
            setattr(owner, name, classmethod(self.wrap(step, raw.__func__)))
        elif isinstance(raw, staticmethod):
            setattr(owner, name, staticmethod(self.wrap(step, raw.__func__)))
        else:
            setattr(owner, name, self.wrap(step, raw))
        return True


def instrument(clock: StepClock) -> list[str]:
    """Wrap the worker's functions by step; returns the ``module.name`` patched (a name a commit
    lacks is skipped, so the baseline and the current code are measured by the same table)."""
    import importlib

    plan = [
        # Names are patched where the caller looks them up (``from x import f`` copies the binding).
        ("hfrisk.stream.worker.pipeline", None, "decode_record", "decode"),
        ("hfrisk.stream.messages.codec", None, "validate_chunk", "validation"),
        ("hfrisk.stream.worker.pipeline", "StreamWorker", "_feed", "windowing/buffer"),
        ("hfrisk.stream.windowing.buffer", "PatientBuffer", "_emit_ready", "assembling windows"),
        ("hfrisk.stream.worker.pipeline", "StreamWorker", "_restore", "restore"),
        ("hfrisk.stream.worker.pipeline", None, "score_windows", "score glue"),
        ("hfrisk.stream.worker.pipeline", None, "score_parts", "score glue"),
        ("hfrisk.stream.sinks.records", "WindowResult", "from_scoring", "records"),
        ("hfrisk.stream.worker.pipeline", None, "outbound_messages", "records"),
        ("hfrisk.stream.alerts.policy", "AlertPolicy", "observe", "alert policy"),
        ("hfrisk.stream.sinks.redis_sink", "RedisSink", "write_window_result", "Redis writes"),
        ("hfrisk.stream.sinks.redis_sink", "RedisSink", "_write_group", "Redis writes"),
        ("hfrisk.stream.sinks.redis_sink", "RedisSink", "write_skipped", "Redis writes"),
        ("hfrisk.stream.worker.pipeline", "StreamWorker", "_write", "Redis writes"),
        ("hfrisk.stream.worker.pipeline", None, "count_batch", "metrics"),
        ("hfrisk.stream.windowing.buffer", "PatientBuffer", "to_bytes", "checkpoint: serialise"),
        ("hfrisk.stream.worker.buffer_store", "BufferStore", "save_many", "checkpoint: Redis"),
        ("hfrisk.stream.worker.checkpoints", "Checkpoints", "touched", "acknowledgement"),
        ("hfrisk.stream.worker.checkpoints", "Checkpoints", "processed", "acknowledgement"),
        ("hfrisk.stream.worker.pipeline", "StreamWorker", "handle", "batch plumbing"),
        ("hfrisk.stream.worker.pipeline", "StreamWorker", "_checkpoint", "batch plumbing"),
    ]
    for name in ("latest_fields", "patient_fields", "window_record", "quality_record", "trend_member",
                 "gap_record", "alert_entry", "recorded_events"):
        plan.append(("hfrisk.stream.sinks.encoding", None, name, "Redis encoding"))
    patched = []
    for module_name, class_name, name, step in plan:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        if clock.patch(owner, name, step):
            patched.append(f"{module_name}.{class_name + '.' if class_name else ''}{name}")
    return patched


# --- one run (child process) ----------------------------------------------------------------


def _proc_cpu_s(pid: int | None) -> float:
    if not pid:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(messages_path: Path, instrumented: bool, warmup_s: float) -> dict:

    from hfrisk.core.config import get_settings
    from hfrisk.core.pseudonym import Pseudonymiser
    from hfrisk.model.contract.card import default_card
    from hfrisk.model.frontend.preprocessing import prepare
    from hfrisk.stack.redis_server import RedisServer
    from hfrisk.stream.alerts.policy import AlertPolicy
    from hfrisk.stream.scoring.batch import NoopScorer
    from hfrisk.stream.sinks import RedisSink
    from hfrisk.stream.windowing import Window, WindowAssembler
    from hfrisk.stream.worker.buffer_store import BufferStore
    from hfrisk.stream.worker.metrics import StreamMetrics
    from hfrisk.stream.worker.pipeline import StreamWorker, WorkerOptions
    from hfrisk.stream.worker.records import ChunkRecord

    import hfrisk.stream
    from hfrisk.core.logs import configure_logging

    messages = pickle.loads(messages_path.read_bytes())
    settings = get_settings()
    configure_logging(settings.log.level, settings.log.json_logs)  # as `hfrisk worker` does: no debug lines
    card = default_card()
    stream = settings.stream
    # The allocator as `hfrisk worker` sets it: in hfrisk.core since 2026-12-06, in the worker's
    # package before, and a tree from before 2026-12-05 has no such setting.
    try:
        from hfrisk.core.allocator import keep_freed_memory
    except ImportError:
        try:
            from hfrisk.stream.worker.allocator import keep_freed_memory
        except ImportError:
            keep_freed_memory = None
    if keep_freed_memory is not None:
        keep_freed_memory(stream.keep_freed_mb)

    # One real prepare() result (a window fit to score), handed back for every window: preprocessing
    # costs nothing here, and the sink still sees realistic quality, beats and attention.
    from hfrisk.stream.messages import decode_chunk

    probe = WindowAssembler(window_s=card.window.window_s, hop_s=stream.hop_s)
    prepared = None
    for m in messages:
        chunk = decode_chunk(m["value"], max_bytes=settings.kafka.max_message_bytes)
        for outcome in probe.feed(chunk):
            if isinstance(outcome, Window):
                candidate = prepare(outcome.ecg, card)
                if candidate.quality.fit_to_score:
                    prepared = candidate
                    break
        if prepared is not None:
            break
    assert prepared is not None, "no window fit to score in the feed"

    class NoopPreprocessor:
        async def prepare(self, ecgs):
            return [prepared] * len(ecgs)

        def parts(self, ecgs):
            return [(0, self.prepare(ecgs))] if ecgs else []

    class KeepingPublisher:
        def __init__(self) -> None:
            self.sent = 0

        async def publish(self, messages):
            self.sent += len(messages)

    clock = StepClock()
    patched = instrument(clock) if instrumented else []
    pseudonymiser = Pseudonymiser(PSEUDONYM_KEY)
    pseudonymise = clock.wrap("pseudonymisation", pseudonymiser) if instrumented else pseudonymiser
    preprocessor = NoopPreprocessor()
    scorer = NoopScorer(card)
    publisher = KeepingPublisher()
    if instrumented:
        publisher.publish = clock.wrap("publish (no Kafka)", publisher.publish)
        preprocessor.prepare = clock.wrap("no-op prepare", preprocessor.prepare)
        scorer.infer = clock.wrap("no-op model", scorer.infer)

    acks = [0]

    async def ack() -> None:
        acks[0] += 1

    if instrumented:
        ack = clock.wrap("acknowledgement", ack)

    records = [
        (m["due_s"], ChunkRecord(value=m["value"], key=m["key"], topic=settings.kafka.ecg_topic,
                                 partition=m["partition"], offset=m["offset"], timestamp_ms=m["timestamp_ms"],
                                 ack=ack))
        for m in messages
    ]

    with tempfile.TemporaryDirectory(prefix="bench-worker-chunk-") as tmp, \
            RedisServer(Path(tmp) / "redis", persistence="none") as server:
        client = server.client()
        metrics = StreamMetrics()
        worker = StreamWorker(
            card=card,
            assembler=WindowAssembler.from_settings(card, stream),
            preprocessor=preprocessor,
            scorer=scorer,
            sink=RedisSink(client, "bench", policy=AlertPolicy.from_settings(stream, risk_scale=card.risk_scale)),
            store=BufferStore(client, "bench", settings.redis.patient_ttl_s),
            publisher=publisher,
            metrics=metrics,
            # Checkpoints are driven below on signal time, not by the wall clock of this fast run.
            options=WorkerOptions(checkpoint_interval_s=1e9, max_message_bytes=settings.kafka.max_message_bytes),
            pseudonymise=pseudonymise,
        )

        async def go() -> dict:
            cpu = counted_chunks = checkpoints = 0
            windows_before = 0.0
            redis_cpu0 = None
            next_checkpoint_s = stream.checkpoint_interval_s
            wall0 = None
            for i in range(0, len(records), stream.batch_size):
                batch = records[i: i + stream.batch_size]
                counting = batch[0][0] >= warmup_s
                if counting and redis_cpu0 is None:
                    clock.cpu.clear()
                    clock.calls.clear()
                    redis_cpu0 = _proc_cpu_s(server.pid)
                    windows_before = metrics.value("hfrisk_windows_total", outcome="scored")
                    wall0 = time.perf_counter()
                t0 = time.process_time()
                await worker.handle([r for _, r in batch])
                if batch[-1][0] >= next_checkpoint_s:
                    await worker.checkpoint()
                    checkpoints += counting
                    next_checkpoint_s += stream.checkpoint_interval_s
                if counting:
                    cpu += time.process_time() - t0
                    counted_chunks += len(batch)
            await worker.checkpoint()
            return {
                "chunks": counted_chunks,
                "cpu_s": cpu,
                "wall_s": time.perf_counter() - wall0,
                "windows_scored": metrics.value("hfrisk_windows_total", outcome="scored") - windows_before,
                "checkpoints": checkpoints,
                "redis_server_cpu_s": _proc_cpu_s(server.pid) - redis_cpu0,
                "acks": acks[0],
                "published": publisher.sent,
            }

        result = asyncio.run(go())
    result["steps_us_per_chunk"] = {step: 1e6 * s / result["chunks"] for step, s in clock.cpu.items()}
    result["calls"] = dict(clock.calls)
    result["patched"] = patched
    result["code"] = str(Path(hfrisk.stream.__file__).parent)
    result["instrumented"] = instrumented
    result["windows_per_chunk"] = result["windows_scored"] / result["chunks"]
    return result


# --- the parent -------------------------------------------------------------------------------


def child(messages: Path, tree: str | None, instrumented: bool, warmup_s: float, without: list[str]) -> dict:
    args = ["--child", str(messages), "--warmup-s", str(warmup_s)]
    if without:
        args += ["--without", *without]
    if tree:
        args += ["--tree", tree]
    if instrumented:
        args.append("--instrumented")
    return child_json("bench.bench_worker_chunk", args)


def median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def summarise(runs: list[dict]) -> dict:
    plain = [r for r in runs if not r["instrumented"]]
    inst = [r for r in runs if r["instrumented"]]
    steps = {}
    for step in list(STEPS) + list(EXCLUDED):
        steps[step] = round(median([r["steps_us_per_chunk"].get(step, 0.0) for r in inst]), 2)
    total_inst = median([1e6 * r["cpu_s"] / r["chunks"] for r in inst])
    excluded = sum(steps[s] for s in EXCLUDED)
    steps["unattributed"] = round(total_inst - sum(steps.values()), 2)
    return {
        "cpu_us_per_chunk": round(median([1e6 * r["cpu_s"] / r["chunks"] for r in plain]), 1),
        "cpu_us_per_chunk_runs": [round(1e6 * r["cpu_s"] / r["chunks"], 1) for r in plain],
        "instrumented_cpu_us_per_chunk": round(total_inst, 1),
        "instrumented_excluding_noops_us_per_chunk": round(total_inst - excluded, 1),
        "steps_us_per_chunk": steps,
        "redis_server_cpu_us_per_chunk": round(median([1e6 * r["redis_server_cpu_s"] / r["chunks"] for r in plain]), 1),
        "chunks": plain[0]["chunks"],
        "windows_per_chunk": round(plain[0]["windows_per_chunk"], 4),
        "checkpoints": plain[0]["checkpoints"],
        "patched": inst[0]["patched"],
        "code": plain[0]["code"],
    }


def markdown(result: dict) -> str:
    b, a = result["baseline"], result["current"]
    p = result["params"]
    lines = [
        "# Worker CPU per chunk (issue #15): the worker's own steps, preprocessing and model as no-ops",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs ({result['machine']['processor']}), "
        f"load average {result['machine']['load_before']} before, {result['machine']['load_after']} after.  ",
        f"Baseline: commit `{result['baseline_rev'][:12]}` (extracted and run in its own process"
        f"{''.join(f', without {m}' for m in p.get('baseline_without', []))}); current: "
        f"the checkout at `{result['current_rev'][:12]}`{' (with uncommitted changes)' if result['dirty'] else ''}. "
        f"Each measured {p['repeats']} time(s) alternately, plain and instrumented; medians.  ",
        f"Workload: {p['beds']} beds x {p['duration_s']:g} s of 1-s PTB-XL chunks (replay feed order, "
        f"{a['chunks']} chunks counted after {p['warmup_s']:g} s of warm-up), micro-batches of "
        f"{p['batch_size']}, 10-s windows every {p['hop_s']:g} s ({a['windows_per_chunk']:.3f} scored windows "
        f"per chunk), pseudonymisation on, a checkpoint every {p['checkpoint_s']:g} s of signal time "
        f"({a['checkpoints']} counted), real Redis on loopback, Kafka not involved.",
        "",
        "| | baseline | current |",
        "| --- | ---: | ---: |",
        f"| **worker CPU per chunk (µs), plain run** | **{b['cpu_us_per_chunk']}** | **{a['cpu_us_per_chunk']}** |",
        f"| runs | {b['cpu_us_per_chunk_runs']} | {a['cpu_us_per_chunk_runs']} |",
        f"| instrumented run, no-ops excluded (µs) | {b['instrumented_excluding_noops_us_per_chunk']} | "
        f"{a['instrumented_excluding_noops_us_per_chunk']} |",
        f"| Redis server CPU per chunk (µs, not in the above) | {b['redis_server_cpu_us_per_chunk']} | "
        f"{a['redis_server_cpu_us_per_chunk']} |",
        "",
        f"Goal: <= 150 µs per chunk. Current: {a['cpu_us_per_chunk']} µs — "
        f"**{'met' if a['cpu_us_per_chunk'] <= 150 else 'not met'}**"
        f" ({b['cpu_us_per_chunk'] / a['cpu_us_per_chunk']:.1f}x less than the baseline).",
        "",
        "## Step table (µs of CPU per chunk, instrumented runs)",
        "",
        "| step | what | baseline | current |",
        "| --- | --- | ---: | ---: |",
    ]
    for step, what in list(STEPS.items()) + [("unattributed", "process CPU outside the wrapped steps (GC, "
                                                               "threads, wrappers)")]:
        lines.append(f"| {step} | {what} | {b['steps_us_per_chunk'][step]} | {a['steps_us_per_chunk'][step]} |")
    lines.append(f"| (excluded) no-op prepare + model | stand-ins for preprocessing and inference | "
                 f"{round(sum(b['steps_us_per_chunk'][s] for s in EXCLUDED), 2)} | "
                 f"{round(sum(a['steps_us_per_chunk'][s] for s in EXCLUDED), 2)} |")
    lines += [
        "",
        f"Per chunk = per 1-s message; a window (every {p['hop_s']:g} s per patient) and a checkpoint "
        f"(every {p['checkpoint_s']:g} s, every patient) are spread over the chunks. Thread CPU per step "
        "excludes nested steps; the plain run has no wrappers, so its total is the figure to compare with the goal.",
        "",
    ]
    notes = ROOT / "docs" / "bench" / "worker-chunk-notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--beds", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=40.0)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpoint-s", type=float, default=None,
                        help="stream.checkpoint_interval_s for both runs (default: each tree's own setting: 5 s since 2026-12-05, 2 s before; give it to compare like with like)")
    parser.add_argument("--baseline-without", nargs="*", default=[], metavar="MODULE",
                        help="modules the baseline's run may not import, as it did not depend on them (e.g. hiredis, "
                             "which redis-py would otherwise pick up for the baseline too)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--without", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--instrumented", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        for name in args.without:
            sys.modules[name] = None  # its import now raises ImportError, as if it were not installed
        if args.tree:
            use_tree(args.tree)
        print(json.dumps(run_child(args.child, args.instrumented, args.warmup_s)))
        return

    if args.checkpoint_s is not None:  # the children read it from their settings, as a worker does
        os.environ["HFRISK_STREAM__CHECKPOINT_INTERVAL_S"] = str(args.checkpoint_s)
    from hfrisk.core.config import get_settings

    load_before = load_average()
    stream = get_settings().stream
    with tempfile.TemporaryDirectory(prefix="bench-worker-chunk-") as tmp:
        tree = extract(args.baseline, Path(tmp) / "baseline")
        messages = Path(tmp) / "messages.pickle"
        messages.write_bytes(pickle.dumps(make_messages(args.beds, args.duration_s)))
        runs: dict[str, list[dict]] = {"baseline": [], "current": []}
        for repeat in range(args.repeats):
            for instrumented in (False, True):
                for name, where in (("baseline", str(tree)), ("current", None)):
                    without = args.baseline_without if name == "baseline" else []
                    run = child(messages, where, instrumented, args.warmup_s, without)
                    runs[name].append(run)
                    print(f"[{repeat}] {name:8s} {'instrumented' if instrumented else 'plain':12s} "
                          f"{1e6 * run['cpu_s'] / run['chunks']:7.1f} µs/chunk", file=sys.stderr, flush=True)
    result = {
        "command": command_line("bench_worker_chunk", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(load_before),
        "baseline_rev": git("rev-parse", args.baseline),
        "current_rev": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "stream", "hfrisk", "model")),
        "params": {"beds": args.beds, "duration_s": args.duration_s, "warmup_s": args.warmup_s,
                   "repeats": args.repeats, "batch_size": stream.batch_size, "hop_s": stream.hop_s,
                   "checkpoint_s": stream.checkpoint_interval_s, "baseline_without": args.baseline_without},
        "baseline": summarise(runs["baseline"]),
        "current": summarise(runs["current"]),
    }
    text = markdown(result)
    if args.out:
        save(args.out, "worker-chunk", result, text)
    print(text)


if __name__ == "__main__":
    main()
