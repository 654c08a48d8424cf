"""One fault scenario against real servers, and its verdict.

:class:`StreamScenario` gives a scenario its own topics, consumer group, Redis key prefix and
workers; it feeds chunks, reads what reached Redis, times the recovery
(:meth:`StreamScenario.watch_recovery`) and judges the result against the :class:`Reference`
(:class:`FaultOutcome`: expected / written / duplicates / wrong scores / alert mismatch).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer

from hfrisk.stack.process import ManagedProcess
from hfrisk.stream.messages import EcgChunk, encode_chunk
from hfrisk.stream.sinks.redis_sink import RedisSink
from hfrisk.stream.windowing import PatientBuffer
from hfrisk.stream.worker.buffer_store import BufferStore
from hfrisk.testing.reference import Reference
from hfrisk.testing.services import CHUNK_BYTES, WAIT_S, redis_view, start_worker, stream_topics, wait_until, worker_env

__all__ = ["FaultOutcome", "StreamScenario"]


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
    load: dict = field(default_factory=dict)  # real-time figures of a run at load (hfrisk.testing.load)

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
        } | ({"load": self.load} if self.load else {})


class StreamScenario:
    """One scenario's own topics, consumer group, Redis key prefix and workers.

    ``redis_client`` makes a client of the Redis the workers write to (a scenario that restarts
    Redis keeps the same URL). ``triton`` needs ``grpc_url`` and ``model_repository``.
    """

    def __init__(self, name: str, ref: Reference, *, bootstrap: str, redis_url: str,
                 redis_client: Callable[[], object], triton, tmp: Path, partitions: int = 3,
                 worker_options: dict[str, str] | None = None, worker_env_extra: dict[str, str] | None = None):
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
                              state_dir=self.tmp / "state", policy=ref.policy,
                              max_message_bytes=CHUNK_BYTES) | (worker_env_extra or {})
        self.worker_options = worker_options
        self.workers: dict[str, ManagedProcess] = {}

    # -- workers and input --

    def start_worker(self, label: str) -> ManagedProcess:
        proc, _ = start_worker(f"{self.name}-{label}", self.env, self.tmp, self.app_id, self.worker_options)
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
            # Room for every expected event and as many again: extra events must show.
            count = max(1000, 2 * len(self.ref.expected_events))
            events = [(e.kind.value, e.patient_id, e.window_id)
                      for e in RedisSink(client, self.prefix).alert_events(count)]
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
