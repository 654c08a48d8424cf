"""The stream worker: ECG chunks in, window results in Redis, scores and alerts out.

:class:`StreamWorker` holds the logic and knows nothing of Faust (unit tests drive it with plain
records); :func:`install_agents` wires it into a Faust app: one agent on the chunk topic and a checkpoint task.
For each micro-batch of chunk messages (``stream.noack_take(batch_size, within=batch_timeout_s)``,
across all patients of the worker's partitions):

1. **decode** every message (:func:`~hfrisk.stream.messages.chunk.decode_chunk`, limit
   ``kafka.max_message_bytes``); undecodable or invalid ones, and ones whose key is not their
   patient id, become dead letters (:mod:`hfrisk.stream.messages.dead_letter`);
2. **window**: each chunk goes to its patient's buffer (:class:`~hfrisk.stream.windowing.buffers.WindowAssembler`).
   A patient this process has not seen yet is first restored from its saved state in Redis;
3. **score** the completed windows of all patients together (:func:`~hfrisk.stream.scoring.batch.score_windows`:
   ``prepare`` in a process pool, one Triton call for the fit ones, waiting out Triton outages);
4. **write** one Redis transaction per window (:class:`~hfrisk.stream.sinks.redis_sink.RedisSink`: scored
   and low-quality results, skipped ranges with their reason), retried while Redis is unreachable;
5. **publish** alert events (``kafka.alerts_topic``), one score record per window
   (``kafka.scores_topic``) and the dead letters, and wait until Kafka has them all;
6. **checkpoint** (at most every ``checkpoint_interval_s``): save every changed patient buffer to
   Redis, then acknowledge the messages processed since the last checkpoint.

**Batches in flight.** Steps 1-2 run in the agent (:meth:`StreamWorker.submit`); steps 3-5 run in
a task per batch, so that the agent fetches and windows the next batch while the last one is
preprocessed, scored and written: up to ``stream.batches_in_flight`` batches (default 2) at once.
Otherwise the event loop waits in turn on the preprocessing processes, Triton and Redis and the
cores sit half idle (docs/bench/stream-tuning.md). Batches are scored concurrently but write
and publish strictly in the order they were taken, so each patient's windows reach the alert
policy in time order. A checkpoint first waits until no batch is in flight.

**At-least-once, and why it holds.** Faust commits a partition's offset only up to the oldest
message not yet acknowledged. ``take()`` would acknowledge a batch as soon as the loop body asks
for the next one (and also when the generator is closed by a shutdown or an exception, i.e. also
for a batch that was never written). The agent therefore uses ``noack_take()`` and acknowledges
explicitly, and only in step 6: after the windows those messages completed are in Redis (step 4),
their alerts and dead letters are on Kafka (step 5), and the buffers holding their samples are
saved (step 6). Buffers are saved only with no batch in flight: a saved buffer holding chunks of
a batch not written yet would make a restart take them for duplicates and skip their windows.
Messages are acknowledged in the order they were consumed and all at once, so no acknowledged
message ever sits above an unacknowledged one (Faust would commit past a one-message hole). A worker that dies anywhere before step 6 (SIGKILL between the Triton call and the Redis
write included) leaves the messages uncommitted; its successor restores each patient's buffer as
of the last checkpoint and is sent everything after the last commit again. Chunks already in the
restored buffer are ignored as duplicates, the rest rebuild exactly the same windows with the
same ids (the grid is deterministic), and the sink's per-window idempotency record turns any
window written twice into a no-op that hands back its alert events to re-send. So every window
lands in Redis exactly once, and every alert and score reaches Kafka at least once (consumers
deduplicate on ``event_id`` / ``(patient_id, window_id)``). Triton or Redis being down only stops
the batch where it is: nothing is acknowledged, nothing valid is dead-lettered. An unexpected
exception (a bug) stops the worker rather than skipping messages: from the failed batch on,
nothing is saved or acknowledged (:class:`BatchFailed`), and the batches after it are not written.

**Rebalances and stops.** Faust (``stream_wait_empty``) waits for the messages in flight to be
acknowledged before it gives partitions away or stops; the checkpoint task then checkpoints at
once. A batch stuck on an unreachable Triton or Redis is abandoned after ``stop_grace_s`` when
stopping: nothing more is saved or acknowledged and the process exits with status 75 (its
messages go to the next worker, as after a SIGKILL).

**Saved buffers.** ``{prefix}:buffer:{patient_id}`` (a Redis string, TTL
``redis.patient_ttl_s``) holds :meth:`PatientBuffer.to_bytes` (JSON, samples as base64 float32:
160-330 kB for a 12-lead 500 Hz patient, 5-10 s of signal). It is written at a checkpoint, never
per message: saving every patient after every batch would move megabytes per batch. Between
checkpoints the saved state lags, which is safe because the messages after it are not
acknowledged either. After a rebalance this worker forgets the buffers of the partitions it lost;
the new owner restores them from Redis.

**Score records** (``kafka.scores_topic``, key: patient id, value: JSON): ``patient_id``,
``window_id``, ``window_start_us``, ``window_end_us``, ``scored``, ``fit_to_score``, ``log_risk``
(null unless scored), ``hazard_ratio``, ``quality_score``, ``quality_reasons``, ``n_beats``,
``heart_rate_bpm``, ``lead_attention`` (lead -> weight), ``model_version``, ``scored_at_us``,
``device_id``, ``chunk_timestamp_ms`` (Kafka timestamp of the chunk that completed the window),
``redelivered`` (the window had been written before: a re-send).

Example (what ``hfrisk worker`` does, see :mod:`hfrisk.stream.worker.command`)::

    app = create_app(settings, web_port=6066)
    worker = StreamWorker.from_settings(settings, card=card, preprocessor=Preprocessor(card),
                                        scorer=TritonScorer(RiskClient.from_settings(card=card)),
                                        publisher=FaustPublisher(app, settings.kafka))
    install_agents(app, worker, settings)
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import redis

from hfrisk.core.config import Settings, get_settings
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.core.pseudonym import pseudonymiser_from_settings
from hfrisk.core.security import redis_client as make_redis_client
from hfrisk.stream.alerts.policy import AlertEvent, AlertPolicy
from hfrisk.stream.worker.app import chunk_topic, raw_topic
from hfrisk.stream.messages.dead_letter import INTERNAL_ERROR, KEY_MISMATCH, DeadLetter
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.sinks.redis_sink import RedisSink, WindowResult, WriteOutcome
from hfrisk.stream.messages.chunk import EcgChunk, decode_chunk, message_key
from hfrisk.stream.scoring.batch import Backoff, Preprocessor, Scorer, score_windows
from hfrisk.stream.windowing.buffers import SkippedWindows, Window, WindowAssembler

__all__ = [
    "BatchAborted",
    "BatchFailed",
    "ChunkRecord",
    "OutboundMessage",
    "Publisher",
    "BufferStore",
    "WorkerOptions",
    "BatchReport",
    "StreamWorker",
    "FaustPublisher",
    "install_agents",
    "score_record",
]

log = get_logger(__name__)

# Exit status of a worker that stopped while a batch was stuck (Triton or Redis unreachable).
EXIT_ABANDONED = 75  # EX_TEMPFAIL: try again later

# Failures that go away by themselves (a server restarting, a network blip): wait and retry.
_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    asyncio.TimeoutError,
)
try:  # Kafka producer errors (leader moving, broker restarting) are transient too.
    from aiokafka.errors import KafkaError as _KafkaError

    _TRANSIENT += (_KafkaError,)
except ImportError:  # pragma: no cover - aiokafka comes with faust
    pass


class BatchAborted(RuntimeError):
    """The batch was abandoned because the worker is stopping; none of its messages was acknowledged."""


class BatchFailed(RuntimeError):
    """An earlier batch failed (a bug): its windows were never written, so the worker must stop
    without saving or acknowledging anything more; a restart redoes it from the last checkpoint."""


@dataclass(frozen=True)
class ChunkRecord:
    """One message of the chunk topic as the worker sees it; ``ack`` acknowledges it to Kafka."""

    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    ack: Callable[[], Awaitable[Any]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OutboundMessage:
    """A record for one of the output topics: ``role`` is ``scores``, ``alerts`` or ``dead_letter``."""

    role: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


class Publisher(Protocol):
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send all ``messages``; return once Kafka has acknowledged every one."""


