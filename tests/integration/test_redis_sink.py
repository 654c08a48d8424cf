"""The Redis sink against a real Redis: keys as documented, one idempotent transaction per window,
no roll-back by late windows, ranking order, and a flagged set that always matches the alerts."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.quality import QualityReason
from hfrisk.stream.alerts.policy import AlertKind, AlertPolicy, AlertState
from hfrisk.stream.sinks.keys import KEY_SCHEMA
from hfrisk.stream.sinks import RedisSink, WindowResult, temporal_summary
from hfrisk.stream.sinks import encoding as enc
from hfrisk.stream.windowing import SkippedWindows, SkipReason, Window, window_id

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "redis-keys.md"
T0_US = 1_700_000_000_123_456
HOP_US = 5_000_000
POLICY = AlertPolicy(threshold=1.0, clear_threshold=0.8, min_windows=2)
LATEST_FIELDS = {
    "patient_id", "window_id", "window_start_us", "window_end_us", "window_start", "log_risk", "hazard_ratio",
    "risk_percentile", "absolute_risk", "absolute_risk_horizon_days", "quality_score", "fit_to_score", "quality_reasons", "n_beats_detected", "n_beats_used", "heart_rate_bpm", "lead_attention",
    "temporal_attention", "model_version", "scored_at_us", "scored_at",
}


@pytest.fixture
def client(redis_server):
    with redis_server.client() as client:
        yield client


@pytest.fixture
def prefix(client):
    """A fresh prefix per test on the shared server; its keys are removed afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def sink(client, prefix):
    return RedisSink(client, prefix, policy=POLICY)


def _result(patient: str, k: int, log_risk: float | None, *, fit: bool = True, origin: int = T0_US) -> WindowResult:
    start = origin + k * HOP_US
    return WindowResult(
        patient_id=patient,
        window_id=window_id(origin, k),
        window_start_us=start,
        window_end_us=start + 10_000_000,
        fit_to_score=fit,
        quality_score=0.93 if fit else 0.21,
        quality_reasons=() if fit else ("noisy", "too_few_beats"),
        log_risk=log_risk,
        n_beats_detected=12,
        n_beats_used=11,
        heart_rate_bpm=66.5,
        lead_attention=tuple(float(w) for w in np.linspace(1, 2, 12) / np.linspace(1, 2, 12).sum()),
        temporal_attention=tuple([1 / 19] * 19),
        model_version="test-1",
        scored_at_us=start + 10_400_000,
        device_id="monitor-1",
    )


def _snapshot(client, prefix) -> dict:
    """Every key under the prefix: (type, DUMP bytes, remaining ms to live)."""
    return {
        key: (client.type(key), client.dump(key), client.pttl(key))
        for key in sorted(client.scan_iter(match=f"{prefix}:*"))
    }


def _documented() -> set[tuple[str, str]]:
    rows = re.findall(r"^\| `(\{prefix\}[^`]*)` \| (\w+) \|", DOC.read_text(), flags=re.M)
    return {(pattern, kind) for pattern, kind in rows}


def _pattern_regex(pattern: str, prefix: str) -> re.Pattern:
    body = re.escape(pattern).replace(re.escape("{prefix}"), re.escape(prefix))
    body = body.replace(re.escape("{patient_id}"), r"[^:]+").replace(re.escape("{window_id}"), r"-?\d+-\d+")
    return re.compile(f"^{body}$")


def test_the_key_schema_in_code_is_the_one_documented():
    assert _documented() == {(spec.pattern, spec.type) for spec in KEY_SCHEMA}


