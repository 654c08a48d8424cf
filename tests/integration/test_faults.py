"""Fault injection on the real local stack: Kafka -> ``hfrisk worker`` -> Triton -> Redis.

Every scenario replays the same 3 beds of real PTB-XL recordings (40 s each, 21 windows) through
its own topics, consumer group and Redis key prefix, injects one fault mid-stream, and then checks
Redis window by window against the offline reference (``prepare`` + ONNX Runtime on the file
Triton serves): every window exactly once with its score within 1e-4, no window lost, the alert
events those scores imply (thresholds scripted so that an alert rises and clears), every window
and alert on Kafka at least once, nothing dead-lettered, and the surviving workers leaving
cleanly. The recovery times are measured here only to be bounded; the figures in
docs/reliability.md come from ``bench/bench_faults.py``, which runs the same scenarios.

The faults (the worker SIGKILL of ``test_stream_pipeline`` happens after a checkpoint; here it
hits a worker draining a backlog):

* ``worker_kill``: SIGKILL of the only worker mid-backlog; a replacement joins the group.
* ``rebalance``: a second worker joins mid-stream, takes partitions, later leaves with SIGTERM.
* ``triton``: the session's Triton stopped for 10 s, restarted on the same ports.
* ``redis``: this module's own Redis (AOF, fsync every second: the launcher's recommended
  default) killed with SIGKILL, left down 10 s while chunks arrive, restarted from its AOF.
* ``kafka``: the session's broker restarted (controlled shutdown; same ports and data, so the
  session fixture is left as it was) while the worker holds unacknowledged messages.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from hfrisk.stack.redis_server import RedisServer

from hfrisk.testing import (
    FaultOutcome,
    Reference,
    StreamScenario,
    run_kafka_restart,
    run_rebalance,
    run_redis_outage,
    run_triton_outage,
    run_worker_kill,
    served_card,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEDS = 3
RECORDS_PER_BED = 4  # 40 s of signal per bed: 7 windows each at a 5-s hop
RECOVER_WITHIN_S = 60.0  # generous: the machine is shared; the figures are in docs/reliability.md


@pytest.fixture(scope="module")
def reference(triton_server, exported_model_dir) -> Reference:
    card = served_card(triton_server.model_repository)
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return Reference.build(card, session, beds=BEDS, records=BEDS * RECORDS_PER_BED, salt="faults")


@pytest.fixture
def scenario(reference, kafka_broker, redis_server, triton_server, tmp_path):
    """Makes a scenario (own topics, group, key prefix) on the session servers, or on ``redis``."""
    def make(name: str, redis=redis_server) -> StreamScenario:
        return StreamScenario(name, reference, bootstrap=kafka_broker.bootstrap_servers, redis_url=redis.url,
                              redis_client=redis.client, triton=triton_server, tmp=tmp_path)
    return make


def assert_recovered(out: FaultOutcome) -> None:
    """Everything the reference expects, exactly once, and nothing else."""
    assert out.expected == BEDS * 7
    assert not out.missing, f"{out.fault}: windows lost: {out.missing}"
    assert not out.duplicates, f"{out.fault}: windows stored more than once: {out.duplicates}"
    assert not out.unexpected, f"{out.fault}: windows nobody expected: {out.unexpected}"
    assert not out.wrong_scores, f"{out.fault}: scores differ from the offline reference: {out.wrong_scores}"
    assert out.written == out.expected
    # Alerts: in Redis exactly the events the scores imply, and each of them on Kafka.
    assert out.alerts_consistent, (out.alert_events, out.expected_events)
    assert {"raised", "cleared"} <= {kind for kind, _, _ in out.alert_events}
    assert out.topic_events == sorted(out.expected_events)
    assert out.topic_windows == out.expected_keys
    assert out.dead_letters == 0, "a fault must hold the stream, never dead-letter valid chunks"
    assert all(code == 0 for code in out.exit_codes.values()), (out.exit_codes, _tails(out))
    assert out.recover_drained_s < RECOVER_WITHIN_S, out.row()


def _tails(out: FaultOutcome) -> str:
    return "\n".join(f"--- {label}\n" + "\n".join(text.splitlines()[-40:]) for label, text in out.logs.items())


def _run(make, name: str, runner, *args, redis=None, **options) -> FaultOutcome:
    sc = make(name) if redis is None else make(name, redis=redis)
    return runner(sc, *args, **options)


def test_worker_sigkill_mid_backlog_then_replacement(scenario):
    out = _run(scenario, "worker_kill", run_worker_kill)
    assert_recovered(out)
    # The kill did land mid-stream: some windows were still to be written by the replacement,
    # which rebuilt them from the buffers the dead worker had saved.
    assert out.left_at_fault > 0, out.notes
    assert "window buffer restored" in out.logs["b"], _tails(out)


def test_rebalance_second_worker_joins_then_leaves(scenario):
    out = _run(scenario, "rebalance", run_rebalance)
    assert_recovered(out)
    # Partitions really moved: b restored some patients' buffers when it took them, and a
    # restored them again when b left.
    assert "window buffer restored" in out.logs["b"], _tails(out)
    assert out.logs["a"].count("window buffer restored") >= 1, _tails(out)


def test_triton_stopped_then_restarted(scenario, triton_server):
    out = _run(scenario, "triton", run_triton_outage, triton_server)
    assert triton_server.running()
    assert_recovered(out)
    assert out.recover_first_s is not None


def test_redis_killed_and_restarted_from_its_aof(scenario, tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("faults_redis"), persistence="aof") as own_redis:
        assert own_redis.client().config_get("appendonly") == {"appendonly": "yes"}
        out = _run(scenario, "redis", run_redis_outage, own_redis, redis=own_redis, kill=True)
        assert own_redis.running()
        assert_recovered(out)
        assert out.recover_first_s is not None


def test_kafka_broker_restarted(scenario, kafka_broker):
    out = _run(scenario, "kafka", run_kafka_restart, kafka_broker)
    assert kafka_broker.running()
    assert_recovered(out)


def test_a_worker_stuck_in_teardown_still_exits_with_its_status(tmp_path):
    # What the worker does once Faust has stopped: a thread that never ends (as a gRPC poller
    # joined at interpreter exit can) must not keep the process alive past the teardown limit.
    import subprocess
    import sys
    import time

    script = (
        "import threading, time\n"
        "from hfrisk.stream.worker.command import exit_after_teardown\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "try:\n"
        "    raise SystemExit(3)\n"
        "finally:\n"
        "    exit_after_teardown(0.5)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 30
    assert "did not exit; leaving now" in done.stdout + done.stderr
    assert "Thread 0x" in done.stderr  # the stacks of the stuck threads, for the bug report
