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
import os
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hfrisk.config import KafkaSettings, StreamSettings
from hfrisk.model.card import CARD_FILENAME, default_card, load_card
from hfrisk.model.preprocessing import prepare
from hfrisk.services.process import ManagedProcess, free_port, port_open
from hfrisk.stream.alerts import AlertPolicy, AlertState
from hfrisk.stream.dead_letter import DeadLetter, value_limit
from hfrisk.stream.redis_sink import RedisSink
from hfrisk.stream.replay import feed, replay
from hfrisk.stream.schema import encode_chunk
from hfrisk.stream.topics import ensure_topics
from hfrisk.stream.windowing import PatientBuffer, Window, WindowAssembler
from tests.stream.test_worker_unit import MAX_BYTES, bad_messages

from . import conftest as _conftest

if not hasattr(_conftest, "triton_server"):  # until conftest imports it for every module
    from .triton_fixture import triton_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"
BEDS = 3
N_RECORDS = 18  # 6 per bed: 60 s of signal, 11 windows each
CUT_S = 40  # worker A sees the first 40 s of every bed
HOP_S = 5.0
PARTITIONS = 3
WAIT_S = 90.0


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
    log_a: str = ""
    log_b: str = ""


# -- reference ---------------------------------------------------------------------------------


def offline_scores(chunks, card, session) -> tuple[dict, dict]:
    assembler = WindowAssembler.from_settings(card, StreamSettings(hop_s=HOP_S, reorder_s=5.0))
    windows = {(o.patient_id, o.window_id): o for c in chunks for o in assembler.feed(c) if isinstance(o, Window)}
    scores: dict[tuple[str, str], float | None] = {}
    for key, window in windows.items():
        item = prepare(window.ecg, card)
        if item.quality.fit_to_score:
            (risk,) = session.run(["log_risk"], {card.input.name: item.x[None].astype(np.float32)})
            scores[key] = float(risk[0, 0])
        else:
            scores[key] = None
    return windows, scores


def simulate_alerts(sequences, policy: AlertPolicy) -> list[tuple[str, str, str]]:
    events = []
    for pid, seq in sequences.items():
        state = AlertState()
        for window, risk in seq:
            state, event = policy.observe(state, patient_id=pid, window_id=window.window_id,
                                          window_start_us=window.start_us, log_risk=risk,
                                          fit_to_score=risk is not None)
            if event:
                events.append((event.kind.value, pid, window.window_id))
    return events


def script_alerts(sequences) -> tuple[AlertPolicy, list]:
    """Thresholds between observed scores (>= 1e-3 from any) so that some bed raises then clears."""
    risks = sorted({r for seq in sequences.values() for _, r in seq if r is not None})
    cuts = [(a + b) / 2 for a, b in zip(risks, risks[1:]) if b - a >= 2e-3]
    for min_windows in (2, 1):
        for threshold in reversed(cuts):
            for clear in reversed([c for c in cuts if c <= threshold]):
                policy = AlertPolicy(threshold=threshold, clear_threshold=clear, min_windows=min_windows)
                events = simulate_alerts(sequences, policy)
                kinds = Counter(kind for kind, _, _ in events)
                if kinds["raised"] and kinds["cleared"] and len({pid for _, pid, _ in events}) < len(sequences):
                    return policy, events
    raise AssertionError(f"no thresholds make an alert rise and clear on scores {risks}")


# -- helpers -----------------------------------------------------------------------------------