def test_a_ward_of_writes_creates_exactly_the_documented_keys_with_their_types_and_ttls(client, prefix, sink):
    sink.register_patient("bed-1", bed="ICU-4", device_id="monitor-1")
    for k, risk in enumerate([1.2, 1.4]):  # raises an alert
        sink.write_window_result(_result("bed-1", k, risk))
    sink.write_window_result(_result("bed-1", 2, None, fit=False))
    sink.write_window_result(_result("bed-2", 0, 0.3))
    sink.write_skipped(SkippedWindows("bed-2", 0, T0_US, 1, 3, T0_US + HOP_US, SkipReason.MISSING_CHUNKS, "lost",
                                      (T0_US + 7_000_000, T0_US + 8_000_000), (7, 8)))

    sink_keys = [spec for spec in KEY_SCHEMA if spec.owner == "sink"]  # not the worker's saved buffers
    documented = {spec.name: _pattern_regex(spec.pattern, prefix) for spec in sink_keys}
    types = {spec.name: spec.type for spec in sink_keys}
    seen = set()
    for key, (kind, _, ttl_ms) in _snapshot(client, prefix).items():
        name = key.decode()
        matches = [family for family, regex in documented.items() if regex.match(name)]
        assert len(matches) == 1, f"{name} matches {matches} of the documented keys"
        family = matches[0]
        seen.add(family)
        assert kind.decode() == types[family], name
        if family == "window":
            assert sink.window_ttl_s * 1000 - 60_000 < ttl_ms <= sink.window_ttl_s * 1000
        elif name.count(":") == 2:  # per patient
            assert sink.patient_ttl_s * 1000 - 60_000 < ttl_ms <= sink.patient_ttl_s * 1000, name
        else:
            assert ttl_ms == -1, name
    assert seen == set(documented)

    view = sink.read_patient("bed-1")
    assert set(client.hgetall(f"{prefix}:latest:bed-1")) == {f.encode() for f in LATEST_FIELDS}
    latest = view.latest
    assert latest["window_id"] == window_id(T0_US, 1) and latest["log_risk"] == 1.4
    assert latest["hazard_ratio"] == pytest.approx(np.exp(1.4))
    assert latest["heart_rate_bpm"] == 66.5 and latest["fit_to_score"] is True
    assert (latest["n_beats_detected"], latest["n_beats_used"]) == (12, 11)
    assert list(latest["lead_attention"]) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert sum(latest["lead_attention"].values()) == pytest.approx(1, abs=1e-5)
    assert len(latest["temporal_attention"]) == 19
    assert latest["scored_at_us"] == T0_US + HOP_US + 10_400_000
    assert [(p.window_id, p.log_risk, p.window_start_us) for p in view.trend] == [
        (window_id(T0_US, 0), 1.2, T0_US), (window_id(T0_US, 1), 1.4, T0_US + HOP_US)
    ]
    assert view.info["bed"] == "ICU-4" and view.info["last_window_id"] == window_id(T0_US, 2)
    assert view.info["last_fit_to_score"] == "0"  # the newest window seen was the noisy one
    assert view.low_quality == [{"window_id": window_id(T0_US, 2), "quality_score": 0.21, "log_risk": None,
                                 "reasons": ["noisy", "too_few_beats"],
                                 "n_beats_detected": 12, "n_beats_used": 11,
                                 "window_start_us": T0_US + 2 * HOP_US}]
    assert client.hgetall(f"{prefix}:quality_reasons") == {b"noisy": b"1", b"too_few_beats": b"1"}
    (gap,) = sink.read_patient("bed-2").gaps
    assert (gap["first_window_id"], gap["windows"], gap["reason"], gap["first_start_us"]) == (
        window_id(T0_US, 1), 2, "missing_chunks", T0_US + HOP_US)


def test_writing_the_same_window_twice_leaves_every_key_byte_identical(client, prefix, sink):
    first = [sink.write_window_result(_result("bed-1", k, 1.5)) for k in range(2)]
    sink.write_window_result(_result("bed-1", 2, None, fit=False))
    assert sink.write_skipped(SkippedWindows("bed-1", 0, T0_US, 3, 4, T0_US + 3 * HOP_US, SkipReason.TIME_GAP, "pause"))
    before = _snapshot(client, prefix)

    again = [sink.write_window_result(_result("bed-1", k, 1.5)) for k in range(2)]
    noisy_again = sink.write_window_result(_result("bed-1", 2, None, fit=False))
    assert not sink.write_skipped(SkippedWindows("bed-1", 0, T0_US, 3, 4, T0_US + 3 * HOP_US, SkipReason.TIME_GAP,
                                                 "pause"))
    after = _snapshot(client, prefix)

    assert all(o.duplicate for o in [*again, noisy_again])
    assert after.keys() == before.keys()
    for key in before:
        (type_a, dump_a, ttl_a), (type_b, dump_b, ttl_b) = before[key], after[key]
        assert (type_a, dump_a) == (type_b, dump_b), key
        assert ttl_b <= ttl_a, f"{key}: TTL refreshed by a redelivery"
    # The window that raised the flag hands its event back, so the caller can re-send it.
    assert first[1].events and again[1].events == first[1].events
    assert again[1].events[0].kind is AlertKind.RAISED and again[0].events == ()


