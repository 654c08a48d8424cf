"""The worker in a Faust app: the chunk agent, the checkpoint task, the rebalance and shutdown hooks,
and the publisher over Faust's producer.

The agent takes micro-batches with :func:`~hfrisk.stream.worker.batching.gathered_batches` (like
Faust's ``noack_take`` it acknowledges nothing, but it gathers the next batch while this one is
scored) and hands each to :meth:`StreamWorker.submit`, which returns once the batch is scored and
leaves its writes to run beside the next one; acknowledging is the checkpoint's job.
Stops and rebalances: docs/stream-worker.md.

Example (what ``hfrisk worker`` does, see :mod:`hfrisk.stream.worker.command`)::

    app = create_app(settings, web_port=6066)
    worker = StreamWorker.from_settings(settings, card=card, preprocessor=worker_preprocessor(settings.stream, card),
                                        scorer=AsyncTritonScorer(RiskClient.from_settings(card=card)),
                                        publisher=FaustPublisher(app, settings.kafka))
    install_agents(app, worker, settings)
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence

from hfrisk.core.config import Settings, get_settings
from hfrisk.core.logs import get_logger
from hfrisk.stream.worker.app import chunk_topic
from hfrisk.stream.worker.batching import gathered_batches
from hfrisk.stream.worker.pipeline import StreamWorker
from hfrisk.stream.worker.records import BatchAborted, ChunkRecord, OutboundMessage

__all__ = ["FaustPublisher", "install_agents", "EXIT_ABANDONED"]

log = get_logger(__name__)

# Exit status of a worker that stopped while a batch was stuck (Triton or Redis unreachable).
EXIT_ABANDONED = 75  # EX_TEMPFAIL: try again later


class FaustPublisher:
    """:class:`Publisher` over a Faust app's producer: raw bytes to the scores, alerts and
    dead-letter topics, awaiting Kafka's acknowledgement of every record.

    Records go straight to the app's producer, all appended before any is awaited, not through
    ``Topic.send``. Faust's topic path gives way to the event loop between records, so aiokafka's
    sender took a batch's records a few at a time: 5-6 times the produce requests, ~104 µs of the
    worker's CPU a record against ~27, and ~126 µs of the broker's against ~24
    (``bench/bench_publish.py``, docs/bench/publish.md). Keys, headers and partitions are the
    same: both paths end in the same aiokafka producer and its key partitioner
    (tests/integration/test_publisher.py).
    """

    def __init__(self, app, kafka) -> None:
        # The app, not its producer: Faust makes the producer on first use, and one made before
        # the event loop that runs it (here, at construction) waited ~1 s for every delivery.
        self._app = app
        self._topics = {"scores": kafka.scores_topic, "alerts": kafka.alerts_topic,
                        "dead_letter": kafka.dead_letter_topic}

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        send, topics = self._app.producer.send, self._topics
        deliveries = [await send(topics[m.role], m.key, m.value, partition=None, timestamp=None,
                               headers=m.headers or None) for m in messages]
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
        batches = gathered_batches(stream, stream_settings.batch_size, linger_s=stream_settings.batch_timeout_s)
        try:
            async for events in batches:
                records = [_record(stream, event) for event in events]
                del events
                try:
                    # Returns once the batch is scored; its writes run beside the next batch.
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