class BufferStore:
    """Saved window buffers in Redis: ``{prefix}:buffer:{patient_id}`` -> ``PatientBuffer.to_bytes()``."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int):
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def key(self, patient_id: str) -> str:
        return f"{self.prefix}:buffer:{patient_id}"

    def load_many(self, patient_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(patient_ids)
        if not ids:
            return {}
        values = self.client.mget([self.key(pid) for pid in ids])
        return {pid: value for pid, value in zip(ids, values) if value is not None}

    def save_many(self, states: dict[str, bytes]) -> None:
        # One round trip; MULTI so that a crash never leaves half of a checkpoint.
        with self.client.pipeline(transaction=True) as pipe:
            for pid, state in states.items():
                pipe.set(self.key(pid), state, ex=self.ttl_s)
            pipe.execute()


@dataclass
class WorkerOptions:
    """``checkpoint_interval_s``: how often buffers are saved and messages acknowledged.
    ``backoff``: waits between retries while Redis or Kafka is unreachable (its cap is how long
    a batch may keep waiting after the server is back: docs/reliability.md).
    ``batches_in_flight``: micro-batches being scored and written at once (1: one after the other)."""

    checkpoint_interval_s: float = 2.0
    backoff: Backoff = field(default_factory=lambda: Backoff(first_s=0.2, max_s=2.0))
    max_message_bytes: int = 4 * 1024 * 1024
    batches_in_flight: int = 2


@dataclass
class BatchReport:
    """What one batch did (for logs and tests)."""

    chunks: Counter = field(default_factory=Counter)
    windows: Counter = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    results: list[WindowResult] = field(default_factory=list)
    outcomes: list[WriteOutcome] = field(default_factory=list)
    skipped: list[SkippedWindows] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    # Seconds per step (decode, window, prepare, infer, write, publish): where a batch spent its time.
    timings: dict[str, float] = field(default_factory=dict)


def _cancelling() -> bool:
    """Whether the running task itself has been asked to stop (not just something it awaited)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python >= 3.11
    return bool(cancelling()) if cancelling is not None else False