def wait_until(what: str, check, timeout_s: float = WAIT_S, workers=()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        for w in workers:
            assert w.running(), f"worker exited while waiting for {what}:\n{w.tail_log(60)}"
        time.sleep(0.25)
    logs = "\n".join(w.tail_log(60) for w in workers)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records, deadline = [], time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def start_worker(name: str, env: dict, tmp: Path, app_id: str) -> tuple[ManagedProcess, int]:
    metrics_port = free_port()
    argv = [sys.executable, "-m", "hfrisk.stream.commands", "--web-port", str(free_port()),
            "--metrics-port", str(metrics_port), "--app-id", app_id, "--prep-workers", "1",
            "--checkpoint-interval-s", "0.5", "--session-timeout-s", "6", "--no-create-topics"]
    proc = ManagedProcess(name, argv, log_path=tmp / f"{name}.log", env=env,
                          ready=lambda: port_open("127.0.0.1", metrics_port), ready_timeout_s=120, stop_timeout_s=30)
    return proc.start(), metrics_port


def redis_view(client, prefix: str, patients) -> tuple[dict, set]:
    """Window id -> [(where, log-risk)] over the trend and quality sets, and the idempotency keys."""
    members: dict[tuple[str, str], list] = defaultdict(list)
    keys: set[tuple[str, str]] = set()
    for pid in patients:
        for raw in client.zrange(f"{prefix}:trend:{pid}", 0, -1):
            wid, _, risk = raw.decode().rpartition(":")
            members[(pid, wid)].append(("trend", float(risk)))
        for raw in client.zrange(f"{prefix}:quality:{pid}", 0, -1):
            record = json.loads(raw)
            members[(pid, record["window_id"])].append(("quality", record["log_risk"]))
        for key in client.scan_iter(match=f"{prefix}:window:{pid}:*", count=1000):
            keys.add((pid, key.decode().rsplit(":", 1)[1]))
    return members, keys


# -- the run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(kafka_broker, redis_server, triton_server, exported_model_dir, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("stream_pipeline")
    card_path = Path(triton_server.model_repository) / "hfrisk" / CARD_FILENAME
    card = load_card(card_path) if card_path.is_file() else default_card()
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    start_us = time.time_ns() // 1000 - 3_600_000_000  # an hour ago: acquisition times in the past

    chunks = [c for _, c in feed([RECORDS], beds=BEDS, max_records=N_RECORDS, start_us=start_us)]
    dl_chunks = [c for _, c in feed([RECORDS], beds=1, max_records=3, start_us=start_us, salt="dead-letters")]
    dl_patient = dl_chunks[0].patient_id
    windows, expected = offline_scores(chunks, card, session)
    dl_windows, dl_expected = offline_scores(dl_chunks, card, session)
    windows |= dl_windows
    expected |= dl_expected
    sequences = defaultdict(list)
    for key in sorted(windows, key=lambda k: (k[0], windows[k].start_us)):
        sequences[key[0]].append((windows[key], expected[key]))
    policy, expected_events = script_alerts(dict(sequences))

    uid = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers, partitions=PARTITIONS,
        ecg_topic=f"test.pipeline.{uid}.chunks", scores_topic=f"test.pipeline.{uid}.scores",
        alerts_topic=f"test.pipeline.{uid}.alerts", dead_letter_topic=f"test.pipeline.{uid}.dead",
    )
    ensure_topics(kafka)  # 4 MiB topics; the worker itself accepts MAX_BYTES (so "oversized" can happen)
    prefix = f"test-pipeline-{uid}"
    env = os.environ | {
        "HFRISK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HFRISK_KAFKA__PARTITIONS": str(PARTITIONS),
        "HFRISK_KAFKA__ECG_TOPIC": kafka.ecg_topic,
        "HFRISK_KAFKA__SCORES_TOPIC": kafka.scores_topic,
        "HFRISK_KAFKA__ALERTS_TOPIC": kafka.alerts_topic,
        "HFRISK_KAFKA__DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
        "HFRISK_KAFKA__MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "HFRISK_REDIS__URL": redis_server.url,
        "HFRISK_REDIS__KEY_PREFIX": prefix,
        "HFRISK_TRITON__GRPC_URL": triton_server.grpc_url,
        "HFRISK_PATHS__MODEL_REPOSITORY": str(triton_server.model_repository),
        "HFRISK_PATHS__STATE_DIR": str(tmp / "state"),
        "HFRISK_STREAM__HOP_S": str(HOP_S),
        "HFRISK_STREAM__REORDER_S": "5.0",
        "HFRISK_STREAM__BATCH_SIZE": "16",
        "HFRISK_STREAM__BATCH_TIMEOUT_S": "0.1",
        "HFRISK_STREAM__RISK_THRESHOLD": repr(policy.threshold),
        "HFRISK_STREAM__CLEAR_THRESHOLD": repr(policy.clear_threshold),
        "HFRISK_STREAM__MIN_WINDOWS_TO_FLAG": str(policy.min_windows),
        "HFRISK_LOG__LEVEL": "INFO",
    }
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
            states = client.mget([f"{prefix}:buffer:{pid}" for pid in bed_ids])
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
        result.model_versions = {client.hget(f"{prefix}:latest:{pid}", "model_version").decode() for pid in everyone}
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
    for key, risk in run.expected.items():
        assert seen[key]["scored"] == (risk is not None)
        if risk is not None:
            assert seen[key]["log_risk"] == pytest.approx(risk, abs=1e-4)


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