def test_a_late_older_window_joins_the_trend_but_rolls_nothing_back(client, prefix, sink):
    sink.write_window_result(_result("bed-1", 4, 0.5))
    latest_before = client.hgetall(f"{prefix}:latest:bed-1")
    patient_before = client.hgetall(f"{prefix}:patient:bed-1")
    alert_before = sink.read_patient("bed-1").alert

    late = sink.write_window_result(_result("bed-1", 2, 2.5))
    late_again = sink.write_window_result(_result("bed-1", 3, 2.5))

    assert not late.duplicate and not late.latest_updated and not late_again.latest_updated
    assert client.hgetall(f"{prefix}:latest:bed-1") == latest_before
    assert client.hgetall(f"{prefix}:patient:bed-1") == patient_before
    assert sink.ranking() == [("bed-1", 0.5)]
    # Two high windows, but older than one already counted: no alert from stale data.
    view = sink.read_patient("bed-1")
    assert view.alert == alert_before and not view.flagged and late.events == ()
    assert [p.window_id for p in view.trend] == [window_id(T0_US, k) for k in (2, 3, 4)]


@pytest.mark.parametrize("grouped", [False, True], ids=["one by one", "in one group"])
def test_a_window_starting_when_the_latest_did_stays_second_to_it(client, prefix, sink, grouped):
    # Equal starts need two segments of one patient (a monitor that restarted and re-sent): the
    # window written first stays the latest; the other joins the trend and raises nothing, so the
    # patient's view does not flip between two readings of the same moment.
    first = _result("bed-1", 2, 0.5)
    again = _result("bed-1", 1, 2.5, origin=T0_US + HOP_US)  # another segment, the same start
    assert again.window_start_us == first.window_start_us and again.window_id != first.window_id
    outcomes = (list(sink.write_window_results([first, again])) if grouped
                else [sink.write_window_result(first), sink.write_window_result(again)])

    assert [o.duplicate for o in outcomes] == [False, False]
    assert [o.latest_updated for o in outcomes] == [True, False]
    assert client.hget(f"{prefix}:latest:bed-1", "window_id").decode() == first.window_id
    assert sink.ranking() == [("bed-1", 0.5)]
    view = sink.read_patient("bed-1")
    assert not view.flagged and outcomes[1].events == ()
    assert sorted(p.window_id for p in view.trend) == sorted([first.window_id, again.window_id])


def test_ranking_orders_patients_by_their_current_log_risk(sink):
    for patient, risk in [("bed-1", 0.2), ("bed-2", 1.7), ("bed-3", -0.4), ("bed-4", 0.9)]:
        sink.write_window_result(_result(patient, 0, risk))
    assert sink.ranking(3) == [("bed-2", 1.7), ("bed-4", 0.9), ("bed-1", 0.2)]

    sink.write_window_result(_result("bed-2", 1, -1.0))  # bed-2 recovers: its newest score counts
    sink.write_window_result(_result("bed-3", 1, None, fit=False))  # noisy: ranks on its last scored one
    assert sink.ranking(10) == [("bed-4", 0.9), ("bed-1", 0.2), ("bed-3", -0.4), ("bed-2", -1.0)]


