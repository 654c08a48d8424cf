"""The Faust application of the stream workers, configured from :class:`hfrisk.core.config.Settings`.

One app id is one Kafka consumer group: every ``hfrisk worker`` started with the same id shares
the chunk topic's partitions (a patient's chunks all sit on one partition, so one worker sees all
of them). What is configured here, and why:

* **broker** from ``kafka.bootstrap_servers``; the topics are created beforehand with
  :func:`hfrisk.stream.ingest.topics.ensure_topics` (``topic_allow_declare=False``: the app never creates
  or resizes topics itself, and no leader topic is needed since no agent runs on the leader only).
* **at-least-once** processing (``processing_guarantee``). Faust's ``exactly_once`` has open
  bugs; the Redis sink is idempotent per window instead, so a redelivered chunk changes nothing.
* **message size**: the consumer fetches, and the producer sends, messages up to
  ``kafka.max_message_bytes`` (chunks of long/high-rate windows, dead letters that carry them).
* **partitions**: ``kafka.partitions`` for every topic the app declares objects for.
* **new consumer groups start at the earliest offset**: a worker joining after chunks were
  produced must not skip them; windows already in Redis are recognised by their ids.
* **bounded prefetch** (``stream_buffer_maxsize``: ``stream.buffer_events``, 4,096 by default): back-pressure
  goes to Kafka.
* **web server** (Faust's own status pages) bound to ``127.0.0.1`` on a port of your choice.
* **messages delivered without four tasks each** (:mod:`hfrisk.stream.worker.eager_delivery`;
  ``stream.eager_delivery``, on by default).
* no tables and no RocksDB: per-patient state lives in Redis (:mod:`hfrisk.stream.worker.buffer_store`), so
  ``datadir`` only holds Faust's bookkeeping (under ``paths.state_dir`` by default).

Example::

    app = create_app(get_settings(), web_port=6067)
    chunks = chunk_topic(app, get_settings().kafka)
"""

from __future__ import annotations

from pathlib import Path

import faust

from hfrisk.core.config import KafkaSettings, Settings, get_settings
from hfrisk.core.security import faust_broker_options
from hfrisk.stream.worker import eager_delivery

__all__ = ["create_app", "stream_buffer_size", "chunk_topic", "raw_topic", "DEFAULT_APP_ID", "DEFAULT_WEB_PORT"]

DEFAULT_APP_ID = "hfrisk-worker"
DEFAULT_WEB_PORT = 6066


def stream_buffer_size(batch_size: int, buffer_events: int | None = None) -> int:
    """Events an agent's stream may hold before Faust pauses fetching (``stream.buffer_events``):
    by default Faust's own 4,096 events (~49 MB of 12-lead 500-Hz chunks), more with batches above
    512. Faust pauses a partition at 80 % of it and resumes at 40 %, and while every partition is
    paused its fetcher sleeps a whole second: a worker that empties 80 % of the buffer in less
    than that sits idle for the rest. At 1,024 events the no-op worker drained a backlog at
    1,256-1,545 chunks/s, at 4,096 at 2,439-3,249 and at 8,192 at 2,414-3,086
    (docs/bench/stream-tuning.md, "Faust's one-second sleep")."""
    return buffer_events if buffer_events is not None else max(4096, 8 * batch_size)


def _broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()]


def create_app(
    settings: Settings | None = None,
    *,
    app_id: str = DEFAULT_APP_ID,
    web_port: int = DEFAULT_WEB_PORT,
    web_host: str = "127.0.0.1",
    datadir: str | Path | None = None,
    session_timeout_s: float | None = None,
    **faust_overrides,
) -> faust.App:
    """A configured (not started) Faust app. ``faust_overrides`` are any other Faust settings.

    ``session_timeout_s``: how long the group waits for a worker that vanished (SIGKILL, lost
    host) before its partitions go to the others; Faust's default is 60 s.
    """
    settings = settings or get_settings()
    kafka = settings.kafka
    datadir = Path(datadir or settings.paths.state_dir / "faust" / app_id)
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    options: dict = dict(
        broker=_broker_urls(kafka.bootstrap_servers),
        autodiscover=False,
        processing_guarantee="at_least_once",
        topic_partitions=kafka.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=kafka.max_message_bytes,
        producer_max_request_size=kafka.max_message_bytes,
        # Every dead letter and alert must be on all in-sync replicas before its chunk is acked.
        producer_acks=-1,
        # On a rebalance or a stop, wait until the messages in flight are acknowledged (the worker
        # checkpoints them), so that the next owner starts from a fresh commit and saved buffers.
        stream_wait_empty=True,
        # A bounded prefetch: beyond it a burst waits in Kafka (lag), not in the worker's memory
        # (docs/reliability-input.md); large enough that Faust's pauses do not idle the worker.
        stream_buffer_maxsize=stream_buffer_size(settings.stream.batch_size, settings.stream.buffer_events),
        web_enabled=True,
        web_bind=web_host,
        web_host=web_host,
        web_port=web_port,
        store="memory://",
        datadir=str(datadir),
    )
    options.update(faust_broker_options(kafka))  # TLS / SASL from the settings (docs/security.md)
    if session_timeout_s is not None:
        options["broker_session_timeout"] = session_timeout_s
        # The heartbeat must fit several times into the session, or a live worker is evicted.
        options["broker_heartbeat_interval"] = min(3.0, session_timeout_s / 3)
    options.update(faust_overrides)
    if settings.stream.eager_delivery:
        eager_delivery.install()  # a fetched message reaches its queue without four tasks (see the module)
    return faust.App(app_id, **options)


def raw_topic(app: faust.App, name: str, partitions: int):
    """A topic of raw bytes (keys and values pass through untouched)."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def chunk_topic(app: faust.App, kafka: KafkaSettings | None = None):
    """The ECG chunk topic as the agents consume it: raw bytes, decoded by the worker itself so
    that an undecodable message becomes a dead letter instead of a Faust deserialisation error."""
    kafka = kafka or get_settings().kafka
    return raw_topic(app, kafka.ecg_topic, kafka.partitions)
