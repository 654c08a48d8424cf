"""The fault runners: each streams a :class:`Reference`'s beds through its own
:class:`StreamScenario`, injects one fault (worker SIGKILL, rebalance, Triton / Redis outage, Kafka
restart) and returns the :class:`FaultOutcome` with its timings. Shared by
``tests/integration/test_faults.py`` and ``bench/bench_faults.py`` (the figures in docs/reliability.md).
"""

from __future__ import annotations

import json
import time

from hfrisk.testing.scenario import FaultOutcome, StreamScenario
from hfrisk.testing.services import consume_all, wait_until, worker_ready

__all__ = ["CUT_S", "finish", "run_worker_kill", "run_rebalance", "run_triton_outage", "run_redis_outage",
           "run_kafka_restart"]

# Each runner streams ``ref``'s beds through its own scenario: the first CUT_S seconds of every bed
# before the fault (written and checked), the rest during or after it. Each returns the verdict
# with its timings and leaves no worker running. The servers are the caller's: a runner restarts
# only the one it is about.

CUT_S = 20


def finish(sc: StreamScenario, out_args: dict, notes: list[str]) -> FaultOutcome:
    """Stop the workers still running (SIGTERM: a clean leave must exit 0) and build the verdict."""
    live = sc.live_workers()
    sc.stop()
    for w in live:
        notes.append(f"{w.name} exit {w.proc.returncode}")
    out = sc.outcome(notes=notes, **out_args)
    out.logs = sc.logs()
    out.exit_codes = {w.name: w.proc.returncode for w in live}
    stuck = [label for label, text in out.logs.items() if "did not exit; leaving now" in text]
    if stuck:  # stopped cleanly, but only the teardown limit of hfrisk.stream.worker.command ended the process
        out.notes.append(f"teardown limit hit by worker {', '.join(stuck)}")
    _topic_view(sc, out)
    return out


def _topic_view(sc: StreamScenario, out: FaultOutcome) -> None:
    """What reached Kafka: alert events (deduplicated on event_id), scored windows, dead letters."""
    kafka = sc.kafka
    alerts = consume_all(kafka.bootstrap_servers, kafka.alerts_topic, len(out.expected_events), timeout_s=15)
    out.topic_events = sorted({json.loads(r.value)["event_id"]: (json.loads(r.value)["kind"],
                                                                 json.loads(r.value)["patient_id"],
                                                                 json.loads(r.value)["window_id"])
                               for r in alerts}.values())
    scores = consume_all(kafka.bootstrap_servers, kafka.scores_topic, out.expected, timeout_s=15)
    out.topic_windows = {(json.loads(r.value)["patient_id"], json.loads(r.value)["window_id"]) for r in scores}
    out.redelivered = sum(1 for r in scores if json.loads(r.value)["redelivered"])
    out.dead_letters = len(consume_all(kafka.bootstrap_servers, kafka.dead_letter_topic, 0, timeout_s=1))


def _first_half(sc: StreamScenario) -> None:
    sc.produce(sc.ref.chunks_between(0, CUT_S))
    sc.wait_written(sc.ref.windows_before(CUT_S), f"{sc.name}: the windows before second {CUT_S}")


def run_worker_kill(sc: StreamScenario) -> FaultOutcome:
    """SIGKILL of the only worker while it drains a backlog, then a replacement in the same group."""
    notes: list[str] = []
    try:
        a = sc.start_worker("a")
        _first_half(sc)
        # The replacement must rebuild the windows that straddle the kill from a's saved buffers:
        # kill only after a checkpoint holds the first half.
        wait_until(f"{sc.name}: worker a to checkpoint the first {CUT_S} s", lambda: sc.saved_through(CUT_S),
                   workers=[a])
        before = sc.written()
        sc.produce(sc.ref.chunks_between(CUT_S))
        # Kill at the first window of the backlog (mid-stream): poll often, the backlog drains fast.
        wait_until(f"{sc.name}: the first window of the backlog", lambda: (sc.written() or set()) - before,
                   workers=[a], interval_s=0.02)
        t0 = time.monotonic()
        a.stop(kill=True)
        written_at_kill = sc.written()
        at_kill = len(written_at_kill)
        sc.start_worker("b")
        t1 = time.monotonic()
        notes.append(f"{at_kill}/{len(sc.ref.expected)} windows in Redis at the kill")
        first, drained = sc.watch_recovery(t1, baseline=written_at_kill)
        return finish(sc, dict(what="worker SIGKILL mid-backlog, replacement started at once", fault_s=t1 - t0,
                               recover_first_s=first, recover_drained_s=drained,
                               during_fault=at_kill - len(before),
                               left_at_fault=len(sc.ref.expected) - at_kill), notes)
    finally:
        sc.stop()


