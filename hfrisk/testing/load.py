"""The fault scenarios under load: many beds streaming in real time while one fault is injected.

:func:`run_at_load` starts the scenario's worker, streams every bed of its :class:`Reference` with a
:class:`PacedFeed` (each 1-s chunk sent when its last sample is due), injects one fault
:data:`LOAD_FAULTS` ``fault_at_s`` into the stream, lets the stream run to its end, waits for every
window, and returns the usual :class:`FaultOutcome` (exactly once, scores, alerts, against the
reference) with the real-time figures of :func:`hfrisk.testing.recovery.recovery_times` in ``load``.

The faults are those of :mod:`hfrisk.testing.faults`, applied at a moment of the stream rather than
between bursts of chunks: nothing waits for the worker before the fault (at load there is always a
backlog in flight), and chunks keep arriving through it, Kafka restarts included (the feed's
producer holds and retries them). ``baseline`` injects nothing: the same stream, fault-free.
"""

from __future__ import annotations

import time

from hfrisk.testing.faults import finish
from hfrisk.testing.realtime import PacedFeed, percentiles, window_due_us
from hfrisk.testing.recovery import recovery_times
from hfrisk.testing.scenario import FaultOutcome, StreamScenario
from hfrisk.testing.services import CHUNK_BYTES, WAIT_S, wait_until, window_records, worker_ready

__all__ = ["LOAD_FAULTS", "LOAD_WORKER_OPTIONS", "LOAD_WORKER_ENV", "load_worker_env", "load_worker_options",
           "run_at_load"]

LOAD_FAULTS = ("baseline", "worker_kill", "rebalance", "triton", "redis", "redis_kill", "kafka", "kafka_kill")

# The worker configuration bench_stream measured in real time (docs/bench/stream.md: two
# preprocessing processes, batches of 32 with the default 0.05-s linger, 0.2 s before 2026-12-06's
# gathered batches); load_worker_options adds the default checkpoint
# interval in place of the fault scenarios' 0.5 s, which at hundreds of beds saves every buffer
# twice a second. The session timeout stays the fault scenarios' 6 s. A large ward runs batches of
# 128 (load_worker_env).
LOAD_WORKER_OPTIONS = {"--prep-workers": "2"}
LOAD_WORKER_ENV = {"HFRISK_STREAM__BATCH_SIZE": "32", "HFRISK_STREAM__BATCH_TIMEOUT_S": "0.05"}


def load_worker_options(prep_workers: int = 2) -> dict[str, str]:
    """:data:`LOAD_WORKER_OPTIONS` with ``prep_workers`` preprocessing processes per worker and the
    checkpoint interval of the settings (``stream.checkpoint_interval_s``)."""
    from hfrisk.core.config import get_settings

    interval = get_settings().stream.checkpoint_interval_s
    return LOAD_WORKER_OPTIONS | {"--prep-workers": str(prep_workers), "--checkpoint-interval-s": f"{interval:g}"}


def load_worker_env(batch_size: int = 32) -> dict[str, str]:
    """:data:`LOAD_WORKER_ENV` with micro-batches of ``batch_size`` chunks."""
    return LOAD_WORKER_ENV | {"HFRISK_STREAM__BATCH_SIZE": str(batch_size)}


def _sleep_until(monotonic_s: float) -> None:
    time.sleep(max(0.0, monotonic_s - time.monotonic()))


# Each injector applies its fault now and returns (start, end) on time.monotonic and what it was.


def _worker_kill(sc, servers, feed, notes, down_s):
    t0 = time.monotonic()
    sc.workers["a"].stop(kill=True)
    sc.start_worker("b")  # returns once its process is up
    return t0, time.monotonic(), "worker SIGKILL, replacement started at once"


def _rebalance(sc, servers, feed, notes, down_s, hold_s: float = 13.0):
    t0 = time.monotonic()
    b = sc.start_worker("b")
    wait_until("worker b to get partitions", lambda: worker_ready(b),
               workers=sc.live_workers())
    notes.append(f"join: {time.monotonic() - t0:.1f} s from start to partitions assigned")
    _sleep_until(t0 + hold_s)
    t1 = time.monotonic()
    b.stop()  # SIGTERM: checkpoint, leave the group; a takes the partitions back
    notes.append(f"worker b left in {time.monotonic() - t1:.1f} s (exit {b.proc.returncode})")
    return t0, time.monotonic(), f"2nd worker joins, leaves (SIGTERM) {hold_s:.0f} s later"


def _triton(sc, servers, feed, notes, down_s):
    t0 = time.monotonic()
    servers["triton"].stop()
    _sleep_until(t0 + down_s)
    servers["triton"].restart()  # same ports, waits until the model is ready
    return t0, time.monotonic(), f"Triton stopped {down_s:.0f} s, restarted (same ports)"


