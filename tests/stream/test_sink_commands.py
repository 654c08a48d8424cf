"""The sink's queued commands (stream/sinks/queued.py) against redis-py's pipeline: the same
commands, byte for byte once packed, method by method and for whole windows."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from hfrisk.stream.alerts.policy import AlertPolicy, AlertState
from hfrisk.stream.sinks import RedisSink, WindowResult
from hfrisk.stream.sinks import encoding as enc
from hfrisk.stream.sinks.queued import QueuedCommands
from hfrisk.stream.sinks.resp import pack_commands
from hfrisk.stream.windowing import window_id

T0_US = 1_700_000_000_123_456
HOP_US = 5_000_000
POLICY = AlertPolicy(threshold=1.0, clear_threshold=0.8, min_windows=2)


def _redis_py_pipeline() -> redis.client.Pipeline:
    # Never connects: a transaction pipeline only queues until execute().
    pipe = redis.Redis(host="127.0.0.1", port=1).pipeline(transaction=True)
    pipe.multi()
    return pipe


def _packed(stack) -> bytes:
    return pack_commands(stack)


def _queued_by_redis_py(pipe) -> bytes:
    return _packed([args for args, _ in pipe.command_stack])


CALLS = [
    ("zadd", ("k:trend", {"w-1|0.5": 1700000000123.456}), {}),
    ("zadd", ("k:ranking", {"bed-1": -0.25, b"bed-2": 3}), {}),
    ("zrem", ("k:flagged", "bed-1"), {}),
    ("zremrangebyrank", ("k:trend", 0, -1001), {}),
    ("expire", ("k:latest", 86400), {}),
    ("delete", ("k:latest",), {}),
    ("delete", ("k:a", "k:b"), {}),
    ("hset", ("k:latest",), {"mapping": {"log_risk": 0.5, "window_id": "w-1", "n": 3, "b": b"\x00\xff"}}),
    ("hincrby", ("k:reasons", "noisy", 1), {}),
    ("hincrby", ("k:reasons", "noisy"), {}),
    ("xadd", ("k:alerts", {"kind": "raised", "log_risk": 1.5}), {"maxlen": 10000, "approximate": True}),
    ("xadd", ("k:alerts", {"kind": "cleared"}), {"maxlen": 5, "approximate": False}),
    ("set", ("k:window", b'{"a":1}'), {"ex": 604800}),
]


@pytest.mark.parametrize("method,args,kwargs", CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_each_method_queues_what_redis_py_queues(method, args, kwargs):
    pipe, queued = _redis_py_pipeline(), QueuedCommands()
    getattr(pipe, method)(*args, **kwargs)
    getattr(queued, method)(*args, **kwargs)
    assert _packed(queued.stack) == _queued_by_redis_py(pipe)


def _result(k: int, log_risk: float | None, *, fit: bool = True) -> WindowResult:
    start = T0_US + k * HOP_US
    return WindowResult(
        patient_id="bed-1", window_id=window_id(T0_US, k), window_start_us=start, window_end_us=start + 10_000_000,
        fit_to_score=fit, quality_score=0.93 if fit else 0.21, quality_reasons=() if fit else ("noisy", "too_few_beats"),
        log_risk=log_risk, n_beats_detected=12, n_beats_used=11, heart_rate_bpm=66.5,
        lead_attention=tuple(float(w) for w in np.linspace(1, 2, 12) / np.linspace(1, 2, 12).sum()),
        temporal_attention=tuple([1 / 19] * 19), model_version="test-1", scored_at_us=start + 10_400_000,
        device_id="monitor-1",
    )


def test_whole_windows_queue_what_redis_py_queues(monkeypatch):
    """A ward's sequence through the sink's own _queue_window: scored windows raising and clearing
    an alert, an unfit one, a late older one (nothing rolled back), written both ways."""
    monkeypatch.setattr(enc, "now_us", lambda: T0_US + 99)  # written_at_us: the same clock both ways
    sink = RedisSink(redis.Redis(host="127.0.0.1", port=1), "t", policy=POLICY)
    results = [_result(0, 0.4), _result(1, 1.5), _result(2, 1.7), _result(3, None, fit=False), _result(5, 0.2),
               _result(6, 0.1), _result(4, 2.0)]
    events = 0
    for queue_with in (_redis_py_pipeline, QueuedCommands):
        target = queue_with()
        latest = seen = None
        alert = AlertState.from_fields({})  # what HGETALL of a missing hash gives
        for r in results:
            outcome = sink._queue_window(target, r, latest, seen, alert)
            if outcome.latest_updated:
                latest = str(r.window_start_us).encode()
            if seen is None or r.window_start_us > int(seen):
                seen = str(r.window_start_us).encode()
            alert = outcome.alert_state
            events += len(outcome.events)
        packed = _packed(target.stack) if isinstance(target, QueuedCommands) else _queued_by_redis_py(target)
        if queue_with is _redis_py_pipeline:
            expected = packed
        else:
            assert packed == expected
    assert events == 2 * 2, "an alert raised and cleared, each way"
