"""Driving real ``hfrisk worker`` processes against real servers, and checking what they left in Redis.

Shared by the stream integration tests (``test_stream_pipeline``, ``test_faults``) and by
``bench/bench_faults.py``, which records the fault figures in docs/reliability.md:

* the **offline reference** (:func:`offline_scores`, :class:`Reference`): the same chunks cut
  into windows by a fresh ``WindowAssembler`` and scored with ``prepare`` + ONNX Runtime on the
  ONNX file Triton serves; :func:`script_alerts` picks thresholds so that alerts rise and clear;
* **workers** (:func:`start_worker`, :func:`worker_env`) run as ``python -m hfrisk.stream.worker.command``
  subprocesses, configured only through ``HFRISK_*`` variables, exactly as deployed;
* **Redis, window by window** (:func:`redis_view`): which windows are in the trend / quality sets
  and how often, and which idempotency records exist;
* :class:`StreamScenario`: one fault scenario on its own topics, consumer group and key prefix,
  with the recovery clock (:meth:`StreamScenario.watch_recovery`) and the verdict
  (:class:`FaultOutcome`: expected / written / duplicates / wrong scores / alert mismatch).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hfrisk.core.config import KafkaSettings, StreamSettings
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, load_card
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.stack.process import ManagedProcess, free_port, port_open
from hfrisk.stream.alerts.policy import AlertPolicy, AlertState
from hfrisk.stream.sinks.redis_sink import RedisSink
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import EcgChunk, encode_chunk
from hfrisk.stream.ingest.topics import ensure_topics
from hfrisk.stream.windowing import PatientBuffer, Window, WindowAssembler
from hfrisk.stream.worker.buffer_store import BufferStore

RECORDS = Path(__file__).resolve().parents[2] / "tests" / "data" / "ecg" / "ptbxl" / "records500"
HOP_S = 5.0
WAIT_S = 90.0
CHUNK_BYTES = 4 << 20


# -- reference ---------------------------------------------------------------------------------


def offline_scores(chunks, card, session, hop_s: float = HOP_S) -> tuple[dict, dict]:
    """(patient, window id) -> Window, and -> offline log-risk (None: not fit to score)."""
    assembler = WindowAssembler.from_settings(card, StreamSettings(hop_s=hop_s, reorder_s=5.0))
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


def window_sequences(windows: dict, expected: dict) -> dict[str, list]:
    """Patient -> [(window, offline log-risk)] in time order (what the alert policy sees)."""
    sequences = defaultdict(list)
    for key in sorted(windows, key=lambda k: (k[0], windows[k].start_us)):
        sequences[key[0]].append((windows[key], expected[key]))
    return dict(sequences)


@dataclass
class Reference:
    """The chunks of a few beds and what the stream must make of them, computed offline."""

    card: object
    chunks: list[EcgChunk]
    windows: dict[tuple[str, str], Window]
    expected: dict[tuple[str, str], float | None]
    policy: AlertPolicy
    expected_events: list[tuple[str, str, str]]

    @property
    def patients(self) -> list[str]:
        return sorted({c.patient_id for c in self.chunks})

    @classmethod
    def build(cls, card, session, *, beds: int, records: int, start_us: int | None = None,
              salt: str | None = None) -> Reference:
        start_us = time.time_ns() // 1000 - 3_600_000_000 if start_us is None else start_us
        chunks = [c for _, c in feed([RECORDS], beds=beds, max_records=records, start_us=start_us, salt=salt)]
        windows, expected = offline_scores(chunks, card, session)
        policy, events = script_alerts(window_sequences(windows, expected))
        return cls(card, chunks, windows, expected, policy, events)

    def chunks_between(self, first_s: float, end_s: float | None = None) -> list[EcgChunk]:
        """The chunks whose sequence (second of the bed's feed) is in ``[first_s, end_s)``."""
        return [c for c in self.chunks if c.sequence >= first_s and (end_s is None or c.sequence < end_s)]

    def windows_before(self, end_s: float) -> set[tuple[str, str]]:
        """The windows completed by the chunks before second ``end_s`` of every bed."""
        return {k for k, w in self.windows.items() if max(w.sequences) < end_s}


# -- processes, Kafka, Redis ---------------------------------------------------------------------


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


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0, **consumer_options) -> list:
    """Every record of every partition of ``topic`` from the beginning (no consumer group): until
    ``expected`` arrived or ``timeout_s``, then one more poll, so that duplicates beyond
    ``expected`` show."""
    options = {"max_partition_fetch_bytes": 4 << 20, **consumer_options}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
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
    argv = [sys.executable, "-m", "hfrisk.stream.worker.command", "--web-port", str(free_port()),
            "--metrics-port", str(metrics_port), "--app-id", app_id, "--prep-workers", "1",
            "--checkpoint-interval-s", "0.5", "--session-timeout-s", "6", "--no-create-topics"]
    proc = ManagedProcess(name, argv, log_path=tmp / f"{name}.log", env=env,
                          ready=lambda: port_open("127.0.0.1", metrics_port), ready_timeout_s=120, stop_timeout_s=30)
    return proc.start(), metrics_port