def test_the_flagged_set_and_alert_state_follow_the_alert_events(client, prefix, sink):
    feeds = {
        "bed-1": [1.2, 1.3, 0.9, 0.5, 0.4, 0.3],  # raised at 1, cleared at 4
        "bed-2": [1.1, 0.2, 1.1, 1.0, 0.85, None, 0.7, 1.0],  # raised at 3, stays (None: noisy)
        "bed-3": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # never
    }
    returned = []
    flagged_by_events: dict[str, int] = {}
    for k in range(8):
        for patient, scores in feeds.items():
            if k >= len(scores):
                continue
            outcome = sink.write_window_result(_result(patient, k, scores[k], fit=scores[k] is not None))
            for event in outcome.events:
                returned.append(event)
                if event.kind is AlertKind.RAISED:
                    flagged_by_events[patient] = event.window_start_us
                else:
                    flagged_by_events.pop(patient)
            # After every single write: set == events == stored state.
            assert sink.flagged() == flagged_by_events
            for p in feeds:
                assert sink.read_patient(p).alert.flagged == (p in flagged_by_events)

    assert [(e.patient_id, e.window_id, e.kind) for e in returned] == [
        ("bed-1", window_id(T0_US, 1), AlertKind.RAISED),
        ("bed-2", window_id(T0_US, 3), AlertKind.RAISED),
        ("bed-1", window_id(T0_US, 4), AlertKind.CLEARED),
    ]
    assert sink.flagged() == {"bed-2": T0_US + 3 * HOP_US}
    assert sink.alert_events() == returned  # the stream holds the same events, in order
    view = sink.read_patient("bed-2")
    assert view.alert.since_window_id == window_id(T0_US, 3) and view.flagged


def test_a_racing_writer_forces_a_retry_and_both_windows_land(client, prefix):
    """Another worker writes the same patient between this write's WATCH and its EXEC."""
    sink = RedisSink(client, prefix, policy=POLICY)
    rival = RedisSink(client, prefix, policy=POLICY)
    raced = threading.Event()
    queue = sink._queue_window

    def queue_after_a_rival_write(pipe, *args):
        if not raced.is_set():
            raced.set()
            rival.write_window_result(_result("bed-1", 0, 1.5))
        return queue(pipe, *args)

    sink._queue_window = queue_after_a_rival_write
    outcome = sink.write_window_result(_result("bed-1", 1, 1.6))

    assert raced.is_set()
    # The retry saw the rival's window: two high windows in a row raise the flag.
    assert [e.kind for e in outcome.events] == [AlertKind.RAISED]
    view = sink.read_patient("bed-1")
    assert [p.window_id for p in view.trend] == [window_id(T0_US, 0), window_id(T0_US, 1)]
    assert view.latest["window_id"] == window_id(T0_US, 1) and view.flagged


def _contents(client, prefix) -> dict:
    """Every key under ``prefix`` by its name after it, with its decoded value (idempotency records
    without their write time, the alert stream without its entry ids) and whether it expires."""
    view = {}
    for key in sorted(client.scan_iter(match=f"{prefix}:*")):
        kind = client.type(key).decode()
        if kind == "string":
            value = {f: v for f, v in json.loads(client.get(key)).items() if f != "written_at_us"}
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = [fields for _, fields in client.xrange(key)]
        view[key.decode().removeprefix(prefix)] = (kind, value, client.ttl(key) > 0)
    return view


def test_a_group_of_windows_writes_what_one_window_at_a_time_writes(client, prefix):
    """Windows written as groups, several of one patient in a group (their alert state raised and
    cleared inside it, late older ones, unfit ones, one already written, one twice), leave the
    same keys and values and return the same outcomes as the same windows written one by one."""
    one_by_one = f"{prefix}-single"
    windows = [
        _result("bed-1", 0, 1.2), _result("bed-2", 0, 0.1), _result("bed-1", 1, 1.3),
        _result("bed-3", 4, None, fit=False), _result("bed-1", 2, 0.5), _result("bed-2", 1, 1.4),
        _result("bed-1", 0, 1.2), _result("bed-2", 3, 1.5), _result("bed-2", 2, 1.6), _result("bed-1", 3, 0.4),
        _result("bed-1", 4, 0.3), _result("bed-3", 5, 2.0), _result("bed-3", 3, 0.2),
        _result("bed-2", 4, None, fit=False), _result("bed-2", 5, 1.1), _result("bed-1", 5, 0.2),
        _result("bed-1", 5, 0.2), _result("bed-4", 7, 0.3), _result("bed-4", 6, None, fit=False),
    ]
    try:
        single = RedisSink(client, one_by_one, policy=POLICY)
        grouped = RedisSink(client, prefix, policy=POLICY)
        single.write_window_result(windows[1])  # a window already written before its group
        grouped.write_window_result(windows[1])

        expected = [single.write_window_result(r) for r in windows]
        got = [outcome for start in range(0, len(windows), 7)
               for outcome in grouped.write_window_results(windows[start : start + 7])]

        assert got == expected
        assert [(e.patient_id, e.window_id, e.kind) for o in got for e in o.events if not o.duplicate] == [
            ("bed-1", window_id(T0_US, 1), AlertKind.RAISED),  # inside the first group
            ("bed-2", window_id(T0_US, 3), AlertKind.RAISED),
            ("bed-1", window_id(T0_US, 3), AlertKind.CLEARED),
        ]
        assert [o.duplicate for o in got].count(True) == 3
        assert _contents(client, prefix) == _contents(client, one_by_one)
    finally:
        keys = list(client.scan_iter(match=f"{one_by_one}:*"))
        if keys:
            client.delete(*keys)


