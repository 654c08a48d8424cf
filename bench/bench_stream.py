"""Stream throughput and latency: replayed beds -> Kafka -> ``hfrisk worker`` -> Triton -> Redis.

    .venv/bin/python -m bench.bench_stream [--beds 4 16 64] [--duration-s 60]
        [--realtime-beds 8 16 32 64 128 192 256] [--realtime-s 30] [--realtime-stagger-s 1 5]
        [--realtime-warmup-s 90] [--only throughput,realtime,overhead]
        [--out docs/bench]

Everything runs on this machine on loopback: a KRaft Kafka broker, Redis, Triton (pytriton wheel,
untrained HFRiskNet: the compute of a trained one, one ONNX Runtime thread), and the worker as
a subprocess exactly as ``hfrisk worker`` runs it (one preprocessing process). Measured in one run
(``--only`` runs some sections and keeps the others from ``<out>/stream.json``, each section
naming the run it came from):

1. **Throughput** for each ``--beds`` N: N beds of PTB-XL 500 Hz records (tests/data, looped),
   ``--duration-s`` of signal each, replayed as fast as possible (``replay(realtime=False)``)
   while the worker consumes. Scored windows/s = windows / (last Redis write - replay start);
   steady windows/s = the rate once windows come out (start-up excluded).
   Latency per window = its Redis write - the Kafka timestamp of the chunk that completed it
   (when that chunk entered Kafka): under an as-fast-as-possible replay this is mostly the
   backlog the worker is draining. **Stream efficiency** (issue #15) = steady windows/s /
   (cores x windows/s that one core reaches doing only ``prepare`` + ONNX Runtime in-process on the
   same windows, one thread, measured in the same run before the servers start and again after the
   throughput runs, the mean of the two): goal >= 0.6. The earlier ratio (windows/s
   / raw ONNX Runtime batched windows/s) is kept as a secondary column.
2. **Infrastructure overhead** (issue #15): the worker with ``--noop-model --noop-prep`` against
   a raw Faust consumer with the same app settings that only receives and acknowledges the same
   pre-produced messages. Chunks/s of each, ratio goal >= 0.5. ``--noop-model`` makes the Triton
   call a no-op (``NoopScorer``); ``--noop-prep`` starts no preprocessing pool and treats every
   window as fit with an all-zero model input (``NoopPreprocessor``): what is left is decoding,
   windowing, records, Redis writes, alerts, publishing and checkpoints. The worker with
   ``--noop-model`` alone (real ``prepare`` in its pool) is measured beside it: the gap between the
   two is preprocessing. A second raw consumer runs on Faust as it comes (``stream.eager_delivery``
   off; the workers and the first raw consumer deliver eagerly), and the ratios against it are
   reported beside the goal's. A third, the floor consumer, does on the raw consumer's app only
   what any worker must (decode, hold the counts as mV, one Redis record a window): the page says
   how much of the goal's budget per chunk that leaves for everything else.
3. **Real time**: N beds replayed at real time (``replay(realtime=True)``, monitors staggered) for
   ``--realtime-s``; latency = Redis write - acquisition time of the window's last sample, the
   ``hfrisk_end_to_end_latency_seconds`` definition. A bed count is sustained when p95 <= 1 s and
   every window is written within 5 s of the replay's end. The sweep stops at the first failure;
   one sweep per ``--realtime-stagger-s`` (the beds' starts spread over 1 s, a burst of windows every
   5 s, and over the 5-s hop, as monitors attached at different times), with the CPU each process
   used while the replay ran, the broker's JIT compiler threads' share of it, and the p95 of each
   10 s of the run (whether its tail grows). Before the sweeps, ``--realtime-warmup-s`` (90) of
   the first bed count in real time, not counted: a freshly started broker compiles its hot code
   in its first minute under load, which a ward running for days does not see.

Progress is polled 20 times a second from each worker's ``/metrics``, filtered to the two counters
it needs (``BENCH_FULL_SCRAPE=1``: the whole exposition, as before 2026-12-06, which cost the
no-op worker about a tenth of its rate; docs/bench/stream-tuning.md).

Results go to ``docs/bench/stream.json`` and ``docs/bench/stream.md`` with the command line.
The replay, Kafka, Redis, Triton and the worker all share the machine's CPUs (on the development
machine also with other engineers' jobs: see the load average), so absolute figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.process_cpu import (MACHINE, MAIN_THREAD, OTHER_THREADS, CpuMeter, jit_compiler_cpu_s, machine_busy_s,
                                thread_cpu_s)
from bench.record import command_line, load_average, machine, save, work_dir
from hfrisk.testing.realtime import percentiles

RECORDS_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500"
WAIT_S = 600.0


# --- the raw consumer (the baseline of part 2), run as a subprocess of the benchmark --------------


def raw_consumer(metrics_port: int, web_port: int, app_id: str) -> None:
    """A Faust app with the worker's settings whose agent only receives and acknowledges chunks."""
    from hfrisk.core.config import get_settings

    _consume_chunks("raw-consumer", get_settings(), metrics_port, web_port, app_id)


def floor_consumer(metrics_port: int, web_port: int, app_id: str) -> None:
    """The raw consumer plus the least any worker must do with a chunk: decode its Avro record,
    divide its counts into the patient's held block, and write one record to Redis for every
    window it completes (10-s windows every 5 s of 1-s chunks). Nothing the other goals add:
    no validation, dead letters, pseudonyms, ordering or gap rules, checkpoints, alerts, Kafka
    records or metrics beyond the progress counter. Its chunks/s and CPU say how much of the goal's
    budget a chunk is left for those (docs/bench/stream-tuning.md, "the floor, measured")."""
    import io
    import json as json_module

    import fastavro

    from hfrisk.core.config import get_settings
    from hfrisk.core.security import redis_client
    from hfrisk.stream.messages.schema import HEADER_BYTES, SAMPLE_DTYPES, SCHEMA

    settings = get_settings()
    client = redis_client(settings.redis)
    prefix = settings.redis.key_prefix
    window_chunks, hop_chunks = 10, 5
    held: dict[str, np.ndarray] = {}
    # As a worker does (chunk._calibration): a device's gains become an array once, not per chunk.
    gains_of: dict[tuple, np.ndarray] = {}

    def hold_and_write(events) -> None:
        pipe = client.pipeline(transaction=False)
        for event in events:
            body = io.BytesIO(event.message.value)
            body.seek(HEADER_BYTES)
            record = fastavro.schemaless_reader(body, SCHEMA, None)
            n_leads, n = len(record["lead_names"]), record["n_samples"]
            counts = np.frombuffer(record["samples"], SAMPLE_DTYPES[record["sample_dtype"]]).reshape(n_leads, n)
            patient, sequence = record["patient_id"], record["sequence"]
            block = held.get(patient)
            if block is None:
                block = held[patient] = np.empty((n_leads, window_chunks * n), np.float32)
            slot = sequence % window_chunks
            key = tuple(record["gains"])
            gains = gains_of.get(key)
            if gains is None:
                gains = gains_of[key] = np.asarray(key, np.float32)[:, None]
            np.divide(counts, gains, out=block[:, slot * n:(slot + 1) * n])
            if sequence >= window_chunks - 1 and sequence % hop_chunks == hop_chunks - 1:
                start_us = record["acquired_at_us"] - round((window_chunks - 1) * 1e6)
                pipe.set(f"{prefix}:floor:{patient}:{start_us}",
                         json_module.dumps({"patient_id": patient, "window_start_us": start_us, "log_risk": 0.0}),
                         ex=3600)
        if len(pipe):
            pipe.execute()

    _consume_chunks("floor-consumer", settings, metrics_port, web_port, app_id, hold_and_write)


