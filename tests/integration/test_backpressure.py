"""Back-pressure: a burst far above the sustainable rate through one running ``hfrisk worker``.

A ward of ``BEDS`` monitors sends a minute of 1-s chunks each; a live ward would take a minute,
here all of it is produced at once (the producer is done in about a second, the worker needs
several). Sampling the worker's own ``hfrisk_consumer_lag`` gauge and the RSS of its process tree
(psutil) while it catches up, the test checks that

* the lag grows (the burst is queued in Kafka, not refused) and drains to 0;
* memory stays bounded: peak RSS <= idle RSS + what the worker may legitimately hold, derived from
  the settings rather than a magic number: per patient its window buffer (window + chunk + reorder
  horizon of float32 samples) and the checkpoint copy of it, plus the chunk messages fetched but
  not processed, which can be no more than the burst nor more than Faust's stream buffer holds;
* every window is in Redis exactly once.

The figures (messages, peak lag, drain time, peak RSS) are printed and recorded in
docs/reliability-input.md.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

import psutil
import pytest
from kafka import KafkaProducer

from hfrisk.core.config import StreamSettings
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.worker.app import stream_buffer_size
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import encode_chunk
from hfrisk.stream.windowing import Window, WindowAssembler

from hfrisk.testing import (
    HOP_S,
    RECORDS,
    redis_view,
    served_card,
    start_worker,
    stream_topics,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# 24 beds keep the test to about a minute; bench/bench_backpressure.py runs bigger wards.
BEDS = int(os.environ.get("HFRISK_BENCH_BACKPRESSURE_BEDS", "24"))
BATCH_SIZE = 32
BURST_S = 60  # seconds of signal per bed, produced at once: 60x the ward's real-time rate
PARTITIONS = 3
REORDER_S = 5.0
# ``stream_buffer_maxsize``: events an agent's stream may hold before Faust pauses fetching.
FAUST_STREAM_BUFFER = stream_buffer_size(BATCH_SIZE)
SAMPLE_EVERY_S = 0.2


@dataclass
class Burst:
    chunks: int
    chunk_bytes: int
    produce_s: float
    expected: set
    idle_rss: int
    bound_rss: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, lag, rss)
    drain_s: float = 0.0
    members: dict = field(default_factory=dict)
    window_keys: set = field(default_factory=set)
    final_lag: int = -1
    alive: bool = False
    log: str = ""

    @property
    def peak_lag(self) -> int:
        return max(lag for _, lag, _ in self.samples)

    @property
    def peak_rss(self) -> int:
        return max(rss for _, _, rss in self.samples)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children (the preprocessing pool)."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def consumer_lag(metrics_port: int) -> int | None:
    """Sum of ``hfrisk_consumer_lag`` over partitions; None before the worker has reported any."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        lines = [x for x in response.read().decode().splitlines() if x.startswith("hfrisk_consumer_lag{")]
    return sum(int(float(x.rsplit(" ", 1)[1])) for x in lines) if lines else None


def buffer_bytes(card, chunk_s: float, fs_hz: float, n_leads: int) -> int:
    """Most samples one patient's window buffer holds (windowing.py: one window plus one chunk plus
    the reorder horizon), as float32."""
    return int((card.window.window_s + chunk_s + REORDER_S) * fs_hz * n_leads * 4)


@pytest.fixture(scope="module")
def burst(kafka_broker, redis_server, triton_server, tmp_path_factory) -> Burst:
    tmp = tmp_path_factory.mktemp("backpressure")
    card = served_card(triton_server.model_repository)
    start_us = time.time_ns() // 1000 - 3_600_000_000
    uid = uuid.uuid4().hex[:8]
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"backpressure.{uid}", PARTITIONS)
    prefix = f"test-backpressure-{uid}"
    env = worker_env(kafka=kafka, redis_url=redis_server.url, prefix=prefix, triton_grpc_url=triton_server.grpc_url,
                     model_repository=triton_server.model_repository, state_dir=tmp / "state",
                     policy=AlertPolicy(threshold=1e9, clear_threshold=1e8, min_windows=2))
    env |= {"HFRISK_STREAM__BATCH_SIZE": str(BATCH_SIZE)}
    worker, metrics_port = start_worker("worker-backpressure", env, tmp, f"test-backpressure-{uid}")
    client = redis_server.client()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=4 << 20,
                             linger_ms=20, batch_size=1 << 20)
    try:
        # Warm-up: one patient's first window, so that imports, the Triton channel and the pool
        # are in the idle figure and the burst measures only what the burst holds.
        warm = [c for _, c in feed([RECORDS], beds=1, duration_s=12, max_records=2, start_us=start_us, salt="warm")]
        for chunk in warm:
            producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk))
        producer.flush()
        wait_until("the warm-up window", lambda: redis_view(client, prefix, [warm[0].patient_id])[1],
                   timeout_s=120, workers=[worker])
        wait_until("the warm-up lag to drain", lambda: consumer_lag(metrics_port) == 0, workers=[worker])
        idle_rss = tree_rss(worker.pid)

        chunks = [c for _, c in feed([RECORDS], beds=BEDS, duration_s=BURST_S, loop=True, start_us=start_us)]
        values = [(c.key, encode_chunk(c)) for c in chunks]
        assembler = WindowAssembler.from_settings(card, StreamSettings(hop_s=HOP_S, reorder_s=REORDER_S))
        expected = {(o.patient_id, o.window_id) for c in chunks for o in assembler.feed(c) if isinstance(o, Window)}
        chunk_bytes = max(len(v) for _, v in values)
        first = chunks[0]
        per_patient = buffer_bytes(card, first.duration_s, first.fs_hz, first.n_leads)
        window_bytes = int(card.window.window_s * first.fs_hz * first.n_leads * 4)
        # Live buffer (its block has room for one more window: windowing.py) + its checkpoint
        # serialisation (base64 JSON: 4/3 of it) and the bytes object Redis is sent.
        patients_bytes = BEDS * (3 * per_patient + window_bytes)
        # Fetched but unprocessed: bounded by the burst itself and by Faust's stream buffer; each
        # message twice (aiokafka's record batch and the event's value).
        in_flight_bytes = 2 * min(len(values), FAUST_STREAM_BUFFER) * chunk_bytes
        # One batch's windows (a chunk completes at most one window at this hop), each held as
        # its ECG, its prepared input, the pickled copy sent to the preprocessing pool and the
        # Triton request (four float32 windows), and in the pool process (part of the tree's RSS)
        # as the float64 copy that prepare filters and its filtered float64 result (four more).
        batch_bytes = BATCH_SIZE * 8 * window_bytes
        bound = idle_rss + patients_bytes + in_flight_bytes + batch_bytes

        samples: list[tuple[float, int, int]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                try:
                    lag = consumer_lag(metrics_port)
                    samples.append((time.monotonic() - t0, -1 if lag is None else lag, tree_rss(worker.pid)))
                except (OSError, psutil.Error):
                    pass
                stop.wait(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for key, value in values:
            producer.send(kafka.ecg_topic, key=key, value=value)
        producer.flush()
        produce_s = time.monotonic() - t0
        beds = sorted({c.patient_id for c in chunks})
        try:
            wait_until("every burst window in Redis", lambda: expected <= redis_view(client, prefix, beds)[1],
                       timeout_s=300, workers=[worker])
            wait_until("the lag to drain", lambda: consumer_lag(metrics_port) == 0, timeout_s=30, workers=[worker])
            drain_s = time.monotonic() - t0
            time.sleep(2 * SAMPLE_EVERY_S)
        finally:
            stop.set()
            sampler.join(timeout=10)
        result = Burst(chunks=len(values), chunk_bytes=chunk_bytes, produce_s=produce_s, expected=expected,
                       idle_rss=idle_rss, bound_rss=bound, samples=samples, drain_s=drain_s)
        result.members, result.window_keys = redis_view(client, prefix, beds)
        result.final_lag = consumer_lag(metrics_port)
        result.alive = worker.running()
    finally:
        producer.close()
        worker.stop()
    result.log = worker.log_path.read_text(errors="replace")
    mib = 1 / (1 << 20)
    print(f"\nbackpressure: {result.chunks} chunks ({BEDS} beds x {BURST_S} s, {result.chunks * chunk_bytes * mib:.1f} "
          f"MiB) produced in {produce_s:.2f} s = {result.chunks / produce_s:.0f}/s vs {BEDS}/s real time; "
          f"{len(expected)} windows; peak lag {result.peak_lag}; drained in {result.drain_s:.1f} s "
          f"({result.chunks / result.drain_s:.0f} chunks/s); RSS idle {idle_rss * mib:.0f} MiB, peak "
          f"{result.peak_rss * mib:.0f} MiB, bound {bound * mib:.0f} MiB (patients {patients_bytes * mib:.0f}, "
          f"in flight {in_flight_bytes * mib:.0f}, batch {batch_bytes * mib:.0f})")
    return result


def test_the_burst_is_far_above_real_time_and_the_lag_grows(burst):
    # The ward's real-time rate is BEDS chunks/s; the burst came at least 10x faster.
    assert burst.chunks / burst.produce_s > 10 * BEDS
    # The worker could not keep up: most of the burst was waiting in Kafka at some point.
    assert burst.peak_lag >= burst.chunks // 2, burst.samples[:20]


def test_the_lag_drains_to_zero(burst):
    assert burst.final_lag == 0
    assert burst.samples[-1][1] == 0
    assert burst.alive, burst.log[-3000:]


def test_memory_stays_within_the_bound_derived_from_patients_and_buffers(burst):
    assert burst.peak_rss <= burst.bound_rss, (burst.peak_rss, burst.bound_rss, burst.idle_rss)


def test_every_window_is_in_redis_exactly_once(burst):
    assert len(burst.expected) == BEDS * ((BURST_S - 10) // 5 + 1)
    assert set(burst.members) == burst.expected
    assert not {k: v for k, v in burst.members.items() if len(v) != 1}
    assert burst.window_keys == burst.expected
