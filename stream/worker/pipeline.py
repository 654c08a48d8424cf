"""The stream worker's batch logic: ECG chunks in, window results in Redis, scores and alerts out.

:class:`StreamWorker` knows nothing of Faust (unit tests drive it with plain records;
:mod:`hfrisk.stream.worker.agents` wires it into a Faust app). A micro-batch is decoded,
windowed and scored, then written and published in a task of its own (its tail) while the next
batch is decoded and scored; a checkpoint, after the tail, saves the changed buffers and
acknowledges their messages (:mod:`hfrisk.stream.worker.checkpoints`). Why this order keeps every
window at-least-once, and what happens on outages, rebalances and stops: docs/stream-worker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from hfrisk.core.config import Settings, check_idle_patient_s, get_settings
from hfrisk.core.logs import get_logger
from hfrisk.core.pseudonym import pseudonymiser_from_settings
from hfrisk.core.security import redis_client as make_redis_client
from hfrisk.model.contract.card import ModelCard
from hfrisk.core.retries import Backoff, retrying
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.messages.chunk import EcgChunk
from hfrisk.stream.messages.dead_letter import INTERNAL_ERROR, DeadLetter
from hfrisk.stream.scoring.batch import AsyncScorer, Preprocessor, WindowScore, score_parts
from hfrisk.stream.sinks import RedisSink, WindowResult
from hfrisk.stream.windowing import PatientBuffer, SkippedWindows, Window, WindowAssembler
from hfrisk.stream.worker.buffer_store import BufferStore
from hfrisk.stream.worker.checkpoints import Checkpoints
from hfrisk.stream.worker.intake import decode_record, refuse
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.worker.monitoring import ModelMonitor
from hfrisk.stream.worker.outcomes import Scored, Written, count_batch, outbound_messages
from hfrisk.stream.worker.records import BatchAborted, BatchFailed, BatchReport, ChunkRecord, Publisher

__all__ = ["WorkerOptions", "StreamWorker", "TRANSIENT"]

log = get_logger(__name__)

# Patients whose pseudonyms a worker remembers: far more than a worker's partitions carry.
_PSEUDONYMS_KEPT = 65_536

# Failures that go away by themselves (a server restarting, a network blip): wait and retry.
TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    asyncio.TimeoutError,
)
try:  # Kafka producer errors (leader moving, broker restarting) are transient too.
    from aiokafka.errors import KafkaError as _KafkaError

    TRANSIENT += (_KafkaError,)
except ImportError:  # pragma: no cover - aiokafka comes with faust
    pass


@dataclass
class WorkerOptions:
    """``checkpoint_interval_s``: how often buffers are saved and messages acknowledged.
    ``backoff``: waits between retries while Redis or Kafka is unreachable (its cap is how long
    a batch may keep waiting after the server is back: docs/reliability.md)."""

    checkpoint_interval_s: float = 5.0
    backoff: Backoff = field(default_factory=lambda: Backoff(first_s=0.2, max_s=2.0))
    max_message_bytes: int = 4 * 1024 * 1024
    # ``stream.idle_patient_s``: a patient's buffer leaves memory this long after its last chunk,
    # once saved (0: never).
    idle_patient_s: float = 0.0

    def __post_init__(self) -> None:
        check_idle_patient_s(self.idle_patient_s, self.checkpoint_interval_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        return cls(
            checkpoint_interval_s=settings.stream.checkpoint_interval_s,
            idle_patient_s=settings.stream.idle_patient_s,
            backoff=Backoff(first_s=0.2, max_s=settings.stream.retry_max_s),
            max_message_bytes=settings.kafka.max_message_bytes,
        )


def _cancelling() -> bool:
    """Whether the running task itself has been asked to stop (not just something it awaited)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python >= 3.11
    return bool(cancelling()) if cancelling is not None else False