def _consume_chunks(name: str, settings, metrics_port: int, web_port: int, app_id: str, work=None) -> None:
    """Run a Faust app with the worker's settings whose agent takes the chunks in the worker's
    micro-batches, calls ``work(events)`` on each batch if given, acknowledges every chunk and
    counts them on ``/metrics`` (what the benchmark's progress polls read)."""
    import faust

    from hfrisk.core.collector import tune_collector
    from hfrisk.stream.worker.app import chunk_topic, create_app
    from hfrisk.stream.worker.metrics import StreamMetrics

    metrics = StreamMetrics()
    app = create_app(settings, app_id=app_id, web_port=web_port)
    stream_settings = settings.stream

    @app.agent(chunk_topic(app, settings.kafka), name=name)
    async def consume(stream):
        async for events in stream.noack_take(stream_settings.batch_size, within=stream_settings.batch_timeout_s):
            if work is not None:
                work(events)
            for event in events:
                await stream.ack(event)
            metrics.chunks.labels(outcome="accepted").inc(len(events))

    metrics.serve(metrics_port)
    # The worker's collector settings too (hfrisk/core/collector.py): the baseline gets what the
    # worker gets from being a long-running process, so the ratio compares the work per message.
    tune_collector(freeze=stream_settings.gc_freeze, young_threshold=stream_settings.gc_young_threshold)
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


# --- helpers ------------------------------------------------------------------------------------


# What the progress polls read: only these families are rendered (see scrape_metrics), not the
# worker's whole exposition twenty times a second.
_POLLED = () if os.environ.get("BENCH_FULL_SCRAPE") else ("hfrisk_windows_total", "hfrisk_chunks_total")


def windows_done(port: int | Sequence[int]) -> float:
    """Windows a worker (or, given several ports, a group of workers) has finished."""
    from hfrisk.testing import scrape_metrics

    total = 0.0
    for one in [port] if isinstance(port, int) else port:
        m = scrape_metrics(one, names=_POLLED)
        total += sum(m.get(f'hfrisk_windows_total{{outcome="{o}"}}', 0.0) for o in ("scored", "low_quality", "dead_letter"))
    return total


class WorkerGroup:
    """Several ``hfrisk worker`` processes of one consumer group, standing in for one where the
    real-time runs need a process: ``pid`` is the first's, ``running()`` whether all run."""

    def __init__(self, procs: list):
        self.procs = procs
        self.name = "+".join(p.name for p in procs)
        self.pid = procs[0].pid

    def running(self) -> bool:
        return all(p.running() for p in self.procs)

    def tail_log(self, lines: int) -> str:
        return "\n".join(p.tail_log(lines) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def chunks_done(port: int) -> float:
    from hfrisk.testing import scrape_metrics

    m = scrape_metrics(port, names=_POLLED)
    return sum(m.get(f'hfrisk_chunks_total{{outcome="{o}"}}', 0.0) for o in ("accepted", "duplicate", "late", "dead_letter"))


def wait_for(count, target: float, timeout_s: float, proc) -> list[tuple[float, float]]:
    """Poll ``count()`` until it reaches ``target``; returns (time, count) samples."""
    samples = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.running():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail_log(40)}")
        value = count()
        samples.append((time.time(), value))
        if value >= target:
            return samples
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name}: {samples[-1][1] if samples else 0} of {target} after {timeout_s:.0f} s")