def topic_env(kafka: KafkaSettings) -> dict[str, str]:
    """``HFRISK_KAFKA__*`` naming ``kafka``'s broker, partition count and four stream topics."""
    return {
        "HFRISK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HFRISK_KAFKA__PARTITIONS": str(kafka.partitions),
        "HFRISK_KAFKA__ECG_TOPIC": kafka.ecg_topic,
        "HFRISK_KAFKA__SCORES_TOPIC": kafka.scores_topic,
        "HFRISK_KAFKA__ALERTS_TOPIC": kafka.alerts_topic,
        "HFRISK_KAFKA__DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
    }


def services_env(*, kafka: KafkaSettings, redis_url: str, prefix: str, triton_grpc_url: str, model_repository,
                 state_dir: Path) -> dict[str, str]:
    """``HFRISK_*`` pointing a worker at its Kafka topics, Redis (under ``prefix``), Triton and
    model repository: what a test or benchmark worker must be told, the rest being its choice."""
    return topic_env(kafka) | {
        "HFRISK_REDIS__URL": redis_url,
        "HFRISK_REDIS__KEY_PREFIX": prefix,
        "HFRISK_TRITON__GRPC_URL": triton_grpc_url,
        "HFRISK_PATHS__MODEL_REPOSITORY": str(model_repository),
        "HFRISK_PATHS__STATE_DIR": str(state_dir),
    }


def served_card(model_repository) -> ModelCard:
    """The card served beside the model in ``model_repository`` (FileNotFoundError if it has none)."""
    return load_card(Path(model_repository) / "hfrisk" / CARD_FILENAME)


def worker_env(*, kafka: KafkaSettings, redis_url: str, prefix: str, triton_grpc_url: str, model_repository,
               state_dir: Path, policy: AlertPolicy, max_message_bytes: int | None = None) -> dict[str, str]:
    """The ``HFRISK_*`` environment of a test worker (everything else: the settings' defaults)."""
    services = services_env(kafka=kafka, redis_url=redis_url, prefix=prefix, triton_grpc_url=triton_grpc_url,
                            model_repository=model_repository, state_dir=state_dir)
    return os.environ | services | {
        "HFRISK_KAFKA__MAX_MESSAGE_BYTES": str(max_message_bytes or kafka.max_message_bytes),
        "HFRISK_STREAM__HOP_S": str(HOP_S),
        "HFRISK_STREAM__REORDER_S": "5.0",
        "HFRISK_STREAM__BATCH_SIZE": "16",
        "HFRISK_STREAM__BATCH_TIMEOUT_S": "0.1",
        "HFRISK_STREAM__RISK_THRESHOLD": repr(policy.threshold),
        "HFRISK_STREAM__CLEAR_THRESHOLD": repr(policy.clear_threshold),
        "HFRISK_STREAM__MIN_WINDOWS_TO_FLAG": str(policy.min_windows),
        "HFRISK_LOG__LEVEL": "INFO",
    }


def stream_topics(bootstrap: str, name: str, partitions: int) -> KafkaSettings:
    """Fresh chunk/scores/alerts/dead-letter topics named after ``name``, created."""
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, partitions=partitions, ecg_topic=f"test.{name}.chunks",
        scores_topic=f"test.{name}.scores", alerts_topic=f"test.{name}.alerts", dead_letter_topic=f"test.{name}.dead",
    )
    ensure_topics(kafka)
    return kafka


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


# -- fault scenarios -----------------------------------------------------------------------------