class StreamWorker:
    """The per-batch logic of the worker (see the module docstring). Not thread-safe: one event loop."""

    def __init__(
        self,
        *,
        card: ModelCard,
        assembler: WindowAssembler,
        preprocessor: Preprocessor,
        scorer: AsyncScorer,
        sink: RedisSink,
        store: BufferStore,
        publisher: Publisher,
        metrics: StreamMetrics | None = None,
        options: WorkerOptions | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        pseudonymise: Callable[[str], str] | None = None,
        monitor: ModelMonitor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        # An HMAC per chunk for the same few thousand ids: remembered (bounded; the same id and key
        # always give the same pseudonym, so a cached one is the one computed).
        self.pseudonymise = functools.lru_cache(maxsize=_PSEUDONYMS_KEPT)(pseudonymise) if pseudonymise else None
        self.card = card
        self.assembler = assembler
        self.preprocessor = preprocessor
        self.scorer = scorer
        self.sink = sink
        self.store = store
        self.publisher = publisher
        self.metrics = metrics or StreamMetrics()
        # Per-device refusals and score drift against the card's reference cohort (docs/monitoring.md).
        self.monitor = monitor or ModelMonitor(self.metrics, risk_scale=card.risk_scale)
        self.options = options or WorkerOptions()
        self._sleep = sleep
        self._clock = clock  # when patients last sent: what idle_patient_s is measured on
        # Held for a whole batch, a checkpoint or a revocation: a buffer is never saved while it
        # holds chunks whose windows are not written yet.
        self._lock = asyncio.Lock()
        self._checkpoints = Checkpoints()
        # The running batch, in a task of its own so that abort() can cancel it without
        # cancelling the caller, and when it started.
        self._batch: asyncio.Future | None = None
        self._batch_since = 0.0
        # The last batch's writes and publishing, running beside the next batch (submit()).
        self._tail: asyncio.Future | None = None
        self._tail_since = 0.0
        self._failure: BaseException | None = None
        # Set by abort() or a failed batch: buffers may hold chunks whose windows were never
        # written, so nothing may be saved or acknowledged any more; a restart redoes it all.
        self._aborted = False
        # The last checkpoint's save and acknowledgements, running beside the next batches.
        self._saving: asyncio.Future | None = None
        self._saving_since = 0.0
        self._saving_records = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        card: ModelCard,
        preprocessor: Preprocessor,
        scorer: AsyncScorer,
        publisher: Publisher,
        metrics: StreamMetrics | None = None,
        options: WorkerOptions | None = None,
        redis_client: redis.Redis | None = None,
    ) -> StreamWorker:
        settings = settings or get_settings()
        client = redis_client or make_redis_client(settings.redis)
        metrics = metrics or StreamMetrics()
        return cls(
            card=card,
            assembler=WindowAssembler.from_settings(card, settings.stream),
            preprocessor=preprocessor,
            scorer=scorer,
            sink=RedisSink(client, settings.redis.key_prefix,
                           policy=AlertPolicy.from_settings(settings.stream, risk_scale=card.risk_scale)),
            store=BufferStore(client, settings.redis.key_prefix, settings.redis.patient_ttl_s),
            publisher=publisher,
            metrics=metrics,
            options=options or WorkerOptions.from_settings(settings),
            pseudonymise=pseudonymiser_from_settings(settings.pseudonym),
            monitor=ModelMonitor(metrics, risk_scale=card.risk_scale, settings=settings.monitoring),
        )

    # -- one batch ------------------------------------------------------------------------------

    async def handle(self, records: Sequence[ChunkRecord]) -> BatchReport:
        """Decode, window, score, write and publish one micro-batch; its messages are
        acknowledged at the next checkpoint (first thing here if one is due). Returns once the
        batch is written and published.

        Raises :class:`BatchAborted` if the worker is stopping, :class:`BatchFailed` if this or
        an earlier batch failed (its windows are lost to this process: it must stop and be
        restarted, and its messages are redelivered).
        """
        async with self._lock:
            report = await self._submit(records)
            await self._settle()
            return report

    async def submit(self, records: Sequence[ChunkRecord]) -> BatchReport:
        """What the agent calls: decode, window and score one micro-batch, then return while its
        writes and publishing run (the batch's *tail*) beside the next batch's decoding and
        scoring. One batch at most is behind: its tail is awaited before this one's starts, so a
        patient's windows still reach Redis in time order, and a checkpoint waits for it (a
        buffer is never saved while its windows are unwritten). The returned report is complete
        once the tail is done. Raises as :meth:`handle`; a tail that fails makes the next call
        (or :meth:`tick`) raise :class:`BatchFailed`.
        """
        async with self._lock:
            return await self._submit(records)

    async def _submit(self, records: Sequence[ChunkRecord]) -> BatchReport:
        self._check_usable()
        if self._checkpoints.due(self.options.checkpoint_interval_s):
            await self._settle()
            await self._checkpoint()
        report = BatchReport()
        results = await self._guarded(self._front(records, report))
        await self._settle()
        self._check_usable()  # stopped while the last tail finished
        self._tail = asyncio.ensure_future(self._back(records, report, results))
        self._tail_since = time.monotonic()
        return report

    async def _guarded(self, step: Awaitable[Any]) -> Any:
        """Run a batch's step in a task of its own (so that abort() can cancel it without
        cancelling the caller); a failure or a cancellation abandons the buffers."""
        self._batch = asyncio.ensure_future(step)
        self._batch_since = time.monotonic()
        try:
            return await self._awaiting(self._batch)
        finally:
            self._batch = None

    async def _settle(self) -> None:
        """Wait for the last batch's tail (under the lock); raises as :meth:`handle` if it failed."""
        tail = self._tail
        if tail is None:
            return
        if self._aborted and self._failure is None:  # abandoned by abort(): nothing to wait for
            self._tail = None
            return
        try:
            await self._awaiting(tail)
        finally:
            if tail.done():
                self._tail = None

    async def _awaiting(self, part: asyncio.Future) -> Any:
        """``await part`` (a batch's front or tail): a cancellation or a failure abandons the
        buffers and raises :class:`BatchAborted` (a stop) or :class:`BatchFailed`."""
        try:
            return await part
        except asyncio.CancelledError:
            part.cancel()
            self._abandon()  # the buffers may hold part of the batch
            if self._aborted and not _cancelling():
                raise BatchAborted("the worker is stopping; the batch will be redelivered") from None
            raise
        except Exception as exc:
            # Its chunks are in the buffers but its windows were never written: saving the
            # buffers now would lose those windows for good, so nothing more is saved or acknowledged.
            self._failure = exc
            self._abandon()
            raise BatchFailed("a batch failed; stopping so that its messages are redelivered") from exc

    @property
    def _tail_running(self) -> bool:
        return self._tail is not None and not self._tail.done()

    def _check_usable(self) -> None:
        self._raise_if_failed()
        if self._aborted:
            raise BatchAborted("the worker is stopping")

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise BatchFailed("an earlier batch failed; stopping so that its messages are redelivered") \
                from self._failure

    async def _front(self, records: Sequence[ChunkRecord], report: BatchReport) -> list[Scored]:
        """Decode, window and score the batch: its windows' results (failed ones are dead letters)."""
        windows = await self._assemble(records, report)
        results: list[Scored] = []
        scored = score_parts([window.ecg for window, _ in windows], self.preprocessor, self.scorer,
                             on_batch=self.metrics.batch_size.observe, timings=report.timings)
        async with contextlib.aclosing(scored) as parts:
            async for offset, scores in parts:
                results += self._results(windows[offset : offset + len(scores)], scores, report)
        return results

    async def _back(self, records: Sequence[ChunkRecord], report: BatchReport, results: list[Scored]) -> BatchReport:
        """The batch's tail: write its windows and gaps (one transaction), publish, count, and
        mark its messages for the next checkpoint. A failure here is the worker's failure."""
        try:
            started = time.perf_counter()
            written = await self._write(results, report.skipped)
            written_at = time.perf_counter()
            report.timings["write"] = round(written_at - started, 6)
            messages = outbound_messages(results, written, report)
            await self._retrying("kafka", lambda: self.publisher.publish(messages))
            report.timings["publish"] = round(time.perf_counter() - written_at, 6)
            count_batch(self.metrics, results, written, report, self.monitor)
            self._checkpoints.processed(records)
        except asyncio.CancelledError:
            self._abandon()
            raise
        except Exception as exc:
            self._failure = exc
            self._abandon()
            raise
        log.debug("batch done", chunks=len(records), windows=len(results) + report.windows["dead_letter"],
                  **report.timings)
        return report

    def _results(self, windows: Sequence[tuple[Window, ChunkRecord]], scores: Sequence[WindowScore],
                 report: BatchReport) -> list[Scored]:
        """The results to write of scored windows; the ones that failed become dead letters."""
        results: list[Scored] = []
        scored_at_us = time.time_ns() // 1000
        for (window, record), score in zip(windows, scores):
            if score.failure is not None:
                report.dead_letters.append(DeadLetter.for_window(
                    patient_id=window.patient_id, window_id=window.window_id, sequences=window.sequences,
                    reason=score.failure.reason, detail=score.failure.detail, topic=record.topic,
                    partition=record.partition, offset=record.offset, timestamp_ms=record.timestamp_ms,
                ))
                report.windows["dead_letter"] += 1
                continue
            results.append((WindowResult.from_scoring(
                window, score.prepared, score.outputs, model_version=self.scorer.model_version,
                lead_names=self.card.input.leads, scored_at_us=scored_at_us, risk_scale=self.card.risk_scale,
            ), window, record))
        return results

    async def _assemble(self, records: Sequence[ChunkRecord], report: BatchReport) -> list[tuple[Window, ChunkRecord]]:
        """Decode ``records`` and feed them to the buffers: the windows they complete."""
        started = time.perf_counter()
        decoded: list[tuple[ChunkRecord, EcgChunk]] = []
        for record in records:
            chunk = decode_record(record, report, window=self.card.window,
                                  max_message_bytes=self.options.max_message_bytes, pseudonymise=self.pseudonymise)
            if chunk is not None:
                decoded.append((record, chunk))
        decoded_at = time.perf_counter()
        report.timings["decode"] = round(decoded_at - started, 6)

        await self._restore({chunk.patient_id for _, chunk in decoded} - set(self.assembler.buffers))
        self._checkpoints.now = self._clock()
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

    def _feed(self, record: ChunkRecord, chunk: EcgChunk, report: BatchReport) -> list:
        buffer = self.assembler.buffer(chunk.patient_id)
        duplicates, late = buffer.stats.duplicates, buffer.stats.late
        try:
            outcomes = buffer.feed(chunk)
        except Exception as exc:  # a decoded chunk the buffer cannot take: keep it, do not stop
            refuse(record, report, INTERNAL_ERROR, f"windowing: {type(exc).__name__}: {exc}",
                   max_message_bytes=self.options.max_message_bytes, patient_id=chunk.patient_id)
            return []
        if buffer.stats.duplicates > duplicates:
            report.chunks["duplicate"] += 1
        elif buffer.stats.late > late:
            report.chunks["late"] += 1
        else:
            report.chunks["accepted"] += 1
        self._checkpoints.touched(chunk.patient_id, record)
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

    async def _write(self, results: list[Scored], skipped: list[SkippedWindows]) -> list[Written]:
        """The batch's windows in one sink transaction (in order), then its gaps, off the event loop; resumes
        after the last committed window if Redis goes away mid-batch (so no window is mistaken for
        a redelivery of itself)."""
        written: list[Written] = []
        gaps_done: list[bool] = []
        if not results and not skipped:
            return written

        def write_rest() -> None:
            rest = [result for result, _, _ in results[len(written):]]
            for outcome in self.sink.write_window_results(rest):
                written.append((outcome, time.time_ns() // 1000))
            for item in skipped[len(gaps_done):]:
                gaps_done.append(self.sink.write_skipped(item))

        await self._retrying("redis", lambda: asyncio.to_thread(write_rest))
        self.metrics.windows.labels(outcome="skipped").inc(
            sum(len(item) for item, new in zip(skipped, gaps_done) if new)
        )
        return written

    async def _retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """``await call()`` until it succeeds; transient failures wait with backoff, forever."""

        def on_retry(exc: BaseException, attempt: int, delay_s: float) -> None:
            log.warning(f"{what} unavailable; holding the batch and retrying", attempt=attempt,
                        delay_s=round(delay_s, 2), error=f"{type(exc).__name__}: {exc}")

        async def attempt() -> Any:  # tenacity awaits only a coroutine function's result
            return await call()

        return await retrying(retry_on=TRANSIENT, backoff=self.options.backoff, on_retry=on_retry,
                              sleep=self._sleep)(attempt)

    # -- checkpoints, stops, partitions ---------------------------------------------------------

    async def tick(self, *, force: bool = False) -> None:
        """Called by a timer: checkpoint if one is due (``force``: now) and no batch is running
        (the next batch checkpoints first if one is due). Raises :class:`BatchFailed` once a
        batch has failed, so that an idle worker stops too."""
        self._raise_if_failed()
        # A tail still writing: the next call checkpoints (never block this timer on Redis).
        if self._aborted or not self._checkpoints.has_work or self._lock.locked() or self._tail_running:
            return
        if force or self._checkpoints.due(self.options.checkpoint_interval_s):
            async with self._lock:
                await self._settle()
                await self._checkpoint()

    async def drain(self, grace_s: float) -> bool:
        """Called repeatedly while the worker stops: acknowledge what is done at once, and abandon
        a batch or a checkpoint save that has been stuck (Triton or Redis down) for more than
        ``grace_s``. Returns whether anything has been abandoned."""
        if self._batch is not None:
            stuck, since = "batch", self._batch_since
        elif self._tail_running:
            stuck, since = "batch", self._tail_since
        elif self._saving is not None and not self._saving.done():
            stuck, since = "checkpoint", self._saving_since
        else:
            stuck, since = None, 0.0
        if stuck is not None:
            stuck_s = time.monotonic() - since
            if stuck_s > grace_s:
                log.warning(f"stopping: abandoning a {stuck} stuck for too long; its messages will be redelivered",
                            seconds=round(stuck_s, 1))
                self.abort()
        elif not self._lock.locked():
            await self.tick(force=True)
        return self._aborted

    @property
    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        """Abandon the running batch and stop saving or acknowledging anything (shutdown)."""
        self._abandon()
        if self._batch is not None:
            self._batch.cancel()
        if self._tail is not None:
            self._tail.cancel()
        if self._saving is not None:
            self._saving.cancel()  # its messages are redelivered; a save cut short leaves older states

    def _abandon(self) -> None:
        # Drop every reference to unacknowledged messages: Faust waits for them on shutdown and
        # stops waiting once they are garbage (never acknowledged, so they are redelivered).
        self._aborted = True
        self._checkpoints.clear()

    async def checkpoint(self) -> int:
        """Save changed buffers, then acknowledge everything processed; returns messages acknowledged."""
        async with self._lock:
            await self._settle()
            return await self._checkpoint(wait=True)

    async def _checkpoint(self, *, wait: bool = False) -> int:
        """Snapshot the changed buffers (under the lock, so between batches: every window of their
        chunks is written) and save them, then acknowledge, in a task of its own while the next
        batches run (``wait``: until it is done). Returns how many messages it will acknowledge."""
        if self._aborted:
            return 0
        await self._saved()  # the last checkpoint's: saves to a key, and acknowledgements, stay in order
        self._raise_if_failed()
        changed, records = self._checkpoints.take(self.assembler.buffers)
        self._forget_idle(saving=changed)
        # Copies (~0.2 MB per patient): the buffers move on with the next batch while these are saved.
        states = await asyncio.to_thread(lambda: {pid: b.to_bytes() for pid, b in changed.items()})
        self._saving = asyncio.ensure_future(self._save_and_acknowledge(states, records))
        self._saving_since, self._saving_records = time.monotonic(), len(records)
        if wait:
            await self._saved()
            self._raise_if_failed()
        return len(records)

    def _forget_idle(self, saving: Iterable[str]) -> None:
        """Drop the buffers of patients idle past ``idle_patient_s`` whose last change is saved
        (the last checkpoint's save has succeeded when this runs): Redis holds exactly what memory
        held, so their next chunk restores it (:meth:`_restore`) and their windows go on as if
        never dropped. Without this every patient the worker ever saw stayed in memory."""
        if self.options.idle_patient_s <= 0:
            return
        idle = self._checkpoints.idle(self.options.idle_patient_s, self._clock(), saving)
        if not idle:
            return
        self._checkpoints.drop(idle)
        for pid in idle:
            self.assembler.drop(pid)
        self.metrics.patients_active.set(len(self.assembler.buffers))
        log.info("idle patients' buffers dropped", patients=len(idle), idle_s=self.options.idle_patient_s,
                 still_held=len(self.assembler.buffers))

    async def _save_and_acknowledge(self, states: dict[str, bytes], records: list[ChunkRecord]) -> None:
        started = time.perf_counter()
        try:
            if states:
                await self._retrying("redis", lambda: asyncio.to_thread(self.store.save_many, states))
            saved = time.perf_counter()
            for record in records:
                if record.ack is not None:
                    await record.ack()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("checkpoint failed; nothing more is saved or acknowledged")
            self._failure = exc
            self._abandon()
            return
        log.debug("checkpoint done", patients=len(states), acknowledged=len(records),
                  save=round(saved - started, 6), seconds=round(time.perf_counter() - started, 6))

    async def _saved(self) -> None:
        """Wait for the checkpoint being saved, if any. Shielded: a caller that is cancelled
        (a stop) does not cancel the save of a consistent snapshot; only :meth:`abort` does."""
        saving = self._saving
        if saving is not None and not saving.done():
            await asyncio.shield(saving)

    @property
    def pending(self) -> int:
        """Messages processed but not acknowledged yet."""
        saving = self._saving_records if self._saving is not None and not self._saving.done() else 0
        return len(self._checkpoints.pending) + saving

    async def revoke(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions went to another worker: forget their patients' buffers (the new owner restores
        them from Redis) and their unacknowledged messages (the new owner is sent them again)."""
        lost = set(partitions)
        async with self._lock:  # after the running batch: its windows are written
            if self._tail is not None:  # its tail too (a failure there is raised by the next batch)
                await asyncio.wait([self._tail])
            # And after the checkpoint being saved: the new owner must not restore a state this
            # worker overwrites later.
            await self._saved()
            dropped = self._checkpoints.forget(lost)
            for pid in dropped:
                self.assembler.drop(pid)
            for _, partition in lost:
                self.metrics.consumer_lag.remove(str(partition))  # a no-op for partitions never seen
            self.metrics.patients_active.set(len(self.assembler.buffers))
        if dropped:
            log.info("partitions revoked; buffers dropped", partitions=sorted(lost), patients=len(dropped))

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The offset after the last message processed from the partition, if any."""
        return self._checkpoints.next_offset.get((topic, partition))

    def set_lag(self, partition: int, lag: int) -> None:
        self.metrics.consumer_lag.labels(partition=str(partition)).set(max(0, lag))