def _steady(samples: list[tuple[float, float]]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The sample just before the first that saw progress, and the last; ``None`` without progress."""
    first = next((i for i, (_, v) in enumerate(samples) if v > samples[0][1]), None)
    return None if first is None else (samples[max(0, first - 1)], samples[-1])


def rate_from(samples: list[tuple[float, float]]) -> float:
    """Items/s from the first sample that saw progress to the last: start-up time excluded."""
    ends = _steady(samples)
    if ends is None:
        return float("nan")
    (t0, v0), (t1, v1) = ends
    return (v1 - v0) / (t1 - t0) if t1 > t0 else float("nan")


def steady_span_s(samples: list[tuple[float, float]]) -> float:
    """The seconds :func:`rate_from` measures over."""
    ends = _steady(samples)
    return 0.0 if ends is None else ends[1][0] - ends[0][0]


_STEPS = ("decode", "window", "prepare", "infer", "write", "publish")


def step_shares(log_path: Path, from_line: int) -> dict[str, float]:
    """Seconds per batch step summed over the worker's "batch done" debug lines after ``from_line``."""
    import re

    totals = dict.fromkeys(_STEPS, 0.0)
    lines = log_path.read_text(errors="replace").splitlines()[from_line:]
    for line in lines:
        if "batch done" in line:
            for step, value in re.findall(r"\b(\w+)=([0-9.e-]+)", line):
                if step in totals:
                    totals[step] += float(value)
    return {step: round(seconds, 3) for step, seconds in totals.items()}


def log_lines(log_path: Path) -> int:
    return len(log_path.read_text(errors="replace").splitlines()) if log_path.exists() else 0


def scores_since(bootstrap: str, topic: str, start: dict, patients: set[str]) -> dict[tuple[str, str], dict]:
    """Score records produced after the end offsets ``start``, for ``patients``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = list(start)
        consumer.assign(partitions)
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(partitions)
        out: dict[tuple[str, str], dict] = {}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    value = json.loads(record.value)
                    if value["patient_id"] in patients:
                        out.setdefault((value["patient_id"], value["window_id"]), value)
        return out
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


class Stack:
    """Kafka, Redis and Triton on loopback, plus the worker processes of the benchmark."""

    def __init__(self, work: Path, onnx_path: Path, card, partitions: int, prep_workers: int = 1):
        from hfrisk.serving.model_repository import write_model_repository
        from hfrisk.stack.triton_server import TritonServer, models_to_load
        from hfrisk.stack.kafka import KafkaBroker
        from hfrisk.stack.redis_server import RedisServer

        self.work = work
        self.partitions = partitions
        self.prep_workers = prep_workers
        self.kafka = KafkaBroker(work / "kafka").start()
        self.redis = RedisServer(work / "redis").start()
        repo = work / "repository"
        write_model_repository(onnx_path, card, repo, intra_op_threads=1)
        self.triton = TritonServer(repo, "hfrisk", work_dir=work / "triton", extra_args=models_to_load(model_name="hfrisk")).start()
        self.processes = []
        # An extracted commit whose code the workers run instead of the checkout (--baseline).
        self.tree: Path | None = None

    def pids(self, worker) -> dict[str, int | None]:
        """The processes whose CPU the real-time runs report: the servers, the worker(s) with their
        preprocessing pools, and this process (the replay producer)."""
        procs = worker.procs if isinstance(worker, WorkerGroup) else [worker]
        workers = {("worker + pool" if k == 0 else f"worker {k + 1} + pool"): p.pid for k, p in enumerate(procs)}
        return {"Kafka broker": self.kafka.pid, "Redis": self.redis.pid, "Triton": self.triton.pid,
                **workers, REPLAY: os.getpid()}

    def topics(self, name: str):
        from hfrisk.testing import stream_topics

        return stream_topics(self.kafka.bootstrap_servers, name, self.partitions, namespace="bench")

    def env(self, kafka, prefix: str) -> dict[str, str]:
        from hfrisk.testing import services_env

        services = services_env(kafka=kafka, redis_url=self.redis.url, prefix=prefix,
                                triton_grpc_url=self.triton.grpc_url,
                                model_repository=self.triton.model_repository, state_dir=self.work / "state")
        # DEBUG: one "batch done" line per batch with seconds per step (Faust itself stays at INFO).
        return os.environ | services | {"HFRISK_LOG__LEVEL": "DEBUG"}

    def start(self, name: str, argv: list[str], env: dict) -> tuple[object, int]:
        from hfrisk.stack.process import ManagedProcess, free_port, port_open

        port = free_port()
        argv = [sys.executable, *argv, "--metrics-port", str(port), "--web-port", str(free_port())]
        proc = ManagedProcess(name, argv, log_path=self.work / f"{name}.log", env=env,
                              ready=lambda: port_open("127.0.0.1", port), ready_timeout_s=180, stop_timeout_s=30)
        self.processes.append(proc)
        return proc.start(), port

    def worker(self, name: str, kafka, prefix: str, *extra: str, app_id: str | None = None):
        module = ["-m", "bench.trees", str(self.tree)] if self.tree else ["-m"]
        return self.start(name, [*module, "hfrisk.stream.worker.command", "--app-id", app_id or name, "--prep-workers",
                                 str(self.prep_workers), "--no-create-topics", *extra], self.env(kafka, prefix))

    def workers(self, n: int, name: str, kafka, prefix: str):
        """``n`` workers of one consumer group, once every one has its partitions: (group, ports)."""
        if n == 1:
            proc, port = self.worker(name, kafka, prefix)
            return proc, port
        from hfrisk.testing import wait_until, worker_ready

        started = [self.worker(f"{name}-{k + 1}", kafka, prefix, app_id=name) for k in range(n)]
        group = WorkerGroup([proc for proc, _ in started])
        wait_until(f"{group.name} to get partitions", lambda: all(worker_ready(p) for p in group.procs),
                   timeout_s=120, workers=group.procs)
        return group, [port for _, port in started]

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.triton.cleanup()
        self.redis.stop()
        self.kafka.stop()


# --- measurements -------------------------------------------------------------------------------


def offline_rates(onnx_path: Path, card, seconds: float) -> dict:
    """Raw ONNX Runtime batched windows/s (batch 32, one thread) and prepare+ORT windows/s, the
    windows prepared in one batch with one BLAS thread and the allocator keeping what it frees, as
    the worker's preprocessing processes do (without it `prepare` cost ~25 % more, faulting its
    arrays in again on every call: docs/bench/pool-allocator.md)."""
    from hfrisk.core.allocator import keep_freed_memory
    from hfrisk.core.config import get_settings
    from hfrisk.model.frontend.arrays import one_blas_thread
    from hfrisk.model.frontend.preprocessing import prepare_windows
    from hfrisk.model.readers.dispatch import read_ecg
    from hfrisk.serving.scorers import OnnxScorer

    one_blas_thread()
    keep_freed_memory(get_settings().stream.keep_freed_mb)
    ecgs = [read_ecg(h.with_suffix("")) for h in sorted(RECORDS_DIR.rglob("*.hea"))]
    requests = [(ecg, 0.0) for ecg in ecgs]
    prepare_windows(requests, card)  # filter plans, sorting networks, imports: as a running worker has them
    # Passes over the windows for ``seconds`` (one pass is ~0.1 s: a hiccup of the shared machine
    # moved a single pass's figure by 10-20 % from run to run).
    passes, started = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - started < seconds:
        prepared = prepare_windows(requests, card)
        passes += 1
    prepare_s = (time.perf_counter() - started) / (passes * len(ecgs))
    x = np.stack([item.x for item in prepared]).astype(np.float32)
    scorer = OnnxScorer(onnx_path, card, threads=1)
    batch = x[np.arange(32) % len(x)]
    scorer.score(batch)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        scorer.score(batch)
        n += len(batch)
    ort_rate = n / (time.perf_counter() - started)
    return {
        "ort_batched_windows_per_s": round(ort_rate, 1),
        "prepare_ms_per_window": round(prepare_s * 1000, 2),
        "prepare_plus_ort_windows_per_s": round(1 / (prepare_s + 1 / ort_rate), 1),
        "prepare_windows_timed": passes * len(ecgs),
    }


def bracketed(before: dict, after: dict) -> dict:
    """The one-core reference measured before and after the throughput runs, as one: the mean of
    the two rates (the shared machine's speed drifts within a run), both kept."""
    mean = {key: round((before[key] + after[key]) / 2, 2 if key == "prepare_ms_per_window" else 1)
            for key in ("ort_batched_windows_per_s", "prepare_ms_per_window", "prepare_plus_ort_windows_per_s")}
    return mean | {"before": before, "after": after}


def throughput_run(stack: Stack, kafka, prefix: str, port: int | Sequence[int], proc, beds: int, duration_s: float,
                   card) -> dict:
    from hfrisk.stream.ingest.replay import patient_id_for, replay
    from hfrisk.testing import window_records

    salt = f"tp{beds}-{uuid.uuid4().hex[:6]}"
    patients = [patient_id_for(i, salt) for i in range(beds)]
    expected = beds * (int((duration_s - card.window.window_s) // 5.0) + 1)
    before = windows_done(port)
    offsets = end_offsets(kafka.bootstrap_servers, kafka.scores_topic)
    procs = proc.procs if isinstance(proc, WorkerGroup) else [proc]
    log_from = [log_lines(p.log_path) for p in procs]
    started = time.time()
    stats = replay([RECORDS_DIR], kafka.bootstrap_servers, kafka.ecg_topic, beds=beds, realtime=False,
                   duration_s=duration_s, loop=True, salt=salt, progress=False,
                   start_us=time.time_ns() // 1000 - round(duration_s * 1e6))
    # The drain after the replay: only the pipeline at work (the replay shares the CPUs before it).
    meter, drain_start = CpuMeter(stack.pids(proc), own=(REPLAY,)).start(), time.monotonic()
    samples = wait_for(lambda: windows_done(port) - before, expected, WAIT_S, proc)
    meter.stop()
    drain_s = time.monotonic() - drain_start
    step_shares_each = [step_shares(p.log_path, n) for p, n in zip(procs, log_from)]  # each log read once
    records = window_records(stack.redis.client(), prefix, patients)
    scores = scores_since(kafka.bootstrap_servers, kafka.scores_topic, offsets, set(patients))
    latencies = [
        (r["written_at_us"] - scores[(r["patient_id"], r["window_id"])]["chunk_timestamp_ms"] * 1000) / 1e6
        for r in records if (r["patient_id"], r["window_id"]) in scores
    ]
    last_write = max(r["written_at_us"] for r in records) / 1e6
    return {
        "beds": beds,
        "chunks": stats.chunks,
        "windows": len(records),
        "scored": sum(1 for r in records if r["scored"]),
        "replay_s": round(stats.wall_s, 2),
        "wall_s": round(last_write - started, 2),
        "windows_per_s": round(len(records) / (last_write - started), 1),
        "steady_windows_per_s": round(rate_from(samples), 1),
        "steady_s": round(steady_span_s(samples), 2),
        "latency_s": percentiles(latencies),
        "drain_s": round(drain_s, 2),
        "drain_cpu_cores": meter.cores(drain_s),
        "step_seconds": {step: round(sum(shares[step] for shares in step_shares_each), 3) for step in _STEPS},
    }


def overhead_backlog(stack: Stack, beds: int, duration_s: float):
    """The overhead measurement's messages, produced before any consumer starts: (topics, chunks)."""
    from hfrisk.stream.ingest.replay import replay

    kafka = stack.topics(f"overhead-{uuid.uuid4().hex[:6]}")
    stats = replay([RECORDS_DIR], kafka.bootstrap_servers, kafka.ecg_topic, beds=beds, realtime=False,
                   duration_s=duration_s, loop=True, progress=False,
                   start_us=time.time_ns() // 1000 - round(duration_s * 1e6))
    return kafka, stats.chunks


def chunks_per_s(proc, port: int, chunks: int, cores: dict | None = None) -> float:
    """Chunks/s of a consumer (started) until it has read ``chunks``; it is stopped after.

    Given ``cores``, fills it with the cores the consumer's main thread, its other threads and the
    whole machine kept busy while it read from a quarter to nine tenths of the backlog (inside the
    steady stretch, start-up and the tail left out).
    """
    marks: list[tuple[float, dict[str, float], float]] = []

    def count() -> float:
        done = chunks_done(port)
        if cores is not None and len(marks) < len(_CORE_MARKS) and done >= chunks * _CORE_MARKS[len(marks)]:
            marks.append((time.monotonic(), thread_cpu_s(proc.pid), machine_busy_s()))
        return done

    try:
        rate = rate_from(wait_for(count, chunks, WAIT_S, proc))
    finally:
        proc.stop()
    if cores is not None and len(marks) == len(_CORE_MARKS) and marks[1][0] > marks[0][0]:
        (t0, threads0, machine0), (t1, threads1, machine1) = marks
        cores |= {name: round((threads1[name] - threads0[name]) / (t1 - t0), 3) for name in threads0}
        cores[MACHINE] = round((machine1 - machine0) / (t1 - t0), 3)
    return rate


# The shares of a backlog between which chunks_per_s measures a consumer's cores.
_CORE_MARKS = (0.25, 0.9)


def raw_consumer_rate(stack: Stack, kafka, chunks: int, name: str, cores: dict | None = None, *,
                      stock: bool = False, floor: bool = False) -> float:
    """Chunks/s of the raw Faust consumer over the backlog, in a consumer group of its own
    (``cores``: as :func:`chunks_per_s`). ``stock``: Faust as it comes, without the worker's
    eager delivery (``stream.eager_delivery`` off). ``floor``: :func:`floor_consumer` instead."""
    env = stack.env(kafka, f"bench-noop-{uuid.uuid4().hex[:6]}")
    if stock:
        env = env | {"HFRISK_STREAM__EAGER_DELIVERY": "false"}
    raw, raw_port = stack.start(name, ["-m", "bench.bench_stream", "--floor-consumer" if floor else "--raw-consumer",
                                       "--app-id", f"raw-{uuid.uuid4().hex[:6]}"], env)
    return chunks_per_s(raw, raw_port, chunks, cores)


def noop_vs_raw(stack: Stack, beds: int, duration_s: float) -> dict:
    """Chunks/s of a raw Faust consumer, of the worker with no-op model and no-op preprocessing
    (the goal's pair), and of the worker with the no-op model alone, on the same messages."""
    kafka, chunks = overhead_backlog(stack, beds, duration_s)
    raw_cores: dict[str, float] = {}
    raw_rate = raw_consumer_rate(stack, kafka, chunks, "raw-consumer", raw_cores)
    stock_cores: dict[str, float] = {}
    stock_rate = raw_consumer_rate(stack, kafka, chunks, "raw-consumer-stock", stock_cores, stock=True)
    floor_cores: dict[str, float] = {}
    floor_rate = raw_consumer_rate(stack, kafka, chunks, "floor-consumer", floor_cores, floor=True)
    out = {"beds": beds, "chunks": chunks, "raw_faust_chunks_per_s": round(raw_rate, 1), "raw_cores": raw_cores,
           "raw_stock_faust_chunks_per_s": round(stock_rate, 1), "raw_stock_cores": stock_cores,
           "floor_chunks_per_s": round(floor_rate, 1), "floor_cores": floor_cores,
           "ratio_floor": round(floor_rate / raw_rate, 3)}
    # Each worker its own consumer group and Redis prefix: it reads every message from the start
    # and finds no windows or buffers of the other.
    for key, flags in (("noop", ("--noop-model", "--noop-prep")), ("noop_model_only", ("--noop-model",))):
        proc, port = stack.worker(f"{key.replace('_', '-')}-{uuid.uuid4().hex[:6]}", kafka,
                                  f"bench-{key}-{uuid.uuid4().hex[:6]}", *flags)
        cores: dict[str, float] = {}
        rate = chunks_per_s(proc, port, chunks, cores)
        prefix = "noop_pipeline" if key == "noop" else key
        out |= {
            f"{prefix}_chunks_per_s": round(rate, 1),
            f"{key}_cores": cores,
            "ratio" if key == "noop" else f"ratio_{key}": round(rate / raw_rate, 3),
            "ratio_to_stock" if key == "noop" else f"ratio_{key}_to_stock": round(rate / stock_rate, 3),
            f"{key}_step_seconds": step_shares(proc.log_path, 0),
        }
    return out


def realtime_run(stack: Stack, kafka, prefix: str, port: int, proc, beds: int, seconds: float, card,
                 stagger_s: float = 1.0) -> dict:
    from hfrisk.stream.ingest.replay import patient_id_for, replay
    from hfrisk.testing import window_latencies_s, window_records

    salt = f"rt{beds}-{uuid.uuid4().hex[:6]}"
    patients = [patient_id_for(i, salt) for i in range(beds)]
    before = windows_done(port)
    expected = beds * (int((seconds - card.window.window_s) // 5.0) + 1)
    meter = CpuMeter(stack.pids(proc), own=(REPLAY,)).start()
    jit_before = jit_compiler_cpu_s(stack.kafka.pid)
    replay_start = time.monotonic()
    stats = replay([RECORDS_DIR], kafka.bootstrap_servers, kafka.ecg_topic, beds=beds, realtime=True,
                   duration_s=seconds, loop=True, salt=salt, progress=False, stagger_s=stagger_s)
    replay_end = time.monotonic()
    meter.stop()
    jit_s = jit_compiler_cpu_s(stack.kafka.pid) - jit_before
    try:
        wait_for(lambda: windows_done(port) - before, expected, 60.0, proc)
        drained_s = time.monotonic() - replay_end
    except TimeoutError:
        drained_s = float("inf")
    records = window_records(stack.redis.client(), prefix, patients)
    latencies = window_latencies_s(records, card.window.window_s, fs_hz=500.0)
    p = percentiles(latencies) if latencies else {"p50": None, "p95": None, "p99": None, "max": None}
    sustained = bool(latencies) and len(records) >= expected and drained_s <= 5.0 and p["p95"] <= 1.0
    return {
        "beds": beds,
        "stagger_s": stagger_s,
        "seconds": seconds,
        "replay_linger_ms": stats.linger_ms,
        "windows": len(records),
        "expected_windows": expected,
        "replay_max_lag_s": round(stats.max_lag_s, 3),
        "drained_after_replay_s": round(drained_s, 2),
        "latency_s": p,
        "sustained": sustained,
        "cpu_cores": meter.cores(replay_end - replay_start),
        "broker_jit_cores": round(max(0.0, jit_s) / (replay_end - replay_start), 3),
        "p95_by_10s": p95_by_stretch(records, latencies, card.window.window_s),
    }


def p95_by_stretch(records: list[dict], latencies: list[float], window_s: float,
                   stretch_s: float = 10.0) -> list[float]:
    """p95 of ``latencies`` (s; one per record, in order) of the windows falling due in each
    ``stretch_s`` of a run, in order from its first window: whether a run's tail comes from its
    start (a broker still compiling, caches filling) or from all along."""
    from hfrisk.testing.realtime import window_due_us

    if not records:
        return []
    due = np.array([window_due_us(r["window_start_us"], window_s) for r in records], dtype=np.int64)
    latency = np.asarray(latencies, dtype=np.float64)
    stretch = (due - due.min()) // round(stretch_s * 1e6)
    return [round(float(np.percentile(latency[stretch == k], 95)), 3) for k in np.unique(stretch)]


def realtime_warmup(stack: Stack, args, card, kafka, prefix: str, proc, port) -> dict | None:
    """``args.realtime_warmup_s`` of the first sweep's bed count in real time before the sweeps,
    not counted: a freshly started broker spends its first minute under load compiling (its JIT
    threads took 0.12-0.16 of the 2 cores for ~50 s, then ~0.01; docs/bench/stream-tuning.md,
    "2026-12-07: the broker's first minute"), which a ward running for days does not see."""
    if args.realtime_warmup_s <= 0 or not args.realtime_beds:
        return None
    row = realtime_run(stack, kafka, prefix, port, proc, args.realtime_beds[0], args.realtime_warmup_s, card,
                       args.realtime_stagger_s[0])
    print(f"realtime warm-up{' (baseline)' if stack.tree else ''}:", row, flush=True)
    return row


# --- report -------------------------------------------------------------------------------------


SECTIONS = ("throughput", "realtime", "overhead")
EFFICIENCY_GOAL = 0.6
OVERHEAD_GOAL = 0.5
# A steady rate over a shorter stretch than this is a batch or two coming out at once, not a rate
# (4 beds at batch 128: 44 windows in 0.1 s read as 385 windows/s): shown, not counted for the goal.
MIN_STEADY_S = 2.0


def counts_for_goal(row: dict) -> bool:
    return row.get("steady_s", MIN_STEADY_S) >= MIN_STEADY_S  # rows from before steady_s was kept count


def throughput_runs(stack: Stack, args, card, kafka, prefix: str, port, proc, offline: dict) -> list[dict]:
    """One throughput run per ``args.beds``, each with its ratios to the one-core reference ``offline``."""
    rows = []
    for beds in args.beds:
        row = against_reference(throughput_run(stack, kafka, prefix, port, proc, beds, args.duration_s, card), offline)
        print(f"throughput{' (baseline)' if stack.tree else ''}:", row, flush=True)
        rows.append(row)
    return rows


def against_reference(row: dict, offline: dict) -> dict:
    """``row`` (a throughput run) with its ratios to the one-core reference ``offline``."""
    row["ratio_to_ort"] = round(row["windows_per_s"] / offline["ort_batched_windows_per_s"], 3)
    row["efficiency"] = efficiency(row, offline, os.cpu_count())
    return row


def realtime_sweeps(stack: Stack, args, card, kafka, prefix: str, proc, port) -> tuple[list[dict], dict[str, int]]:
    """One real-time sweep per stagger, each up to its first failure: the rows and, per stagger,
    the most beds sustained."""
    rows, sustained = [], {}
    for stagger_s in args.realtime_stagger_s:
        sustained[f"{stagger_s:g}"] = 0
        for beds in args.realtime_beds:
            row = realtime_run(stack, kafka, prefix, port, proc, beds, args.realtime_s, card, stagger_s)
            print(f"realtime{' (baseline)' if stack.tree else ''}:", row, flush=True)
            rows.append(row)
            if not row["sustained"]:
                break
            sustained[f"{stagger_s:g}"] = beds
    return rows, sustained


def baseline_runs(stack: Stack, args, card, sections: list[str], work: Path, offline: dict | None = None) -> dict:
    """The throughput runs, the real-time sweeps and the overhead measurement again, on the same
    servers, with workers running commit ``args.baseline`` (extracted) instead of the checkout; the
    throughput's efficiency against the checkout's own one-core reference (``offline``)."""
    from bench.trees import extract

    out: dict = {"rev": args.baseline}
    stack.tree = extract(args.baseline, work / "baseline")
    try:
        if "throughput" in sections or "realtime" in sections:
            kafka = stack.topics(f"baseline-{uuid.uuid4().hex[:6]}")
            prefix = f"bench-baseline-{uuid.uuid4().hex[:6]}"
            proc, port = stack.workers(args.workers, "baseline-worker", kafka, prefix)
            try:
                if "throughput" in sections:
                    out["throughput"] = throughput_runs(stack, args, card, kafka, prefix, port, proc, offline)
                if "realtime" in sections:
                    out["realtime_warmup"] = realtime_warmup(stack, args, card, kafka, prefix, proc, port)
                    out["realtime"], out["realtime_beds_sustained_by_stagger"] = realtime_sweeps(
                        stack, args, card, kafka, prefix, proc, port)
            finally:
                proc.stop()
        if "overhead" in sections:
            out["noop_vs_raw"] = noop_vs_raw(stack, args.overhead_beds, args.overhead_duration_s)
            print("overhead (baseline):", out["noop_vs_raw"], flush=True)
    finally:
        stack.tree = None
    return out


def efficiency(row: dict, offline: dict, cores: int) -> float:
    """Issue #15's stream efficiency: steady pipeline windows/s / (cores x windows/s of one core
    doing only ``prepare`` + ONNX Runtime in-process on the same windows)."""
    return round(row["steady_windows_per_s"] / (cores * offline["prepare_plus_ort_windows_per_s"]), 3)


def provenance(r: dict, section: str) -> list[str]:
    """A line under a section's heading naming its run, when the report merges several runs."""
    run = r["runs"][section]
    if run["when"] == r["when"]:
        return []
    m = run["machine"]
    return [f"*From an earlier run:* `{run['command']}`, {run['when']}; load average {m['load_before']} before, "
            f"{m['load_after']} after.", ""]


REPLAY = "replay (bench process)"


def _cpu_lines(rows: list[dict], cpus: int, key: str = "cpu_cores", stretch: str = "while the replay ran") -> list[str]:
    """Where the CPU went in each run: cores each process kept busy over ``stretch`` (``key`` of
    each row: the real-time runs' replay, or the throughput runs' drain after it)."""
    rows = [row for row in rows if row.get(key)]
    if not rows:
        return []
    names = [name for name in rows[0][key] if name != MACHINE]
    stagger = key == "cpu_cores"
    lines = [
        f"Where the CPU went {stretch} (cores each process kept busy: CPU seconds / wall seconds, "
        f"with its children; the machine has {cpus}; *other* is the machine's busy time outside these processes: "
        "the operating system and other people's jobs on this shared machine):",
        "",
        ("| stagger (s) " if stagger else "") + "| beds | " + " | ".join(names) + " | other | machine busy |",
        ("| ---: " if stagger else "") + "| ---: |" + " ---: |" * (len(names) + 2),
    ]
    for row in rows:
        cores = row[key]
        other = max(0.0, cores.get(MACHINE, 0.0) - sum(cores.get(n, 0.0) for n in names))
        lines.append((f"| {row.get('stagger_s', 1.0):g} " if stagger else "") + f"| {row['beds']} | "
                     + " | ".join(f"{cores.get(n, 0.0):.2f}" for n in names)
                     + f" | {other:.2f} | {cores.get(MACHINE, 0.0):.2f} |")
    return lines + [""]


def stretches_cell(row: dict) -> str:
    """A run's p95 per 10 s, in order (blank on pages from before they were kept)."""
    return " · ".join(f"{v:.2f}" for v in row.get("p95_by_10s") or [])


def _warmup_lines(warmup: dict | None) -> list[str]:
    """What ran before the sweeps, not counted (nothing on pages from before the warm-up)."""
    if not warmup:
        return []
    lat = warmup["latency_s"]
    return [
        f"**Warm-up, not counted:** {warmup['beds']} beds for {warmup['seconds']:g} s in real time on the same "
        f"stack and workers before the sweeps (`--realtime-warmup-s`): a freshly started broker spends its first "
        f"minute under load compiling. During it the broker's JIT compiler threads kept "
        f"{warmup.get('broker_jit_cores', 0.0):.2f} cores busy, the broker {warmup['cpu_cores'].get('Kafka broker', 0.0):.2f}; "
        f"its windows' p95 was {lat['p95']} s ({stretches_cell(warmup)} s by 10 s). The column *broker's JIT* is "
        "the same figure during each counted run.",
        "",
    ]


def _parts(part_windows: int | None) -> str:
    """The part size on a page (pages from before it was recorded say nothing)."""
    return "" if part_windows is None else f", parts of at most {part_windows} windows to the pool and Triton"


def _worker_count(n: int) -> str:
    return "" if n == 1 else f" each, {n} worker processes sharing the partitions"


def _baseline_lines(r: dict) -> list[str]:
    b = r.get("baseline")
    if not b:
        return []
    lines = ["", f"## Against the baseline: commit `{b['rev']}`", "",
             "Same run, same servers, after the checkout's runs: the workers run the baseline commit's code "
             "(extracted with `git archive`); everything else (the replay, the settings, the raw consumer) is this "
             "checkout's.", ""]
    if b.get("throughput"):
        mine = {row["beds"]: row for row in r.get("throughput", [])}
        lines += ["Throughput (beds replayed as fast as possible), steady windows/s and stream efficiency against the "
                  "same one-core reference:", "",
                  "| beds | baseline windows/s | baseline efficiency | this checkout windows/s | this checkout efficiency |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for row in b["throughput"]:
            m = mine.get(row["beds"], {})
            lines.append(f"| {row['beds']} | {row['steady_windows_per_s']} | {row['efficiency']:.3f} | "
                         f"{m.get('steady_windows_per_s', '–')} | "
                         f"{format(m['efficiency'], '.3f') if 'efficiency' in m else '–'} |")
        lines.append("")
    if "realtime" in b:
        lines += ["| stagger (s) | beds | windows | p95 (s) | drained after replay (s) | sustained |",
                  "| ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in b["realtime"]:
            lines.append(f"| {row['stagger_s']:g} | {row['beds']} | {row['windows']}/{row['expected_windows']} | "
                         f"{row['latency_s']['p95']} | {row['drained_after_replay_s']} | "
                         f"{'yes' if row['sustained'] else 'no'} |")
        def most(beds: int | None) -> str:  # 0: the sweep's first count already failed
            return f"fewer than {min(row['beds'] for row in b['realtime'])}" if not beds else str(beds)

        lines += ["", "Beds sustained (p95 <= 1 s), baseline -> this checkout: " + "; ".join(
            f"{most(b['realtime_beds_sustained_by_stagger'][st])} -> {most(r['realtime_beds_sustained_by_stagger'].get(st))} "
            f"with the starts over {float(st):g} s" for st in b["realtime_beds_sustained_by_stagger"]) + ".", ""]
    if "noop_vs_raw" in b:
        n, m = b["noop_vs_raw"], r["noop_vs_raw"]
        lines += [f"Infrastructure overhead, baseline -> this checkout: {n['noop_pipeline_chunks_per_s']} / "
                  f"{n['raw_faust_chunks_per_s']} = {n['ratio']:.3f} -> {m['noop_pipeline_chunks_per_s']} / "
                  f"{m['raw_faust_chunks_per_s']} = {m['ratio']:.3f} (each against its own raw consumer run); "
                  f"with the real preprocessing {n['ratio_noop_model_only']:.3f} -> {m['ratio_noop_model_only']:.3f}.",
                  ""]
    return lines


def _stock_lines(n: dict) -> list[str]:
    """The same workers against Faust as it comes: every consumer above delivers messages eagerly
    (``stream.eager_delivery``, 2026-12-06), the raw consumer included, which makes the shared part
    of the ratio cheaper; reports from before have no such run."""
    if "raw_stock_faust_chunks_per_s" not in n:
        return []
    return [f"Against a raw consumer on Faust as it comes (`HFRISK_STREAM__EAGER_DELIVERY=false`, "
            f"{n['raw_stock_faust_chunks_per_s']} chunks/s over the same messages, against "
            f"{n['raw_faust_chunks_per_s']} with eager delivery), the no-op worker's ratio is "
            f"{n['ratio_to_stock']:.3f} and the no-op-model worker's {n['ratio_noop_model_only_to_stock']:.3f}. "
            "The goal's ratio above is against the raw consumer with the same delivery as the workers; making "
            "Faust's delivery cheaper for both lowers it even as the worker gets faster (docs/bench/"
            "stream-tuning.md, \"2026-12-06 midday\").",
            ""]


def _floor_lines(n: dict) -> list[str]:
    """What the floor consumer read, and what the goal's ratio leaves a worker beyond it (reports
    from before 2026-12-06 night have no floor run)."""
    if "floor_chunks_per_s" not in n:
        return []
    lines = [f"**The floor**: a consumer on the raw consumer's app and delivery that does only what any worker must "
             "do with a chunk (decode its Avro record, divide its counts into the patient's held block, write one "
             f"Redis record for each window it completes; `--floor-consumer`) read {n['floor_chunks_per_s']} chunks/s "
             f"over the same messages, **{n['ratio_floor']:.3f}** of the raw consumer."]
    raw_us, floor_us = _process_us(n.get("raw_cores"), n["raw_faust_chunks_per_s"]), _process_us(
        n.get("floor_cores"), n["floor_chunks_per_s"])
    if raw_us and floor_us:
        # A ratio of OVERHEAD_GOAL leaves a worker as busy as the raw consumer this much per chunk.
        budget_us, own_us = round(raw_us / OVERHEAD_GOAL - raw_us), round(floor_us - raw_us)
        lines[0] += (f" Its process spent {floor_us:.0f} µs of CPU a chunk against the raw consumer's {raw_us:.0f}. "
                     f"At the goal's ratio a worker as busy as the raw consumer has {budget_us} µs a chunk beyond "
                     f"the raw consumer's work; the floor takes {own_us} of them, which leaves "
                     f"{budget_us - own_us} µs for everything the other goals add (validation, dead "
                     "letters, pseudonyms, ordering and gap rules, checkpoints, alert state, idempotent writes, score "
                     "records, metrics).")
    return [*lines, ""]


def _process_us(cores: dict | None, chunks_per_s: float) -> float | None:
    """µs of its process's CPU a consumer spent a chunk, from its cores kept busy."""
    if not cores or not chunks_per_s:
        return None
    return _process_cores(cores) / chunks_per_s * 1e6


def _process_cores(cores: dict) -> float:
    """Cores a consumer's process kept busy: its main thread and its other threads."""
    return cores.get(MAIN_THREAD, 0.0) + cores.get(OTHER_THREADS, 0.0)


def _thread_lines(n: dict) -> list[str]:
    """Where each consumer of the overhead measurement spent its CPU (reports from before
    2026-12-06 have no such figures)."""
    runs = [(label, n.get(key)) for label, key in (("raw Faust consumer", "raw_cores"),
                                                   ("raw Faust consumer, Faust as it comes", "raw_stock_cores"),
                                                   ("floor consumer", "floor_cores"),
                                                   ("worker --noop-model --noop-prep", "noop_cores"),
                                                   ("worker --noop-model only", "noop_model_only_cores"))]
    runs = [(label, c) for label, c in runs if c]
    if not runs:
        return []
    lines = ["Cores kept busy while each read from a quarter to nine tenths of the backlog (the process's main "
             "thread, which runs the event loop; its other threads: Faust's consumer thread, the thread the Redis "
             "writes run in; the whole machine; the worker's preprocessing pool is a separate process and not "
             "in the thread columns):",
             "",
             "| consumer | main thread | other threads | process | machine |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for label, c in runs:
        process = _process_cores(c)
        lines.append(f"| {label} | {c.get(MAIN_THREAD, 0.0):.2f} | {c.get(OTHER_THREADS, 0.0):.2f} | {process:.2f} | "
                     f"{c.get(MACHINE, 0.0):.2f} |")
    return [*lines, ""]


def markdown(r: dict) -> str:
    o = r["offline"]
    lines = [
        "# Stream benchmark: Kafka -> hfrisk worker -> Triton -> Redis",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs ({r['machine']['processor']}), load average "
        f"{r['machine']['load_before']} before, {r['machine']['load_after']} after; no GPU.  ",
        f"Sections measured by this command: {', '.join(r['sections_run'])}"
        + ("" if len(r["sections_run"]) == len(SECTIONS) else "; the others come from the earlier run named under "
           "their heading (merged from stream.json)") + ".  ",
        f"Model: {r['model']}. Worker: batch_size {r['worker']['batch_size']}, batch_timeout_s "
        f"{r['worker']['batch_timeout_s']}, {r['worker'].get('batches', 'one batch at a time')}"
        f"{_parts(r['worker'].get('part_windows'))}, hop "
        f"{r['worker']['hop_s']} s, {r['worker']['prep_workers']} preprocessing "
        f"process(es){_worker_count(r['worker'].get('workers', 1))}, checkpoint every {r['worker']['checkpoint_interval_s']} s; {r['partitions']} partitions; "
        "Triton with one ONNX Runtime thread.",
        "",
        "## Throughput: beds replayed as fast as possible",
        "",
        *provenance(r, "throughput"),
        f"{r['duration_s']:g} s of 1-s chunks per bed (PTB-XL 500 Hz, looped), 10-s windows every 5 s. "
        "Latency: Redis write - Kafka timestamp of the chunk that completed the window (the backlog being drained).",
        "",
        "| beds | chunks | windows | windows/s | steady windows/s (over s) | **stream efficiency** | "
        "(secondary) windows/s / raw ORT batched | latency p50 / p95 / p99 (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    cores = r["runs"]["throughput"]["machine"]["cpus"]
    for row in r["throughput"]:
        lat = row["latency_s"]
        span = f" ({row['steady_s']:g})" if "steady_s" in row else ""
        shown = f"**{efficiency(row, o, cores):.3f}**" if counts_for_goal(row) else \
            f"{efficiency(row, o, cores):.3f} (too short to count)"
        lines.append(
            f"| {row['beds']} | {row['chunks']} | {row['windows']} | {row['windows_per_s']} | "
            f"{row['steady_windows_per_s']}{span} | {shown} | {row['ratio_to_ort']:.3f} | "
            f"{lat['p50']} / {lat['p95']} / {lat['p99']} |"
        )
    counted = [row for row in r["throughput"] if counts_for_goal(row)]
    if counted:
        best = max(counted, key=lambda row: efficiency(row, o, cores))
        e = efficiency(best, o, cores)
        verdict = (f"**{'met' if e >= EFFICIENCY_GOAL else 'not met'}** (best: {e:.3f} at {best['beds']} beds, "
                   f"{best['steady_windows_per_s']} windows/s; a steady rate over less than {MIN_STEADY_S:g} s "
                   "does not count)")
    else:
        verdict = f"**not measured**: no run's steady rate lasted {MIN_STEADY_S:g} s (replay more beds)"
    if "before" in o:
        b, a = o["before"], o["after"]
        reference = [
            "",
            f"Same run, one thread, measured before the servers started and again after the runs (each `prepare` over "
            f"{b['prepare_windows_timed']} and {a['prepare_windows_timed']} windows, ONNX Runtime for 2 s): `prepare` "
            f"{b['prepare_ms_per_window']} and {a['prepare_ms_per_window']} ms/window, raw ONNX Runtime batched (32) "
            f"{b['ort_batched_windows_per_s']} and {a['ort_batched_windows_per_s']} windows/s, so one core doing only "
            f"preprocessing + inference in-process on the same windows reaches {b['prepare_plus_ort_windows_per_s']} "
            f"and {a['prepare_plus_ort_windows_per_s']} windows/s; the reference is their mean, "
            f"**{o['prepare_plus_ort_windows_per_s']} windows/s**.",
        ]
    else:  # a report from before 2026-12-06 midday: one measurement, before the runs
        reference = [
            "",
            f"Same run, one thread: `prepare` {o['prepare_ms_per_window']} ms/window and raw ONNX Runtime batched "
            f"(32) {o['ort_batched_windows_per_s']} windows/s, so one core doing only preprocessing + inference "
            f"in-process on the same windows reaches **{o['prepare_plus_ort_windows_per_s']} windows/s**.",
        ]
    lines += [
        *reference,
        "",
        f"**Stream efficiency** (issue #15) = steady pipeline windows/s / ({cores} cores x "
        f"{o['prepare_plus_ort_windows_per_s']} windows/s) = steady / {cores * o['prepare_plus_ort_windows_per_s']:.1f}. "
        f"Goal >= {EFFICIENCY_GOAL}: {verdict}. The secondary column is the earlier "
        "definition (all windows over the whole run / raw ONNX Runtime batched, goal 0.5 then), kept for comparison.",
        "",
        *_cpu_lines(r["throughput"], cores, "drain_cpu_cores", "while the backlog drained after the replay ended"),
        "## Infrastructure overhead: no-op model and no-op preprocessing",
        "",
    ]
    n = r["noop_vs_raw"]
    lines += provenance(r, "overhead")
    if "noop_step_seconds" in n and "ratio_noop_model_only" in n:
        lines += [
            "| beds | chunks | raw Faust consumer (chunks/s) | worker --noop-model --noop-prep (chunks/s) | **ratio** | "
            "worker --noop-model only (chunks/s) | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {n['beds']} | {n['chunks']} | {n['raw_faust_chunks_per_s']} | {n['noop_pipeline_chunks_per_s']} | "
            f"**{n['ratio']:.3f}** | {n['noop_model_only_chunks_per_s']} | {n['ratio_noop_model_only']:.3f} |",
            "",
            f"{r['overhead_duration_s']:g} s of signal per bed, pre-produced; every consumer on this page reads the same messages with "
            "the same Faust settings, each worker in its own consumer group and Redis prefix; rates exclude start-up. "
            "`--noop-prep` starts no preprocessing pool and treats every window as fit with an all-zero model "
            "input; `--noop-model` answers log-risk 0 without Triton. Records, Redis writes, alerts, publishing and "
            "checkpoints run as usual.",
            "",
            f"**Infrastructure overhead** (issue #15) = worker with no-op model and no-op preprocessing / raw Faust "
            f"consumer = {n['ratio']:.3f}. Goal >= {OVERHEAD_GOAL}: "
            f"**{'met' if n['ratio'] >= OVERHEAD_GOAL else 'not met'}**. With the real preprocessing (no-op model "
            f"only) the ratio is {n['ratio_noop_model_only']:.3f}.",
            "",
            *_stock_lines(n),
            *_floor_lines(n),
            *_thread_lines(n),
        ]
    else:  # a report from before --noop-prep existed: the model-only no-op
        lines += [
            "| beds | chunks | raw Faust consumer (chunks/s) | worker --noop-model (chunks/s) | ratio |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {n['beds']} | {n['chunks']} | {n['raw_faust_chunks_per_s']} | {n['noop_pipeline_chunks_per_s']} | "
            f"**{n['ratio']:.3f}** |",
            "",
        ]
    lines += [
        "## Real time",
        "",
        *provenance(r, "realtime"),
        f"{r['realtime_s']:g} s per run; latency = Redis write - acquisition of the window's last sample.",
        "",
        *_warmup_lines(r.get("realtime_warmup")),
        "*Stagger*: the beds' starts are spread over this many seconds (`replay(stagger_s=...)`). Over 1 s (one "
        "chunk) every bed's 10-s window falls due within the same second of each 5-s hop: a burst of one window per "
        "bed, the worst case. Over 5 s (the hop) they fall due evenly, as on a ward whose monitors were attached at "
        "different times.",
        "",
        "| stagger (s) | beds | windows | p50 (s) | p95 (s) | p99 (s) | drained after replay (s) | replay max lag (s) | sustained "
        "| p95 of each 10 s (s) | broker's JIT (cores) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for row in r["realtime"]:
        lat = row["latency_s"]
        lines.append(
            f"| {row.get('stagger_s', 1.0):g} | {row['beds']} | {row['windows']}/{row['expected_windows']} | {lat['p50']} | "
            f"{lat['p95']} | {lat['p99']} | "
            f"{row['drained_after_replay_s']} | {row['replay_max_lag_s']} | {'yes' if row['sustained'] else 'no'} | "
            f"{stretches_cell(row)} | {row.get('broker_jit_cores', '')} |"
        )
    by_stagger = r.get("realtime_beds_sustained_by_stagger") or {"1": r["realtime_beds_sustained"]}
    lines += [
        "",
        "**Beds sustained in real time with p95 <= 1 s: "
        + "; ".join(f"{beds} with the starts over {float(st):g} s" for st, beds in by_stagger.items())
        + "** (largest tried count that passed; each sweep stops at its first failure).",
        "",
        *_cpu_lines(r["realtime"], r["machine"]["cpus"]),
        "## Where the worker's time goes",
        "",
        "Seconds summed over the worker's batches (its per-batch debug timings); `prepare` runs in the "
        "preprocessing process while the worker's event loop waits for it, `infer` is the Triton call. "
        "`write` and `publish` of one batch run while the next batch is decoded, windowed and scored (from "
        "`submit`, 2026-12-05; before it the steps followed one another).",
        "",
        "| run | " + " | ".join(_STEPS) + " |",
        "| --- |" + " ---: |" * len(_STEPS),
    ]
    runs = [(f"throughput, {row['beds']} beds", row["step_seconds"]) for row in r["throughput"]]
    if "noop_model_only_step_seconds" in n:
        runs.append((f"--noop-model --noop-prep, {n['beds']} beds", n["noop_step_seconds"]))
        runs.append((f"--noop-model, {n['beds']} beds", n["noop_model_only_step_seconds"]))
    else:
        runs.append((f"--noop-model, {n['beds']} beds", n["noop_step_seconds"]))
    for name, steps in runs:
        total = sum(steps.values()) or 1.0
        lines.append(f"| {name} | " + " | ".join(f"{steps[k]:.2f} ({100 * steps[k] / total:.0f}%)" for k in _STEPS) + " |")
    lines += _baseline_lines(r)
    lines += [
        "",
        r["note"],
        "",
        "Runs with other settings (one or two preprocessing processes, micro-batch size) and what they show: "
        "`docs/bench/stream-tuning.md`.",
        "",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beds", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--duration-s", type=float, default=60.0, help="signal per bed in the throughput runs")
    parser.add_argument("--overhead-beds", type=int, default=64)
    # 600 s: with eager delivery the raw consumer reads ~13,000 chunks/s, so 120 s per bed (the
    # default until 2026-12-06) was gone in under a second.
    parser.add_argument("--overhead-duration-s", type=float, default=600.0,
                        help="signal per bed in the no-op/raw comparison (enough for the raw consumer to take >1 s)")
    parser.add_argument("--prep-workers", type=int, default=1, help="the worker's preprocessing processes")
    parser.add_argument("--realtime-beds", type=int, nargs="*", default=[8, 16, 32, 64, 128, 192, 256])
    parser.add_argument("--realtime-s", type=float, default=30.0)
    parser.add_argument("--realtime-warmup-s", type=float, default=90.0,
                        help="real time at the first bed count before the sweeps, not counted (0: none)")
    parser.add_argument("--realtime-stagger-s", type=float, nargs="+", default=[1.0, 5.0],
                        help="spread the beds' starts over these seconds, one real-time sweep each")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the partitions (real-time runs only when > 1)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--baseline", metavar="REV",
                        help="also run the real-time and overhead sections with the workers of this commit "
                        "(extracted with git archive), on the same servers, after the checkout's")
    parser.add_argument("--only", type=lambda text: tuple(part.strip() for part in text.split(",")), default=SECTIONS,
                        help="comma-separated sections to run (throughput,realtime,overhead); the others are "
                        "kept from <out>/stream.json, each with the run it came from")
    # Internal: the raw-consumer baseline runs as a subprocess of the benchmark.
    parser.add_argument("--raw-consumer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-consumer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--metrics-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--web-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers > 1 and not set(args.only) <= {"realtime", "throughput"}:
        # The overhead section compares one no-op worker with one raw consumer, by definition.
        parser.error("--workers > 1 is for the real-time and throughput runs: add --only realtime,throughput")
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if set(args.only) != set(SECTIONS) and not (args.out / "stream.json").is_file():
        parser.error(f"--only needs {args.out / 'stream.json'} to keep the other sections from")
    if args.raw_consumer:
        raw_consumer(args.metrics_port, args.web_port, args.app_id)
        return None
    if args.floor_consumer:
        floor_consumer(args.metrics_port, args.web_port, args.app_id)
        return None
    with work_dir("stream") as work:
        return run(args, argv, work)


def run(args, argv, work: Path) -> dict:
    import onnxruntime as ort

    from bench.bench_triton import export_model
    from hfrisk.core.config import get_settings
    from hfrisk.model.contract.card import default_card

    sections = [name for name in SECTIONS if name in args.only]
    card = default_card()
    print("exporting an untrained HFRiskNet …", flush=True)
    onnx_path = export_model(work, card)
    load_before = load_average()
    offline = None
    if "throughput" in sections:
        # Before the servers start: measured just after, while Kafka and Triton warmed up on the
        # other core, prepare read 2.0-2.15 ms a window against 1.6-1.7 on a quiet machine
        # (docs/bench/stream-tuning.md, "2026-12-06 midday"), flattering the pipeline.
        offline = offline_rates(onnx_path, card, seconds=2.0)
        print("offline:", offline, flush=True)
    stack = Stack(work, onnx_path, card, args.partitions, args.prep_workers)
    throughput, realtime, sustained, overhead, baseline, warmup = [], [], 0, None, None, None
    sustained_by_stagger: dict[str, int] = {}
    try:
        if "throughput" in sections or "realtime" in sections:
            kafka = stack.topics(f"scored-{uuid.uuid4().hex[:6]}")
            prefix = f"bench-{uuid.uuid4().hex[:6]}"
            proc, port = stack.workers(args.workers, "worker-triton", kafka, prefix)
        if "throughput" in sections:
            throughput = throughput_runs(stack, args, card, kafka, prefix, port, proc, offline)
            # Again after the runs, with the workers idle: the efficiency is against the mean of both.
            offline = bracketed(offline, offline_rates(onnx_path, card, seconds=2.0))
            print("offline, before and after:", offline, flush=True)
            throughput = [against_reference(row, offline) for row in throughput]
        if "realtime" in sections:
            warmup = realtime_warmup(stack, args, card, kafka, prefix, proc, port)
            realtime, sustained_by_stagger = realtime_sweeps(stack, args, card, kafka, prefix, proc, port)
        sustained = next(iter(sustained_by_stagger.values()), 0)
        if "throughput" in sections or "realtime" in sections:
            proc.stop()
        if "overhead" in sections:
            overhead = noop_vs_raw(stack, args.overhead_beds, args.overhead_duration_s)
            print("overhead:", overhead, flush=True)
        if args.baseline:
            baseline = baseline_runs(stack, args, card, sections, work, offline)
    finally:
        stack.stop()

    stream = get_settings().stream  # what the worker subprocesses get, environment overrides included
    this_run = {"command": command_line("bench_stream", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "machine": machine(load_before)}
    result = this_run | {
        "versions": {"onnxruntime": ort.__version__, "python": platform.python_version()},
        "model": "HFRiskNet (untrained weights, seed 0; the compute of a trained one)",
        "partitions": args.partitions,
        "worker": {"batches": "a batch scored while the last one is written",
                   "batch_size": stream.batch_size, "batch_timeout_s": stream.batch_timeout_s, "hop_s": stream.hop_s,
                   "prep_workers": args.prep_workers, "workers": args.workers, "part_windows": stream.part_windows,
                   "checkpoint_interval_s": stream.checkpoint_interval_s},
        "sections_run": sections,
        "goals": {"stream_efficiency": EFFICIENCY_GOAL, "infrastructure_overhead": OVERHEAD_GOAL},
        "overhead_duration_s": args.overhead_duration_s,
        "duration_s": args.duration_s,
        "realtime_s": args.realtime_s,
        "offline": offline,
        "throughput": throughput,
        "noop_vs_raw": overhead,
        "realtime": realtime,
        "realtime_warmup": warmup,
        "realtime_beds_sustained": sustained,
        "realtime_beds_sustained_by_stagger": sustained_by_stagger,
        "baseline": baseline,
        "runs": dict.fromkeys(sections, this_run),
        "note": (
            "The replay (a Python producer), Kafka, Redis, Triton and the worker share the same CPUs, on the "
            "development machine also with other engineers' jobs (see the load average): figures are a floor."
        ),
    }
    if len(sections) < len(SECTIONS):
        merge_previous(result, json.loads((args.out / "stream.json").read_text()))
    save(args.out, "stream", result, markdown(result))
    print(markdown(result))
    return result


# The fields of stream.json that each section owns.
_SECTION_FIELDS = {
    "throughput": ("duration_s", "offline", "throughput"),
    "realtime": ("realtime_s", "realtime", "realtime_warmup", "realtime_beds_sustained",
                 "realtime_beds_sustained_by_stagger"),
    "overhead": ("overhead_duration_s", "noop_vs_raw"),
}


def merge_previous(result: dict, previous: dict) -> None:
    """Fill the sections not run now from an earlier ``stream.json``, with the run each came from."""
    earlier = {key: previous[key] for key in ("command", "when", "machine")}
    for section, fields in _SECTION_FIELDS.items():
        if section in result["sections_run"]:
            continue
        for field in fields:
            if field in previous:  # a field added later is absent from older runs
                result[field] = previous[field]
        result["runs"][section] = previous.get("runs", {}).get(section, earlier)
    result["runs"] = {name: result["runs"][name] for name in SECTIONS}


if __name__ == "__main__":
    main()