def score_record(result: WindowResult, *, redelivered: bool, chunk_timestamp_ms: int | None) -> bytes:
    """The JSON value of a window's record on the scores topic (see the module docstring)."""
    attention = (
        {lead: round(float(w), 6) for lead, w in zip(result.lead_names, result.lead_attention)}
        if result.lead_attention is not None
        else None
    )
    record = {
        "patient_id": result.patient_id,
        "window_id": result.window_id,
        "window_start_us": result.window_start_us,
        "window_end_us": result.window_end_us,
        "scored": result.scored,
        "fit_to_score": result.fit_to_score,
        "log_risk": result.log_risk,
        "hazard_ratio": result.hazard_ratio,
        "quality_score": result.quality_score,
        "quality_reasons": list(result.quality_reasons),
        "n_beats": result.n_beats,
        "heart_rate_bpm": result.heart_rate_bpm,
        "lead_attention": attention,
        "model_version": result.model_version,
        "scored_at_us": result.scored_at_us,
        "device_id": result.device_id,
        "chunk_timestamp_ms": chunk_timestamp_ms,
        "redelivered": redelivered,
    }
    return json.dumps(record, separators=(",", ":")).encode()


class StreamWorker:
    """The per-batch logic of the worker (see the module docstring). Not thread-safe: one event loop."""

    def __init__(
        self,
        *,
        card: ModelCard,
        assembler: WindowAssembler,
        preprocessor: Preprocessor,
        scorer: Scorer,
        sink: RedisSink,
        store: BufferStore,
        publisher: Publisher,
        metrics: StreamMetrics | None = None,
        options: WorkerOptions | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        pseudonymise: Callable[[str], str] | None = None,
    ):
        self.pseudonymise = pseudonymise
        self.card = card
        self.assembler = assembler
        self.preprocessor = preprocessor
        self.scorer = scorer
        self.sink = sink
        self.store = store
        self.publisher = publisher
        self.metrics = metrics or StreamMetrics()
        self.options = options or WorkerOptions()
        self._sleep = sleep
        # Held while a batch goes into the buffers and while they are saved (with no batch in
        # flight: a saved buffer must never hold chunks whose windows are not written yet).
        self._lock = asyncio.Lock()
        self._pending: list[ChunkRecord] = []  # processed, not yet acknowledged
        self._dirty: set[str] = set()  # patients whose buffers changed since the last checkpoint
        self._partition_of: dict[str, tuple[str, int]] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._last_checkpoint = time.monotonic()
        self._assembling: asyncio.Future | None = None
        self._assembling_since = 0.0
        # Batches being scored, written and published, oldest first -> when they were started.
        self._in_flight: dict[asyncio.Future, float] = {}
        self._failure: BaseException | None = None
        # Set by abort(): buffers may hold chunks whose windows were never written, so nothing
        # may be saved or acknowledged any more; a restart redoes it all from the last checkpoint.
        self._aborted = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        card: ModelCard,
        preprocessor: Preprocessor,
        scorer: Scorer,
        publisher: Publisher,
        metrics: StreamMetrics | None = None,
        options: WorkerOptions | None = None,
        redis_client: redis.Redis | None = None,
    ) -> StreamWorker:
        settings = settings or get_settings()
        client = redis_client or make_redis_client(settings.redis)
        sink = RedisSink(client, settings.redis.key_prefix, policy=AlertPolicy.from_settings(settings.stream))
        options = options or WorkerOptions(
            max_message_bytes=settings.kafka.max_message_bytes, batches_in_flight=settings.stream.batches_in_flight
        )
        return cls(
            card=card,
            assembler=WindowAssembler.from_settings(card, settings.stream),
            preprocessor=preprocessor,
            scorer=scorer,
            sink=sink,
            store=BufferStore(client, settings.redis.key_prefix, settings.redis.patient_ttl_s),
            publisher=publisher,
            metrics=metrics,
            options=options,
            pseudonymise=pseudonymiser_from_settings(settings.pseudonym),
        )

    # -- one batch ------------------------------------------------------------------------------

    async def submit(self, records: Sequence[ChunkRecord]) -> asyncio.Future:
        """Start one micro-batch and return as soon as it is under way.

        The batch's chunks go into the buffers now (decode, window); scoring, the Redis write and
        publishing run in a task of their own, the returned future (its :class:`BatchReport`), so
        that the next batch is fetched and windowed while this one is preprocessed and written.
        At most ``options.batches_in_flight`` run at once, and their writes happen in the order
        they were submitted (a patient's windows reach the alert policy in order). Messages are
        acknowledged at the next checkpoint after their batch is written.

        Raises :class:`BatchAborted` if the worker is stopping, :class:`BatchFailed` if an earlier
        batch failed (its windows are lost to this process: it must stop and be restarted).
        """
        while len(self._in_flight) >= max(1, self.options.batches_in_flight):
            self._check_usable()
            await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
        async with self._lock:
            self._check_usable()
            if time.monotonic() - self._last_checkpoint >= self.options.checkpoint_interval_s:
                await self._settle()
                await self._checkpoint()
                self._check_usable()
            report = BatchReport()
            # In a task of its own so that abort() can cancel the batch without cancelling the caller.
            self._assembling = asyncio.ensure_future(self._assemble(records, report))
            self._assembling_since = time.monotonic()
            try:
                windows = await self._assembling
            except asyncio.CancelledError:
                self._assembling.cancel()
                self._abandon()  # the buffers may hold part of the batch
                if self._aborted and not _cancelling():
                    raise BatchAborted("the worker is stopping; the batch will be redelivered") from None
                raise
            finally:
                self._assembling = None
            previous = next(reversed(self._in_flight), None)
            batch = asyncio.ensure_future(self._finish(records, windows, report, previous))
            self._in_flight[batch] = time.monotonic()
            batch.add_done_callback(self._finished)
            return batch

    async def handle(self, records: Sequence[ChunkRecord]) -> BatchReport:
        """:meth:`submit` one micro-batch and wait until it is written and published."""
        batch = await self.submit(records)
        try:
            return await batch
        except asyncio.CancelledError:
            if self._aborted and not _cancelling():
                raise BatchAborted("the worker is stopping; the batch will be redelivered") from None
            raise

    def _check_usable(self) -> None:
        self._raise_if_failed()
        if self._aborted:
            raise BatchAborted("the worker is stopping")

    def _raise_if_failed(self) -> None:
        if self._failure is not None and not isinstance(self._failure, BatchAborted):
            raise BatchFailed("an earlier batch failed; stopping so that its messages are redelivered") \
                from self._failure

    def _finished(self, batch: asyncio.Future) -> None:
        self._in_flight.pop(batch, None)
        if batch.cancelled():
            self._abandon()
        elif batch.exception() is not None:
            # Its chunks are in the buffers but its windows were never written: saving the buffers
            # now would lose those windows for good, so nothing more is saved or acknowledged.
            self._failure = self._failure or batch.exception()
            self._abandon()

    async def _settle(self) -> None:
        """Wait until every batch in flight has finished (written, failed or cancelled)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    async def _assemble(self, records: Sequence[ChunkRecord], report: BatchReport) -> list[tuple[Window, ChunkRecord]]:
        """Decode ``records`` and feed them to the buffers: the windows they complete."""
        started = time.perf_counter()
        decoded: list[tuple[ChunkRecord, EcgChunk]] = []
        for record in records:
            chunk = self._decode(record, report)
            if chunk is not None:
                decoded.append((record, chunk))
        decoded_at = time.perf_counter()
        report.timings["decode"] = round(decoded_at - started, 6)

        await self._restore({chunk.patient_id for _, chunk in decoded} - set(self.assembler.buffers))
        windows: list[tuple[Window, ChunkRecord]] = []
        for record, chunk in decoded:
            for outcome in self._feed(record, chunk, report):
                if isinstance(outcome, Window):
                    windows.append((outcome, record))
                else:
                    report.skipped.append(outcome)
        self.metrics.patients_active.set(len(self.assembler.buffers))
        report.timings["window"] = round(time.perf_counter() - decoded_at, 6)
        return windows

    async def _finish(
        self,
        records: Sequence[ChunkRecord],
        windows: list[tuple[Window, ChunkRecord]],
        report: BatchReport,
        previous: asyncio.Future | None,
    ) -> BatchReport:
        """Score, write and publish one batch's windows (after ``previous`` has written its own)."""
        scores = await score_windows(
            [window.ecg for window, _ in windows], self.preprocessor, self.scorer,
            on_batch=self.metrics.batch_size.observe, timings=report.timings,
        )
        clock = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            report.timings[step] = round(now - clock, 6)
            clock = now

        results: list[tuple[WindowResult, Window, ChunkRecord]] = []
        scored_at_us = time.time_ns() // 1000
        for (window, record), score in zip(windows, scores):
            if score.failure is not None:
                letter = DeadLetter.for_window(
                    patient_id=window.patient_id, window_id=window.window_id, sequences=window.sequences,
                    reason=score.failure.reason, detail=score.failure.detail, topic=record.topic,
                    partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp_ms,
                )
                report.dead_letters.append(letter)
                report.windows["dead_letter"] += 1
                continue
            result = WindowResult.from_scoring(
                window, score.prepared, score.outputs, model_version=self.scorer.model_version,
                lead_names=self.card.input.leads, scored_at_us=scored_at_us,
            )
            results.append((result, window, record))
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None:
                raise BatchAborted("an earlier batch did not finish; this one will be redelivered")
        lap("wait")

        written = await self._write(results, report.skipped)
        lap("write")
        messages = self._outbound(results, written, report)
        await self._retrying("kafka", lambda: self.publisher.publish(messages))
        lap("publish")
        self._count(results, written, report)
        self._pending.extend(records)
        for record in records:
            tp = (record.topic, record.partition)
            self._next_offset[tp] = max(self._next_offset.get(tp, 0), record.offset + 1)
        log.debug("batch done", chunks=len(records), windows=len(windows), **report.timings)
        return report

    def _refuse(self, record: ChunkRecord, report: BatchReport, reason: str, detail: str, patient_id: str = "") -> None:
        """Dead-letter the message ``record`` (its original bytes) with ``reason``."""
        report.dead_letters.append(DeadLetter.for_message(
            record.value, key=record.key, reason=reason, detail=detail, topic=record.topic,
            partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp_ms,
            patient_id=patient_id, max_message_bytes=self.options.max_message_bytes,
        ))
        report.chunks["dead_letter"] += 1

    def _decode(self, record: ChunkRecord, report: BatchReport) -> EcgChunk | None:
        try:
            chunk = decode_chunk(record.value, max_bytes=self.options.max_message_bytes, window=self.card.window)
        except ECGInputError as err:
            self._refuse(record, report, err.reason.value, err.detail)
            return None
        except Exception as exc:  # the decoder promises ECGInputError; anything else is a bug, not a crash
            self._refuse(record, report, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return None
        if record.key is None or bytes(record.key) != message_key(chunk.patient_id):
            self._refuse(record, report, KEY_MISMATCH,
                         f"message key {record.key!r} is not the chunk's patient id {chunk.patient_id!r}",
                         chunk.patient_id)
            return None
        if self.pseudonymise is not None:  # from here on only the pseudonym exists (docs/security.md)
            chunk = replace(chunk, patient_id=self.pseudonymise(chunk.patient_id))
        return chunk

    def _feed(self, record: ChunkRecord, chunk: EcgChunk, report: BatchReport) -> list:
        buffer = self.assembler.buffer(chunk.patient_id)
        duplicates, late = buffer.stats.duplicates, buffer.stats.late
        try:
            outcomes = buffer.feed(chunk)
        except Exception as exc:  # a decoded chunk the buffer cannot take: keep it, do not stop
            self._refuse(record, report, INTERNAL_ERROR, f"windowing: {type(exc).__name__}: {exc}", chunk.patient_id)
            return []
        if buffer.stats.duplicates > duplicates:
            report.chunks["duplicate"] += 1
        elif buffer.stats.late > late:
            report.chunks["late"] += 1
        else:
            report.chunks["accepted"] += 1
        self._dirty.add(chunk.patient_id)
        self._partition_of[chunk.patient_id] = (record.topic, record.partition)
        return outcomes

    async def _restore(self, patient_ids: set[str]) -> None:
        """Load the saved buffers of patients new to this process (a restart, a rebalance)."""
        if not patient_ids:
            return
        states = await self._retrying("redis", lambda: asyncio.to_thread(self.store.load_many, patient_ids))
        for pid, state in states.items():
            try:
                buffer = self.assembler.restore(pid, state)
            except (ValueError, KeyError, TypeError) as exc:
                # A state from another grid (hop changed) or corrupt: start afresh. The new grid
                # anchors later, so its window ids cannot collide with the old ones.
                log.warning("saved window buffer unusable; starting a new one", patient_id=pid, error=str(exc))
                continue
            log.info("window buffer restored", patient_id=pid, next_sequence=buffer.next_sequence,
                     next_window=buffer.next_index)

    async def _write(
        self, results: list[tuple[WindowResult, Window, ChunkRecord]], skipped: list[SkippedWindows]
    ) -> list[tuple[WriteOutcome, int]]:
        """One sink transaction per window, in order, off the event loop; resumes where it stopped
        if Redis goes away mid-batch (so no window is mistaken for a redelivery of itself)."""
        written: list[tuple[WriteOutcome, int]] = []
        gaps_done: list[bool] = []

        def write_rest() -> None:
            for result, _, _ in results[len(written):]:
                outcome = self.sink.write_window_result(result)
                written.append((outcome, time.time_ns() // 1000))
            for item in skipped[len(gaps_done):]:
                gaps_done.append(self.sink.write_skipped(item))

        await self._retrying("redis", lambda: asyncio.to_thread(write_rest))
        self.metrics.windows.labels(outcome="skipped").inc(
            sum(len(item) for item, new in zip(skipped, gaps_done) if new)
        )
        return written

    def _outbound(
        self,
        results: list[tuple[WindowResult, Window, ChunkRecord]],
        written: list[tuple[WriteOutcome, int]],
        report: BatchReport,
    ) -> list[OutboundMessage]:
        messages: list[OutboundMessage] = []
        for (result, _, record), (outcome, _) in zip(results, written):
            key = message_key(result.patient_id)
            # A redelivered window hands back the events of its first write: re-sent, since the
            # first attempt may have died before they reached Kafka.
            for event in outcome.events:
                messages.append(OutboundMessage("alerts", key, event.to_json()))
                report.events.append(event)
            value = score_record(result, redelivered=outcome.duplicate, chunk_timestamp_ms=record.timestamp_ms)
            messages.append(OutboundMessage("scores", key, value))
        for letter in report.dead_letters:
            messages.append(OutboundMessage("dead_letter", letter.key, letter.value, letter.headers()))
        return messages

    def _count(
        self,
        results: list[tuple[WindowResult, Window, ChunkRecord]],
        written: list[tuple[WriteOutcome, int]],
        report: BatchReport,
    ) -> None:
        m = self.metrics
        for (result, window, _), (outcome, written_us) in zip(results, written):
            report.results.append(result)
            report.outcomes.append(outcome)
            if outcome.duplicate:
                continue  # counted when it was first written
            kind = "scored" if result.scored else "low_quality"
            report.windows[kind] += 1
            m.windows.labels(outcome=kind).inc()
            for event in outcome.events:
                m.alerts.labels(kind=event.kind.value).inc()
            last_sample_us = window.end_us - round(1e6 / window.ecg.fs_hz)
            m.end_to_end_latency.observe(max(0.0, (written_us - last_sample_us) / 1e6))
        report.windows["skipped"] += sum(len(s) for s in report.skipped)
        m.windows.labels(outcome="dead_letter").inc(report.windows["dead_letter"])
        for outcome, n in report.chunks.items():
            m.chunks.labels(outcome=outcome).inc(n)
        for letter in report.dead_letters:
            m.dead_letters.labels(reason=letter.reason).inc()
        if report.dead_letters:
            log.warning("dead-lettered", count=len(report.dead_letters),
                        reasons=dict(Counter(letter.reason for letter in report.dead_letters)))

    async def _retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """``await call()`` until it succeeds; transient failures wait with backoff, forever."""
        attempt = 0
        while True:
            try:
                return await call()
            except _TRANSIENT as exc:
                delay = self.options.backoff.delay(attempt)
                log.warning(f"{what} unavailable; holding the batch and retrying", attempt=attempt + 1,
                            delay_s=round(delay, 2), error=f"{type(exc).__name__}: {exc}")
                attempt += 1
                await self._sleep(delay)

    # -- checkpoints, acknowledgements, partitions -------------------------------------------------

    async def tick(self, *, force: bool = False) -> None:
        """Called by a timer: checkpoint if one is due (``force``: now) and no batch is running
        (the next batch checkpoints first if one is due). Raises :class:`BatchFailed` once a
        batch has failed, so that an idle worker stops too."""
        self._raise_if_failed()
        if self._aborted or not (self._pending or self._dirty) or self._lock.locked() or self._in_flight:
            return
        if force or time.monotonic() - self._last_checkpoint >= self.options.checkpoint_interval_s:
            async with self._lock:
                await self._checkpoint()

    async def drain(self, grace_s: float) -> bool:
        """Called repeatedly while the worker stops: acknowledge what is done at once, and abandon
        a batch that has been stuck (Triton or Redis down) for more than ``grace_s``.
        Returns whether a batch has been abandoned."""
        started = list(self._in_flight.values())
        if self._assembling is not None:
            started.append(self._assembling_since)
        if started or self._lock.locked():
            if started and time.monotonic() - min(started) > grace_s:
                log.warning("stopping: abandoning a batch stuck for too long; it will be redelivered",
                            seconds=round(time.monotonic() - min(started), 1))
                self.abort()
        else:
            await self.tick(force=True)
        return self._aborted

    @property
    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        """Abandon the running batches and stop saving or acknowledging anything (shutdown)."""
        self._abandon()
        if self._assembling is not None:
            self._assembling.cancel()
        for batch in list(self._in_flight):
            batch.cancel()

    def _abandon(self) -> None:
        # Drop every reference to unacknowledged messages: Faust waits for them on shutdown and
        # stops waiting once they are garbage (never acknowledged, so they are redelivered).
        self._aborted = True
        self._pending.clear()
        self._dirty.clear()

    async def checkpoint(self) -> int:
        """Wait for the batches in flight, save changed buffers, then acknowledge everything
        processed; returns messages acknowledged."""
        async with self._lock:
            await self._settle()
            return await self._checkpoint()

    async def _checkpoint(self) -> int:
        if self._aborted:
            return 0
        buffers = {pid: self.assembler.buffers[pid] for pid in self._dirty if pid in self.assembler.buffers}
        if buffers:
            # Serialising ~0.3 MB per patient is CPU work: off the loop (the lock keeps buffers still).
            await self._retrying(
                "redis",
                lambda: asyncio.to_thread(lambda: self.store.save_many({p: b.to_bytes() for p, b in buffers.items()})),
            )
        pending, self._pending = self._pending, []
        self._dirty.clear()
        for record in pending:
            if record.ack is not None:
                await record.ack()
        self._last_checkpoint = time.monotonic()
        return len(pending)

    @property
    def pending(self) -> int:
        """Messages processed but not acknowledged yet."""
        return len(self._pending)

    async def revoke(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions went to another worker: forget their patients' buffers (the new owner restores
        them from Redis) and their unacknowledged messages (the new owner is sent them again)."""
        lost = set(partitions)
        async with self._lock:
            await self._settle()  # their windows are written; their messages are the new owner's
            dropped = [pid for pid, tp in self._partition_of.items() if tp in lost]
            for pid in dropped:
                self.assembler.drop(pid)
                self._dirty.discard(pid)
                del self._partition_of[pid]
            self._pending = [r for r in self._pending if (r.topic, r.partition) not in lost]
            for topic, partition in lost:
                self._next_offset.pop((topic, partition), None)
                self.metrics.consumer_lag.remove(str(partition))  # a no-op for partitions never seen
            self.metrics.patients_active.set(len(self.assembler.buffers))
        if dropped:
            log.info("partitions revoked; buffers dropped", partitions=sorted(lost), patients=len(dropped))

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The offset after the last message processed from the partition, if any."""
        return self._next_offset.get((topic, partition))

    def set_lag(self, partition: int, lag: int) -> None:
        self.metrics.consumer_lag.labels(partition=str(partition)).set(max(0, lag))


class FaustPublisher:
    """:class:`Publisher` over a Faust app's producer: raw bytes to the scores, alerts and
    dead-letter topics, awaiting Kafka's acknowledgement of every record."""

    def __init__(self, app, kafka) -> None:
        self._topics = {
            "scores": raw_topic(app, kafka.scores_topic, kafka.partitions),
            "alerts": raw_topic(app, kafka.alerts_topic, kafka.partitions),
            "dead_letter": raw_topic(app, kafka.dead_letter_topic, kafka.partitions),
        }

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        deliveries = []
        for m in messages:
            # force=True: send now, not when the current event is acknowledged.
            deliveries.append(
                await self._topics[m.role].send(key=m.key, value=m.value, headers=m.headers or None, force=True)
            )
        if deliveries:
            await asyncio.gather(*deliveries)


def install_agents(
    app, worker: StreamWorker, settings: Settings | None = None, *, tick_s: float = 0.25, stop_grace_s: float = 10.0
):
    """Add the chunk agent, the checkpoint/lag task and the rebalance hook to ``app``; returns the agent.

    ``stop_grace_s``: on shutdown, how long a batch stuck on an unreachable Triton or Redis may hold
    the stop before it is abandoned (unacknowledged, so it is redelivered).
    """
    settings = settings or get_settings()
    kafka, stream_settings = settings.kafka, settings.stream
    topic = chunk_topic(app, kafka)

    @app.agent(topic, name="hfrisk-score-chunks")
    async def score_chunks(stream):
        batches = stream.noack_take(stream_settings.batch_size, within=stream_settings.batch_timeout_s)
        try:
            async for events in batches:
                records = [_record(stream, event) for event in events]
                del events
                try:
                    await worker.submit(records)
                except BatchAborted:
                    return  # stopping: the batch was not acknowledged and will be redelivered
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Skipping the batch would lose its windows (the buffers have moved on) and
                    # stall the commit behind its unacknowledged messages: stop, and let a
                    # restart redo it from the last commit.
                    log.exception("batch failed; stopping the worker so its messages are redelivered")
                    await app.crash(exc)
                    return
        finally:
            # Closing the generator drops its references to the unacknowledged events, which
            # Faust's shutdown waits for (it stops waiting once they are garbage).
            await batches.aclose()

    @app.task
    async def checkpoint_and_lag():
        # A plain task rather than app.timer: timers end as soon as the app starts to stop, but
        # Faust then waits (stream_wait_empty) until every message in flight is acknowledged, and
        # only a checkpoint acknowledges; this task lives until the very end and does it.
        abandoned_at = None
        while True:
            await asyncio.sleep(tick_s)
            try:
                if app.should_stop:
                    if await worker.drain(stop_grace_s):
                        abandoned_at = abandoned_at or time.monotonic()
                        if time.monotonic() - abandoned_at > 2.0:
                            # Faust's stream keeps a reference to the last message it fetched, so
                            # it would wait for that unacknowledged message forever. Nothing is
                            # left to save: leave as a SIGKILL would, the messages are redelivered.
                            log.error("stopping: exiting without acknowledging the abandoned batch")
                            os._exit(EXIT_ABANDONED)
                    continue
                # A rebalance suspends the flow and waits for acknowledgements too: checkpoint now.
                await worker.tick(force=not app.flow_control.is_active())
                _update_lag(app, worker, kafka.ecg_topic)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("checkpoint failed; stopping the worker")
                await app.crash(exc)
                return

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender, revoked, **kwargs):
        await worker.revoke({(tp.topic, tp.partition) for tp in revoked})

    @app.on_before_shutdown.connect
    async def close_model_client(sender, **kwargs):
        # Sent once the streams are empty (every message acknowledged or abandoned), so no batch
        # calls Triton any more. The grpc.aio channel must be closed while the event loop still
        # runs: one left open when Faust closes the loop could hang the process at exit
        # (seen under fault injection: a worker stuck for 30 s after "Closing event loop").
        try:
            await worker.scorer.close()
        except Exception as exc:  # closing is best effort; never turn a clean stop into a crash
            log.warning("could not close the model client", error=f"{type(exc).__name__}: {exc}")

    return score_chunks


def _update_lag(app, worker: StreamWorker, topic: str) -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # nothing fetched from this partition yet
            continue
        if highwater is None:
            continue
        position = worker.next_offset(tp.topic, tp.partition)
        if position is None:
            position = getattr(consumer, "_committed_offset", {}).get(tp) or 0
        worker.set_lag(tp.partition, highwater - position)


def _record(stream, event) -> ChunkRecord:
    message = event.message
    timestamp = getattr(message, "timestamp", None)

    async def ack() -> None:
        await stream.ack(event)

    return ChunkRecord(
        value=message.value,
        key=message.key,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=None if timestamp is None or not math.isfinite(timestamp) else round(timestamp * 1000),
        ack=ack,
    )