def test_a_group_raced_by_another_writer_lands_one_window_at_a_time(client, prefix):
    sink = RedisSink(client, prefix, policy=POLICY)
    rival = RedisSink(client, prefix, policy=POLICY)
    queue, calls = sink._queue_window, []

    def queue_after_a_rival_write(pipe, *args):
        calls.append(args[0].window_id)
        if len(calls) == 1:
            rival.write_window_result(_result("bed-2", 0, 1.5))
        return queue(pipe, *args)

    sink._queue_window = queue_after_a_rival_write
    group = [_result("bed-1", 0, 1.5), _result("bed-2", 1, 1.6), _result("bed-1", 1, 1.7)]
    outcomes = list(sink.write_window_results(group))

    # The group's transaction failed on the rival's write; then each window went on its own.
    assert calls == [r.window_id for r in group] * 2
    assert not any(o.duplicate for o in outcomes)
    assert [[e.kind for e in o.events] for o in outcomes] == [[], [AlertKind.RAISED], [AlertKind.RAISED]]
    assert sink.flagged() == {"bed-1": T0_US + HOP_US, "bed-2": T0_US + HOP_US}
    assert [p.window_id for p in sink.read_patient("bed-2").trend] == [window_id(T0_US, 0), window_id(T0_US, 1)]


def test_caps_keep_the_newest_records(client, prefix):
    sink = RedisSink(client, prefix, trend_max_points=5, quality_max_records=2)
    for k in range(3, 11):
        sink.write_window_result(_result("bed-1", k, k / 10))
    sink.write_window_result(_result("bed-1", 1, 9.9))  # late and older than everything kept
    for k in range(11, 14):
        sink.write_window_result(_result("bed-1", k, None, fit=False))
    view = sink.read_patient("bed-1")
    assert [p.window_id for p in view.trend] == [window_id(T0_US, k) for k in range(6, 11)]
    assert [q["window_id"] for q in view.low_quality] == [window_id(T0_US, 12), window_id(T0_US, 13)]
    assert view.alert == AlertState()  # no policy: no alert state kept
    assert not client.exists(f"{prefix}:alert:bed-1")


def test_results_from_a_real_window_and_model_outputs(client, prefix, sink):
    rng = np.random.default_rng(0)
    ecg = ECG(samples=rng.normal(size=(12, 5000)).astype(np.float32), fs_hz=500,
              lead_names=("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"),
              device_id="monitor-9")
    start = T0_US + 3 * HOP_US
    window = Window("bed-9", 0, 3, T0_US, start, start + 10_000_000, ecg, tuple(range(15, 25)))
    quality = SimpleNamespace(score=0.88, fit_to_score=True, reasons=(QualityReason.BASELINE_WANDER,))
    prepared = SimpleNamespace(quality=quality, n_beats_detected=14, n_beats_used=12, heart_rate_bpm=72.0)
    temporal = rng.dirichlet(np.ones(19), size=12).astype(np.float32)
    outputs = {
        "log_risk": np.array([[0.75]], np.float32),
        "lead_attention": rng.dirichlet(np.ones(12))[None].astype(np.float32),
        "temporal_attention": temporal[None],
    }

    result = WindowResult.from_scoring(window, prepared, outputs, model_version="7")
    sink.write_window_result(result)

    assert result.window_id == window_id(T0_US, 3) and result.device_id == "monitor-9"
    assert result.temporal_attention == pytest.approx(temporal.mean(axis=0), abs=1e-6)
    assert sum(temporal_summary(temporal)) == pytest.approx(1.0, abs=1e-5)
    latest = sink.read_patient("bed-9").latest
    assert latest["log_risk"] == pytest.approx(0.75) and latest["model_version"] == "7"
    assert (latest["n_beats_detected"], latest["n_beats_used"], latest["heart_rate_bpm"]) == (14, 12, 72.0)
    assert latest["quality_reasons"] == ["baseline_wander"]
    np.testing.assert_allclose(list(latest["lead_attention"].values()), outputs["lead_attention"][0], atol=1e-6)
    unscored = WindowResult.from_scoring(window, SimpleNamespace(quality=SimpleNamespace(
        score=0.1, fit_to_score=False, reasons=("flat_line",)), n_beats_detected=0, n_beats_used=0,
        heart_rate_bpm=None))
    assert unscored.log_risk is None and not unscored.scored
    with pytest.raises(ValueError, match="no log_risk"):
        sink.write_window_result(WindowResult("bed-9", "x-1", 0, 1, True, 0.9))


