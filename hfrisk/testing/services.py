"""Plumbing around real servers for stream tests and benchmarks: worker processes and their
``HFRISK_*`` environment, fresh Kafka topics, reading topics back, and what the workers left in Redis.

Workers (:func:`start_worker`, :func:`worker_env`) run as ``python -m hfrisk.stream.worker.command``
subprocesses, configured only through ``HFRISK_*`` variables, exactly as deployed.
:func:`redis_view` reads Redis window by window: which windows are in the trend / quality sets and
how often, and which idempotency records exist.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from hfrisk.core import retries
from hfrisk.core.config import KafkaSettings
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, load_card
from hfrisk.stack.process import ManagedProcess, free_port, port_open
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.ingest.topics import ensure_topics
from hfrisk.stream.sinks.keys import RedisKeys
from hfrisk.testing.reference import HOP_S

__all__ = [
    "WAIT_S",
    "CHUNK_BYTES",
    "WORKER_OPTIONS",
    "wait_until",
    "consume_all",
    "start_worker",
    "topic_env",
    "services_env",
    "served_card",
    "worker_env",
    "stream_topics",
    "redis_view",
    "window_records",
    "scrape_metrics",
    "worker_ready",
]

WAIT_S = 90.0
CHUNK_BYTES = 4 << 20


def worker_ready(proc) -> bool:
    """Whether a worker process (a ``ManagedProcess``) has its partitions: Faust logs "Worker
    ready" once the group has assigned them."""
    return "Worker ready" in proc.log_path.read_text(errors="replace")


def wait_until(what: str, check, timeout_s: float = WAIT_S, workers=(), interval_s: float = 0.25) -> None:
    """Poll ``check`` every ``interval_s`` until it is true; fail at once if one of ``workers``
    exits meanwhile, and with the workers' logs after ``timeout_s``."""

    def probe() -> bool:
        if check():
            return True
        for w in workers:
            assert w.running(), f"worker exited while waiting for {what}:\n{w.tail_log(60)}"
        return False

    try:
        retries.wait_until(probe, timeout_s, interval_s=interval_s, what=what)
    except TimeoutError:
        logs = "\n".join(w.tail_log(60) for w in workers)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}") from None


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


# The fault scenarios' worker: one preprocessing process, frequent checkpoints, and partitions of
# a vanished worker moved after 6 s (Faust's 60 s would dominate every recovery time).
WORKER_OPTIONS = {"--prep-workers": "1", "--checkpoint-interval-s": "0.5", "--session-timeout-s": "6"}


def start_worker(name: str, env: dict, tmp: Path, app_id: str,
                 options: dict[str, str] | None = None) -> tuple[ManagedProcess, int]:
    """``hfrisk worker`` as a subprocess, ready once its metrics port answers; ``options``
    replace or add to :data:`WORKER_OPTIONS`."""
    metrics_port = free_port()
    flags = [part for flag, value in (WORKER_OPTIONS | (options or {})).items() for part in (flag, value)]
    argv = [sys.executable, "-m", "hfrisk.stream.worker.command", "--web-port", str(free_port()),
            "--metrics-port", str(metrics_port), "--app-id", app_id, *flags, "--no-create-topics"]
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
        # The policy is given in log-risk: the worker must not turn it into another rule.
        "HFRISK_STREAM__FLAG_ON": "log_risk",
        "HFRISK_STREAM__RISK_THRESHOLD": repr(policy.threshold),
        "HFRISK_STREAM__CLEAR_THRESHOLD": repr(policy.clear_threshold),
        "HFRISK_STREAM__MIN_WINDOWS_TO_FLAG": str(policy.min_windows),
        "HFRISK_LOG__LEVEL": "INFO",
    }


def stream_topics(bootstrap: str, name: str, partitions: int, *, namespace: str = "test") -> KafkaSettings:
    """Fresh chunk/scores/alerts/dead-letter topics named ``<namespace>.<name>.*``, created."""
    base = f"{namespace}.{name}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, partitions=partitions, ecg_topic=f"{base}.chunks",
        scores_topic=f"{base}.scores", alerts_topic=f"{base}.alerts", dead_letter_topic=f"{base}.dead",
    )
    ensure_topics(kafka)
    return kafka


def redis_view(client, prefix: str, patients) -> tuple[dict, set]:
    """Window id -> [(where, log-risk)] over the trend and quality sets, and the idempotency keys."""
    keys_of = RedisKeys(prefix)
    members: dict[tuple[str, str], list] = defaultdict(list)
    keys: set[tuple[str, str]] = set()
    for pid in patients:
        for raw in client.zrange(keys_of.trend(pid), 0, -1):
            wid, _, risk = raw.decode().rpartition(":")
            members[(pid, wid)].append(("trend", float(risk)))
        for raw in client.zrange(keys_of.quality(pid), 0, -1):
            record = json.loads(raw)
            members[(pid, record["window_id"])].append(("quality", record["log_risk"]))
    for pid, window_keys in _window_keys(client, prefix, patients).items():
        keys.update((pid, key.decode().rsplit(":", 1)[1]) for key in window_keys)
    return members, keys


def _window_keys(client, prefix: str, patients) -> dict[str, list[bytes]]:
    """The idempotency keys of ``patients``, by patient: one SCAN of the prefix's window keys (a
    SCAN per patient reads the whole keyspace each time: minutes of Redis at 500 beds)."""
    keys_of = RedisKeys(prefix)
    head = keys_of.window("", "")[:-1].encode()  # "{prefix}:window:"
    out: dict[str, list[bytes]] = {pid: [] for pid in patients}
    for key in client.scan_iter(match=keys_of.window("*", "*"), count=5000):
        pid = key[len(head):].rsplit(b":", 1)[0].decode() if key.startswith(head) else None
        if pid in out:
            out[pid].append(key)
    return out


def window_records(client, prefix: str, patients) -> list[dict]:
    """Every idempotency record (``RedisKeys.window``) of ``patients``, with its ``patient_id``."""
    out = []
    for pid, keys in _window_keys(client, prefix, patients).items():
        for raw in client.mget(keys) if keys else []:
            if raw is not None:  # expired between the scan and the read
                out.append(json.loads(raw) | {"patient_id": pid})
    return out


def scrape_metrics(port: int, host: str = "127.0.0.1", names: Iterable[str] = ()) -> dict[str, float]:
    """A worker's Prometheus metrics: ``name{labels}`` -> value; given ``names`` (sample names, such
    as ``hfrisk_chunks_total``), only those, through prometheus_client's ``name[]`` filter.

    A benchmark that polls progress many times a second asks for ``names``: the whole exposition
    renders every family (histograms, the model monitor's per-device series) in the worker's
    process, and at 20 polls a second that took a tenth of a no-op worker's CPU, which Prometheus,
    scraping every few seconds, never does."""
    query = f"?{urllib.parse.urlencode({'name[]': list(names)}, doseq=True)}" if names else ""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics{query}", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
