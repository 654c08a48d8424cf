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
* **bounded prefetch** (``stream_buffer_maxsize``: 8 batches): back-pressure goes to Kafka.
* **web server** (Faust's own status pages) bound to ``127.0.0.1`` on a port of your choice.
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

__all__ = ["create_app", "stream_buffer_size", "chunk_topic", "raw_topic", "DEFAULT_APP_ID", "DEFAULT_WEB_PORT"]

DEFAULT_APP_ID = "hfrisk-worker"
DEFAULT_WEB_PORT = 6066


def stream_buffer_size(batch_size: int) -> int:
    """Events an agent's stream may hold before Faust pauses fetching: a few batches, and at least
    1,024 (~12 MB of 12-lead 500-Hz chunks). Faust pauses a partition at 80 % of it and resumes at
    40 %: at 256 it did so often enough that a worker draining a backlog ran at 824-872 chunks/s,
    against 1,066-1,079 at 1,024 and 1,223 at 4,096 (no-op model and front end;
    docs/bench/worker-chunk-notes.md)."""
    return max(1024, 8 * batch_size)


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
        # Prefetch a few batches, not Faust's 4,096 events: a burst then waits in Kafka (lag) rather
        # than in the worker's memory, whatever its size (docs/reliability-input.md).
        stream_buffer_maxsize=stream_buffer_size(settings.stream.batch_size),
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