def _redis(kill: bool):
    def inject(sc, servers, feed, notes, down_s):
        redis = servers["redis"]
        notes.append(f"persistence {redis.persistence}, appendfsync {redis.appendfsync}")
        t0 = time.monotonic()
        redis.stop(kill=kill)
        _sleep_until(t0 + down_s)
        redis.start()
        how = "SIGKILL" if kill else "SIGTERM"
        return t0, time.monotonic(), f"Redis stopped ({how}) {down_s:.0f} s, restarted from its AOF"
    return inject


def _kafka(kill: bool):
    def inject(sc, servers, feed, notes, down_s):
        t0 = time.monotonic()
        servers["kafka"].restart(kill=kill)
        how = "SIGKILL" if kill else "controlled shutdown"
        return t0, time.monotonic(), f"Kafka broker restarted ({how}, same data)"
    return inject


def _baseline(sc, servers, feed, notes, down_s):
    t = time.monotonic()
    return t, t, "no fault (the same stream, for comparison)"


_INJECT = {"baseline": _baseline, "worker_kill": _worker_kill, "rebalance": _rebalance, "triton": _triton,
           "redis": _redis(False), "redis_kill": _redis(True), "kafka": _kafka(False), "kafka_kill": _kafka(True)}


def _wait_all_written(sc: StreamScenario, timeout_s: float) -> None:
    """Every expected window in Redis; polled every 2 s (a poll reads every bed's keys)."""
    expected = set(sc.ref.expected)

    def done() -> bool:
        got = sc.written()
        return got is not None and expected <= got

    wait_until(f"{sc.name}: every window after the stream ended", done, timeout_s=timeout_s,
               workers=sc.live_workers(), interval_s=2.0)


def run_at_load(sc: StreamScenario, fault: str, servers: dict, *, fault_at_s: float = 40.0,
                down_s: float = 10.0, real_time_s: float = 1.0, span_s: float = 10.0, workers: int = 1) -> FaultOutcome:
    """Stream ``sc.ref`` in real time, inject ``fault`` (one of :data:`LOAD_FAULTS`) ``fault_at_s``
    into it; ``servers``: ``kafka``, ``redis``, ``triton`` (the one the fault is about is restarted).
    ``workers``: worker processes sharing the partitions from the start ("a", "a2", ...; the worker
    kill kills "a"). ``out.load`` holds the real-time figures (seconds; see
    :class:`~hfrisk.testing.recovery.RecoveryTimes`)."""
    notes: list[str] = []
    feed = None
    try:
        for label in ["a", *(f"a{k}" for k in range(2, workers + 1))]:
            sc.start_worker(label)
        if workers > 1:  # the group settled, so that the stream does not start with a rebalance
            wait_until("every worker to get partitions",
                       lambda: all(worker_ready(w) for w in sc.workers.values()),
                       workers=sc.live_workers())
        feed = PacedFeed(sc.ref.chunks, sc.kafka.bootstrap_servers, sc.kafka.ecg_topic, CHUNK_BYTES)
        feed.start(lead_s=1.0)
        _sleep_until(feed.at(fault_at_s))
        t0, t1, what = _INJECT[fault](sc, servers, feed, notes, down_s)
        stream_s = (feed.last_due_us - feed.first_due_us) / 1e6
        feed.join(timeout_s=stream_s + WAIT_S)
        if feed.errors:
            notes.append(f"**feed: {len(feed.errors)} chunks not taken by Kafka** ({feed.errors[0]!r})")
        _wait_all_written(sc, WAIT_S + 60)
        client = sc.redis_client()
        try:
            records = {(r["patient_id"], r["window_id"]): r for r in window_records(client, sc.prefix, sc.ref.patients)}
        finally:
            client.close()
        keys = [k for k in sc.ref.expected if k in records]
        window_s = sc.ref.card.window.window_s
        due = [window_due_us(sc.ref.windows[k].start_us, window_s, sc.ref.windows[k].ecg.fs_hz, feed.shift_us) / 1e6
               for k in keys]
        written = [records[k]["written_at_us"] / 1e6 for k in keys]
        start_wall, end_wall = feed.wall_s(t0), feed.wall_s(t1)
        times = recovery_times(due, written, start_wall, end_wall, real_time_s=real_time_s, span_s=span_s)
        during = sum(1 for w in written if start_wall <= w <= end_wall) if fault != "rebalance" else None
        out = finish(sc, dict(what=what, fault_s=t1 - t0, recover_first_s=times.first_s,
                              recover_drained_s=times.drained_s, during_fault=during), notes)
        out.load = {
            "fault_at_s": round(t0 - feed.started_mono, 1),
            "stream_s": round(stream_s, 1),
            "latency_s": percentiles([w - d for w, d in zip(written, due)]) if keys else None,
            "feed_max_lag_s": round(feed.max_lag_s, 3),
            "feed_errors": len(feed.errors),
        } | times.as_dict()
        return out
    finally:
        sc.stop()
        if feed is not None:
            feed.close()