@dataclass
class FaultOutcome:
    """What one fault scenario left in Redis, against the reference, and how fast it recovered.

    ``fault_s``: how long the fault lasted (server down, or worker gone until its replacement
    was up). ``recover_first_s`` / ``recover_drained_s``: from the end of the fault to the first
    window written after it / to every expected window being in Redis.
    """

    fault: str
    what: str
    fault_s: float
    expected: int
    written: int
    duplicates: dict
    missing: list
    unexpected: list
    wrong_scores: dict
    alert_events: list
    expected_events: list
    recover_first_s: float | None
    recover_drained_s: float
    during_fault: int | None = 0  # windows written while the fault lasted (None: not measured)
    left_at_fault: int | None = None  # expected windows not yet in Redis when the fault began
    notes: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)  # workers stopped with SIGTERM
    topic_events: list = field(default_factory=list)  # alert events on Kafka, one per event_id
    topic_windows: set = field(default_factory=set)  # windows with a score record on Kafka
    redelivered: int = 0  # score records re-sent for windows already written
    dead_letters: int = 0
    expected_keys: set = field(default_factory=set)

    @property
    def alerts_consistent(self) -> bool:
        return sorted(self.alert_events) == sorted(self.expected_events)

    @property
    def exactly_once(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.wrong_scores)

    def row(self) -> dict:
        return {
            "fault": self.fault, "what": self.what, "fault_s": round(self.fault_s, 1),
            "expected": self.expected, "written": self.written, "duplicates": len(self.duplicates),
            "missing": len(self.missing), "wrong_scores": len(self.wrong_scores),
            "alerts_consistent": self.alerts_consistent, "during_fault": self.during_fault,
            "recover_first_s": None if self.recover_first_s is None else round(self.recover_first_s, 1),
            "recover_drained_s": round(self.recover_drained_s, 1), "redelivered": self.redelivered,
            "dead_letters": self.dead_letters, "notes": self.notes,
        }


class StreamScenario:
    """One scenario's own topics, consumer group, Redis key prefix and workers.

    ``redis_client`` makes a client of the Redis the workers write to (a scenario that restarts
    Redis keeps the same URL). ``triton`` needs ``grpc_url`` and ``model_repository``.
    """

    def __init__(self, name: str, ref: Reference, *, bootstrap: str, redis_url: str,
                 redis_client: Callable[[], object], triton, tmp: Path, partitions: int = 3):
        uid = uuid.uuid4().hex[:8]
        self.name = name
        self.ref = ref
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.kafka = stream_topics(bootstrap, f"faults.{name}.{uid}", partitions)
        self.prefix = f"test-faults-{name}-{uid}"
        self.app_id = self.prefix
        self.redis_client = redis_client
        self.env = worker_env(kafka=self.kafka, redis_url=redis_url, prefix=self.prefix,
                              triton_grpc_url=triton.grpc_url, model_repository=triton.model_repository,
                              state_dir=self.tmp / "state", policy=ref.policy, max_message_bytes=CHUNK_BYTES)
        self.workers: dict[str, ManagedProcess] = {}

    # -- workers and input --

    def start_worker(self, label: str) -> ManagedProcess:
        proc, _ = start_worker(f"{self.name}-{label}", self.env, self.tmp, self.app_id)
        self.workers[label] = proc
        return proc

    def live_workers(self) -> list[ManagedProcess]:
        return [w for w in self.workers.values() if w.running()]

    def produce(self, chunks: Iterable[EcgChunk]) -> int:
        """Send ``chunks`` (keyed by patient, ``acks=all``, idempotent) and wait until Kafka has them."""
        producer = KafkaProducer(bootstrap_servers=self.kafka.bootstrap_servers, acks="all",
                                 enable_idempotence=True, max_request_size=CHUNK_BYTES)
        try:
            n = 0
            for chunk in chunks:
                producer.send(self.kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk, max_bytes=CHUNK_BYTES))
                n += 1
            producer.flush(timeout=60)
            return n
        finally:
            producer.close()

    # -- Redis --

    def written(self) -> set[tuple[str, str]] | None:
        """The windows with an idempotency record in Redis; None while Redis is unreachable."""
        try:
            client = self.redis_client()
            try:
                return redis_view(client, self.prefix, self.ref.patients)[1]
            finally:
                client.close()
        except Exception:  # redis.ConnectionError, or Redis still loading its AOF (BusyLoadingError)
            return None

    def saved_through(self, end_s: int) -> bool:
        """Whether the buffer every bed saved at its last checkpoint already holds second ``end_s - 1``."""
        try:
            client = self.redis_client()
            try:
                states = BufferStore(client, self.prefix, ttl_s=0).load_many(self.ref.patients)
            finally:
                client.close()
        except Exception:  # Redis unreachable: not saved, as far as anyone can tell
            return False
        return len(states) == len(self.ref.patients) and all(
            PatientBuffer.from_bytes(s).next_sequence >= end_s for s in states.values())

    def wait_written(self, keys: set, what: str, timeout_s: float = WAIT_S) -> None:
        def done() -> bool:
            got = self.written()
            return got is not None and keys <= got

        wait_until(what, done, timeout_s=timeout_s, workers=self.live_workers())

    def watch_recovery(self, since: float, timeout_s: float = WAIT_S,
                       baseline: set | None = None) -> tuple[float | None, float]:
        """Poll Redis from ``since`` (monotonic, the end of the fault): seconds until the first
        window new since then is written, and until every expected window is in Redis.

        ``baseline``: the windows in Redis while the fault still held. Without it the first poll is
        the baseline, and a worker that recovers before that poll (Triton is ready to the worker
        before ``restart()`` returns) would leave nothing "new" to time.
        """
        before = baseline
        first = None
        expected = set(self.ref.expected)
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            got = self.written()
            now = time.monotonic()
            if got is not None:
                if before is None:
                    before = got
                elif first is None and got - before:
                    first = now - since
                if expected <= got:
                    return first, now - since
            if not self.live_workers():
                break
            time.sleep(0.1)
        missing = expected - (self.written() or set())
        logs = "\n".join(w.tail_log(60) for w in self.workers.values())
        raise AssertionError(f"{self.name}: {len(missing)} windows missing after the fault ended (workers "
                             f"running: {len(self.live_workers())}): {sorted(missing)[:5]}\n{logs}")

    # -- verdict --

    def outcome(self, *, what: str, fault_s: float, recover_first_s: float | None, recover_drained_s: float,
                during_fault: int | None = 0, left_at_fault: int | None = None,
                notes: Iterable[str] = ()) -> FaultOutcome:
        client = self.redis_client()
        try:
            members, keys = redis_view(client, self.prefix, self.ref.patients)
            events = [(e.kind.value, e.patient_id, e.window_id) for e in RedisSink(client, self.prefix).alert_events(1000)]
        finally:
            client.close()
        expected = self.ref.expected
        wrong = {}
        for key, risk in expected.items():
            stored = members.get(key, [])
            if len(stored) != 1:
                continue
            where, value = stored[0]
            if (risk is None) != (where == "quality") or (risk is not None and abs(value - risk) > 1e-4):
                wrong[key] = (where, value, risk)
        return FaultOutcome(
            fault=self.name, what=what, fault_s=fault_s, expected=len(expected),
            written=len(set(members) & set(expected)),
            duplicates={k: v for k, v in members.items() if len(v) > 1},
            missing=sorted(set(expected) - set(members) | set(expected) - keys),
            unexpected=sorted(set(members) - set(expected) | keys - set(expected)),
            wrong_scores=wrong, alert_events=events, expected_events=list(self.ref.expected_events),
            recover_first_s=recover_first_s, recover_drained_s=recover_drained_s, during_fault=during_fault,
            left_at_fault=left_at_fault, notes=list(notes), expected_keys=set(expected),
        )

    def stop(self) -> None:
        """SIGTERM every worker still running (a clean leave); keep their logs."""
        for w in self.workers.values():
            w.stop()

    def logs(self) -> dict[str, str]:
        return {label: w.log_path.read_text(errors="replace") for label, w in self.workers.items()}


