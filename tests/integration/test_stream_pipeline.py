"""The whole stream on real servers: Kafka -> ``hfrisk worker`` (a subprocess) -> Triton -> Redis.

One scripted run for the module (the tests then look at what it left behind):

1. Offline reference: the PTB-XL 500 Hz records of tests/data, fed as 3 beds of 1-s chunks, cut
   into windows by a fresh WindowAssembler and scored with ``prepare`` + ONNX Runtime on the very
   ONNX file Triton serves. Alert thresholds are chosen between observed scores so that a bed's
   flag is raised and later cleared.
2. Worker A starts; ``replay(..., realtime=False)`` sends the first 40 s of every bed. Once Redis
   holds every window those chunks complete and the worker has checkpointed the buffers, A is
   killed with SIGKILL.
3. Worker B starts in the same consumer group; the remaining chunks are produced, followed by a
   fourth patient whose chunks are interleaved with one bad message of every kind.
4. Everything is checked against the reference: each window id exactly once, scores within 1e-4,
   alert events, dead letters with reasons and original bytes, the worker's metrics.

Windows that straddle the kill need the samples that A buffered and B restored from Redis, so they
test the persistence of per-patient state; the dead-letter patient tests that good chunks between
bad ones are still scored.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field

import onnxruntime as ort
import pytest
from kafka import KafkaProducer

from hfrisk.core.config import KafkaSettings
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.messages.dead_letter import DeadLetter, value_limit
from hfrisk.stream.sinks.encoding import parse_latest
from hfrisk.stream.sinks.keys import RedisKeys
from hfrisk.stream.sinks.redis_sink import RedisSink
from hfrisk.stream.ingest.replay import feed, replay
from hfrisk.stream.messages import encode_chunk
from hfrisk.stream.ingest.topics import ensure_topics
from hfrisk.stream.windowing import PatientBuffer, Window
from tests.stream.test_worker_unit import MAX_BYTES, bad_messages

from hfrisk.testing import (
    RECORDS,
    consume_all,
    offline_scores,
    redis_view,
    script_alerts,
    served_card,
    start_worker,
    wait_until,
    window_sequences,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEDS = 3
N_RECORDS = 18  # 6 per bed: 60 s of signal, 11 windows each
CUT_S = 40  # worker A sees the first 40 s of every bed
PARTITIONS = 3


@dataclass
class Run:
    """What the scripted run produced, for the tests to check."""

    card: object
    prefix: str
    kafka: KafkaSettings
    expected: dict[tuple[str, str], float | None]  # (patient, window id) -> offline log-risk (None: unfit)
    windows: dict[tuple[str, str], Window]
    policy: AlertPolicy
    expected_events: list[tuple[str, str, str]]  # (kind, patient, window id)
    bad: dict[str, tuple[bytes, bytes, str]]
    dl_patient: str
    cut_windows: list[tuple[str, str]]
    redis_members: dict[tuple[str, str], list[tuple[str, float | None]]] = field(default_factory=dict)
    window_keys: set[tuple[str, str]] = field(default_factory=set)
    redis_events: list = field(default_factory=list)
    alert_records: list = field(default_factory=list)
    score_records: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    metrics_text: str = ""
    model_versions: set = field(default_factory=set)
    latest: dict = field(default_factory=dict)  # patient -> the latest hash, parsed
    log_a: str = ""
    log_b: str = ""


# -- the run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(kafka_broker, redis_server, triton_server, exported_model_dir, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("stream_pipeline")
    card = served_card(triton_server.model_repository)
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    start_us = time.time_ns() // 1000 - 3_600_000_000  # an hour ago: acquisition times in the past

    chunks = [c for _, c in feed([RECORDS], beds=BEDS, max_records=N_RECORDS, start_us=start_us)]
    dl_chunks = [c for _, c in feed([RECORDS], beds=1, max_records=3, start_us=start_us, salt="dead-letters")]
    dl_patient = dl_chunks[0].patient_id
    windows, expected = offline_scores(chunks, card, session)
    dl_windows, dl_expected = offline_scores(dl_chunks, card, session)
    windows |= dl_windows
    expected |= dl_expected
    policy, expected_events = script_alerts(window_sequences(windows, expected))

    uid = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers, partitions=PARTITIONS,
        ecg_topic=f"test.pipeline.{uid}.chunks", scores_topic=f"test.pipeline.{uid}.scores",
        alerts_topic=f"test.pipeline.{uid}.alerts", dead_letter_topic=f"test.pipeline.{uid}.dead",
    )
    ensure_topics(kafka)  # 4 MiB topics; the worker itself accepts MAX_BYTES (so "oversized" can happen)
    prefix = f"test-pipeline-{uid}"
    env = worker_env(kafka=kafka, redis_url=redis_server.url, prefix=prefix, triton_grpc_url=triton_server.grpc_url,
                     model_repository=triton_server.model_repository, state_dir=tmp / "state", policy=policy,
                     max_message_bytes=MAX_BYTES)
    client = redis_server.client()
    app_id = f"test-pipeline-{uid}"
    bad_template = encode_chunk(dl_chunks[0], max_bytes=MAX_BYTES)
    long_chunk = next(c for _, c in feed([RECORDS], beds=1, chunk_s=8.0, max_records=1, start_us=start_us,
                                         salt="dead-letters"))
    bad = bad_messages(bad_template, dl_patient, long_chunk)
    # Windows with chunks on both sides of the kill: only buildable from the buffers A saved.
    cut_windows = [k for k, w in windows.items() if k[0] != dl_patient and min(w.sequences) < CUT_S <= max(w.sequences)]
    result = Run(card=card, prefix=prefix, kafka=kafka, expected=expected, windows=windows, policy=policy,
                 expected_events=expected_events, bad=bad, dl_patient=dl_patient, cut_windows=cut_windows)

    bed_ids = sorted({c.patient_id for c in chunks})
    first_half = {k for k, w in windows.items() if k[0] != dl_patient and max(w.sequences) < CUT_S}
    worker_a, _ = start_worker("worker-a", env, tmp, app_id)
    worker_b = None
    try:
        stats = replay([RECORDS], kafka.bootstrap_servers, kafka.ecg_topic, beds=BEDS, realtime=False,
                       duration_s=CUT_S, max_records=N_RECORDS, start_us=start_us, progress=False,
                       max_message_bytes=MAX_BYTES)
        assert stats.chunks_per_bed == {pid: CUT_S for pid in bed_ids}

        def first_half_done() -> bool:
            _, keys = redis_view(client, prefix, bed_ids)
            if not first_half <= keys:
                return False
            states = client.mget([RedisKeys(prefix).buffer(pid) for pid in bed_ids])
            return all(s is not None and PatientBuffer.from_bytes(s).next_sequence == CUT_S for s in states)

        wait_until("worker A to write the first half and checkpoint", first_half_done, workers=[worker_a])
        worker_a.stop(kill=True)  # SIGKILL: no goodbye to the group, no final commit
        result.log_a = worker_a.log_path.read_text(errors="replace")

        worker_b, metrics_port = start_worker("worker-b", env, tmp, app_id)
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=4 << 20)
        try:
            for chunk in chunks:
                if chunk.sequence >= CUT_S:
                    producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk, max_bytes=MAX_BYTES))
            # The fourth patient: a bad message after every second good chunk, same key (same partition).
            bad_iter = iter(bad.values())
            for i, chunk in enumerate(dl_chunks):
                producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk, max_bytes=MAX_BYTES))
                if i % 2 == 1 and (item := next(bad_iter, None)):
                    producer.send(kafka.ecg_topic, key=item[0], value=item[1])
            producer.flush()
        finally:
            producer.close()

        everyone = bed_ids + [dl_patient]
        wait_until("worker B to write every window", lambda: set(expected) <= redis_view(client, prefix, everyone)[1],
                   workers=[worker_b])
        result.dead_letters = consume_all(kafka.bootstrap_servers, kafka.dead_letter_topic, len(bad))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            result.metrics_text = response.read().decode()
        result.redis_members, result.window_keys = redis_view(client, prefix, everyone)
        result.model_versions = {client.hget(RedisKeys(prefix).latest(pid), "model_version").decode()
                                 for pid in everyone}
        result.latest = {pid: parse_latest(client.hgetall(RedisKeys(prefix).latest(pid))) for pid in everyone}
        result.redis_events = RedisSink(client, prefix).alert_events(1000)
        result.alert_records = consume_all(kafka.bootstrap_servers, kafka.alerts_topic, len(expected_events))
        result.score_records = consume_all(kafka.bootstrap_servers, kafka.scores_topic, len(expected))
    finally:
        for w in (worker_a, worker_b):
            if w is not None:
                w.stop()
        if worker_b is not None:
            result.log_b = worker_b.log_path.read_text(errors="replace")
    return result


# -- checks ------------------------------------------------------------------------------------


def test_every_expected_window_is_in_redis_exactly_once(run):
    assert len(run.expected) >= 3 * 11
    assert set(run.redis_members) == set(run.expected)
    doubles = {k: v for k, v in run.redis_members.items() if len(v) != 1}
    assert not doubles, f"windows stored more than once: {doubles}"
    assert run.window_keys == set(run.expected)
    for key, risk in run.expected.items():
        (where, _), = run.redis_members[key]
        assert where == ("trend" if risk is not None else "quality"), key


def test_scores_match_offline_prepare_and_onnx_runtime(run):
    scored = {k: r for k, r in run.expected.items() if r is not None}
    assert len(scored) >= 0.8 * len(run.expected)
    for key, risk in scored.items():
        (_, stored), = run.redis_members[key]
        assert stored == pytest.approx(risk, abs=1e-4), key
    assert run.model_versions == {"1"}  # the version Triton serves, recorded with every result


def test_the_latest_hash_holds_percentile_and_absolute_risk_of_the_served_card(run):
    scale = run.card.risk_scale
    for pid, latest in run.latest.items():
        assert latest["risk_percentile"] == pytest.approx(float(scale.percentile(latest["log_risk"]))), pid
        assert latest["absolute_risk"] == pytest.approx(float(scale.absolute_risk_at_horizon(latest["log_risk"]))), pid
        assert latest["absolute_risk_horizon_days"] == scale.absolute_risk.horizon_days


def test_windows_across_the_sigkill_were_rebuilt_from_the_saved_buffers(run):
    # Each bed has a window holding seconds on both sides of the cut; worker B could only build
    # it from the samples worker A had buffered and saved.
    assert len({pid for pid, _ in run.cut_windows}) == BEDS
    for key in run.cut_windows:
        assert len(run.redis_members[key]) == 1
    assert run.log_b.count("window buffer restored") >= BEDS, run.log_b[-3000:]


def test_alerts_raise_and_clear_as_scripted(run):
    got = [(e.kind.value, e.patient_id, e.window_id) for e in run.redis_events]
    assert sorted(got) == sorted(run.expected_events)
    kinds = Counter(kind for kind, _, _ in got)
    assert kinds["raised"] >= 1 and kinds["cleared"] >= 1
    # The alerts topic has each event at least once (at-least-once delivery), and nothing else.
    on_topic = {}
    for record in run.alert_records:
        event = json.loads(record.value)
        assert record.key == event["patient_id"].encode()
        on_topic[event["event_id"]] = (event["kind"], event["patient_id"], event["window_id"])
    assert sorted(on_topic.values()) == sorted(run.expected_events)


def test_every_window_has_a_score_record(run):
    seen = {}
    for record in run.score_records:
        value = json.loads(record.value)
        seen[(value["patient_id"], value["window_id"])] = value
    assert set(seen) == set(run.expected)
    scale = run.card.risk_scale  # the card served beside the model in Triton's repository
    assert scale is not None
    for key, risk in run.expected.items():
        assert seen[key]["scored"] == (risk is not None)
        if risk is not None:
            assert seen[key]["log_risk"] == pytest.approx(risk, abs=1e-4)
            # The worker gives every score its percentile and absolute risk under that card.
            assert seen[key]["risk_percentile"] == pytest.approx(float(scale.percentile(seen[key]["log_risk"])))
            assert seen[key]["absolute_risk"] == pytest.approx(
                float(scale.absolute_risk_at_horizon(seen[key]["log_risk"])))
            assert seen[key]["absolute_risk_horizon_days"] == scale.absolute_risk.horizon_days
        else:
            assert seen[key]["risk_percentile"] is None and seen[key]["absolute_risk"] is None


def test_bad_messages_are_dead_lettered_with_reason_and_original_bytes(run):
    letters = [DeadLetter.from_record(r.key, r.value, r.headers) for r in run.dead_letters]
    assert len(letters) == len(run.bad), [(d.reason, d.detail) for d in letters]
    remaining = list(letters)
    for name, (key, value, reason) in run.bad.items():
        kept = value[: value_limit(MAX_BYTES)] if name == "oversized" else value
        found = [d for d in remaining if d.key == key and d.value == kept and d.original_size == len(value)]
        assert len(found) == 1, name
        letter = found[0]
        remaining.remove(letter)
        assert letter.reason == reason, (name, letter.detail)
        assert letter.truncated == (name == "oversized"), name
        assert letter.topic == run.kafka.ecg_topic and letter.offset >= 0 and letter.kind == "chunk"
    # The good chunks between them were all scored (checked window by window above, too).
    assert any(pid == run.dl_patient for pid, _ in run.window_keys)


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def test_worker_metrics_count_what_happened(run):
    text = run.metrics_text
    for reason, n in Counter(reason for _, _, reason in run.bad.values()).items():
        assert _sample(text, f'hfrisk_dead_letters_total{{reason="{reason}"}}') == n
    assert _sample(text, 'hfrisk_chunks_total{outcome="dead_letter"}') == len(run.bad)
    assert _sample(text, 'hfrisk_chunks_total{outcome="accepted"}') >= 60 - CUT_S
    assert _sample(text, "hfrisk_triton_latency_seconds_count") >= 1
    assert _sample(text, "hfrisk_end_to_end_latency_seconds_count") >= 1
    assert _sample(text, "hfrisk_batch_size_count") >= 1
    assert _sample(text, "hfrisk_patients_active") == BEDS + 1
    assert 'hfrisk_consumer_lag{partition="' in text