def test_values_written_before_beats_were_counted_apart_still_read(client, prefix, sink):
    """A latest hash and a quality member from before the split hold one ``n_beats`` (the beats
    used): they read as ``n_beats_used``, the detected count unknown."""
    new = _result("bed-1", 0, 1.1)
    sink.write_window_result(new)
    old_hash = {f: v for f, v in enc.latest_fields(new).items() if not f.startswith("n_beats")} | {"n_beats": "11"}
    client.delete(f"{prefix}:latest:bed-1")
    client.hset(f"{prefix}:latest:bed-1", mapping=old_hash)
    old_member = '{"log_risk":null,"n_beats":9,"quality_score":0.2,"reasons":["noisy"],"window_id":"w-1"}'
    client.zadd(f"{prefix}:quality:bed-1", {old_member: T0_US / 1000})
    view = sink.read_patient("bed-1")
    assert (view.latest["n_beats_used"], view.latest["n_beats_detected"]) == (11, None)
    assert "n_beats" not in view.latest and view.latest["log_risk"] == 1.1
    (old,) = view.low_quality
    assert (old["n_beats_used"], old["n_beats_detected"], old["reasons"]) == (9, None, ["noisy"])


def test_a_client_decoding_responses_reads_the_same(redis_server, prefix, sink):
    sink.write_window_result(_result("bed-1", 0, 1.1))
    sink.write_window_result(_result("bed-1", 1, 1.2))
    with redis_server.client(decode_responses=True) as text_client:
        text_sink = RedisSink(text_client, prefix, policy=POLICY)
        assert text_sink.read_patient("bed-1") == sink.read_patient("bed-1")
        assert text_sink.write_window_result(_result("bed-1", 1, 1.2)).duplicate
        assert text_sink.flagged() == sink.flagged() == {"bed-1": T0_US + HOP_US}


def test_stale_and_discharged_patients_leave_the_ward_sets(client, prefix, sink):
    sink.write_window_result(_result("bed-1", 0, 1.5))
    sink.write_window_result(_result("bed-1", 1, 1.5))  # flagged
    sink.write_window_result(_result("bed-2", 100, 0.1))  # 500 s later
    now_us = T0_US + 100 * HOP_US + 10_000_000

    assert sink.drop_stale_patients(max_age_s=300, now_us=now_us) == ["bed-1"]
    assert sink.ranking() == [("bed-2", 0.1)] and sink.flagged() == {}
    assert not list(client.scan_iter(match=f"{prefix}:*:bed-1*"))
    sink.drop_patient("bed-2")
    assert sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*")) == [f"{prefix}:alerts"]


def test_saved_buffers_come_back_byte_for_byte_with_their_ttl(client, prefix):
    from hfrisk.stream.worker.buffer_store import BufferStore

    store = BufferStore(client, prefix, ttl_s=600)
    rng = np.random.default_rng(3)
    states = {f"bed-{i}": rng.bytes(190_000 + i) for i in range(5)}  # each above redis-py's 6,000-byte cut-off
    store.save_many(states)
    assert store.load_many([*states, "bed-unknown"]) == states
    assert all(0 < client.ttl(store.key(pid)) <= 600 for pid in states)