def run_rebalance(sc: StreamScenario, join_at_s: int = 15, leave_at_s: int = 28) -> FaultOutcome:
    """A second worker joins the group mid-stream (partitions move to it), later leaves (SIGTERM)."""
    notes: list[str] = []
    try:
        a = sc.start_worker("a")
        sc.produce(sc.ref.chunks_between(0, join_at_s))
        sc.wait_written(sc.ref.windows_before(join_at_s), "the windows before the join")
        t_join = time.monotonic()
        b = sc.start_worker("b")
        wait_until("worker b to get partitions", lambda: worker_ready(b),
                   workers=[a, b])
        notes.append(f"join: {time.monotonic() - t_join:.1f} s from start to partitions assigned")
        sc.produce(sc.ref.chunks_between(join_at_s, leave_at_s))
        sc.wait_written(sc.ref.windows_before(leave_at_s), "the windows while two workers share the group")
        t0 = time.monotonic()
        b.stop()  # SIGTERM: checkpoint, leave the group; a takes the partitions back
        t1 = time.monotonic()
        notes.append(f"worker b left in {t1 - t0:.1f} s (exit {b.proc.returncode})")
        sc.exit_b = b.proc.returncode
        sc.produce(sc.ref.chunks_between(leave_at_s))
        first, drained = sc.watch_recovery(t1)
        out = finish(sc, dict(what="2nd worker joins at 15 s of signal, leaves (SIGTERM) at 28 s",
                              fault_s=t1 - t_join, recover_first_s=first, recover_drained_s=drained,
                              during_fault=None), notes)
        out.exit_codes[b.name] = sc.exit_b
        return out
    finally:
        sc.stop()


def run_triton_outage(sc: StreamScenario, triton, down_s: float = 10.0) -> FaultOutcome:
    """Triton stopped for ``down_s`` while chunks keep arriving, then started on the same ports."""
    notes: list[str] = []
    try:
        sc.start_worker("w")
        _first_half(sc)
        before = sc.written()
        t0 = time.monotonic()
        triton.stop()
        sc.produce(sc.ref.chunks_between(CUT_S))
        time.sleep(max(0.0, t0 + down_s - time.monotonic()))
        written_down = sc.written()
        during = len(written_down - before)
        triton.restart()  # same ports, waits until the model is ready
        t1 = time.monotonic()
        first, drained = sc.watch_recovery(t1, baseline=written_down)
        return finish(sc, dict(what=f"Triton stopped {down_s:.0f} s, restarted (same ports)", fault_s=t1 - t0,
                               recover_first_s=first, recover_drained_s=drained, during_fault=during), notes)
    finally:
        sc.stop()


def run_redis_outage(sc: StreamScenario, redis_server, down_s: float = 10.0, kill: bool = False) -> FaultOutcome:
    """Redis stopped (``kill``: SIGKILL, else SIGTERM) for ``down_s`` while chunks keep arriving,
    then started again on the same port from its data dir (its AOF)."""
    notes = [f"persistence {redis_server.persistence}, appendfsync {redis_server.appendfsync}"]
    how = "SIGKILL" if kill else "SIGTERM"
    try:
        sc.start_worker("w")
        _first_half(sc)
        before = sc.written()
        t0 = time.monotonic()
        redis_server.stop(kill=kill)
        sc.produce(sc.ref.chunks_between(CUT_S))
        time.sleep(max(0.0, t0 + down_s - time.monotonic()))
        redis_server.start()
        t1 = time.monotonic()
        first, drained = sc.watch_recovery(t1, baseline=before)
        return finish(sc, dict(what=f"Redis stopped ({how}) {down_s:.0f} s, restarted from its AOF",
                               fault_s=t1 - t0, recover_first_s=first, recover_drained_s=drained,
                               during_fault=None), notes)
    finally:
        sc.stop()


def run_kafka_restart(sc: StreamScenario, broker, in_flight_until_s: int = 30, kill: bool = False) -> FaultOutcome:
    """The broker restarted (controlled shutdown, or SIGKILL with ``kill``; same ports and data)
    while the worker holds a backlog; the rest of the chunks are produced once it is back."""
    notes: list[str] = []
    try:
        sc.start_worker("w")
        _first_half(sc)
        before = sc.written()
        sc.produce(sc.ref.chunks_between(CUT_S, in_flight_until_s))
        t0 = time.monotonic()
        broker.restart(kill=kill)
        t1 = time.monotonic()
        during = len((sc.written() or set()) - before)
        sc.produce(sc.ref.chunks_between(in_flight_until_s))
        first, drained = sc.watch_recovery(t1)
        how = "SIGKILL" if kill else "controlled shutdown"
        return finish(sc, dict(what=f"Kafka broker restarted ({how}, same data)", fault_s=t1 - t0,
                               recover_first_s=first, recover_drained_s=drained, during_fault=during), notes)
    finally:
        sc.stop()