# -- the faults ----------------------------------------------------------------------------------
#
# Each runner streams ``ref``'s beds through its own scenario: the first CUT_S seconds of every bed
# before the fault (written and checked), the rest during or after it. Each returns the verdict
# with its timings and leaves no worker running. The servers are the caller's: a runner restarts
# only the one it is about.

CUT_S = 20


def _finish(sc: StreamScenario, out_args: dict, notes: list[str]) -> FaultOutcome:
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
        deadline = time.monotonic() + WAIT_S
        while not (sc.written() or set()) - before:  # the first window of the backlog: mid-stream
            assert time.monotonic() < deadline and a.running(), a.tail_log(60)
            time.sleep(0.02)
        t0 = time.monotonic()
        a.stop(kill=True)
        written_at_kill = sc.written()
        at_kill = len(written_at_kill)
        sc.start_worker("b")
        t1 = time.monotonic()
        notes.append(f"{at_kill}/{len(sc.ref.expected)} windows in Redis at the kill")
        first, drained = sc.watch_recovery(t1, baseline=written_at_kill)
        return _finish(sc, dict(what="worker SIGKILL mid-backlog, replacement started at once", fault_s=t1 - t0,
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
        wait_until("worker b to get partitions", lambda: "Worker ready" in b.log_path.read_text(errors="replace"),
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
        out = _finish(sc, dict(what="2nd worker joins at 15 s of signal, leaves (SIGTERM) at 28 s",
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
        return _finish(sc, dict(what=f"Triton stopped {down_s:.0f} s, restarted (same ports)", fault_s=t1 - t0,
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
        return _finish(sc, dict(what=f"Redis stopped ({how}) {down_s:.0f} s, restarted from its AOF",
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
        return _finish(sc, dict(what=f"Kafka broker restarted ({how}, same data)", fault_s=t1 - t0,
                                recover_first_s=first, recover_drained_s=drained, during_fault=during), notes)
    finally:
        sc.stop()
