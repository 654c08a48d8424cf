"""The whole stream secured: ``hfrisk worker`` (a subprocess configured only by ``HFRISK_*``
variables and secret files) consumes over SASL_SSL with Faust, writes to Redis over TLS as an ACL
user, and pseudonymises patient ids; afterwards no raw id is anywhere in Redis, in the score
records or in the worker's log, and no secret is in the log.

The worker runs with ``--noop-model`` (log-risk 0, no Triton): scoring is not what is tested here.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hfrisk.core.pseudonym import Pseudonymiser
from hfrisk.core.security import kafka_client_kwargs, redis_client
from hfrisk.stack.process import ManagedProcess, free_port, port_open
from hfrisk.stream.messages import encode_chunk
from hfrisk.stream.ingest.topics import ensure_topics
from hfrisk.testing import topic_env, wait_until
from tests.stream.test_worker_unit import good_chunks

from tests.security.conftest import (
    KAFKA_USER,
    REDIS_PREFIX,
    REDIS_USER,
    kafka_client_settings,
    redis_client_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PSEUDONYM_KEY = "a-test-pseudonym-key-" + uuid.uuid4().hex


def _redis_text(admin) -> dict[str, str]:
    """Every key under the prefix and everything stored in it, as text."""
    out = {}
    for key in admin.scan_iter(match="*", count=1000):
        kind = admin.type(key).decode()
        value = {
            "string": lambda: admin.get(key),
            "hash": lambda: admin.hgetall(key),
            "zset": lambda: admin.zrange(key, 0, -1, withscores=True),
            "list": lambda: admin.lrange(key, 0, -1),
            "set": lambda: admin.smembers(key),
            "stream": lambda: admin.xrange(key),
        }[kind]()
        out[key.decode()] = repr(value)
    return out


def _scores(kafka, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                             **kafka_client_kwargs(kafka))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records = []
        for _ in range(10):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_a_secured_worker_keeps_raw_ids_and_secrets_out_of_redis_kafka_and_logs(secure_kafka, secure_redis, pki,
                                                                                 tmp_path):
    name = f"secure{uuid.uuid4().hex[:6]}"
    kafka = kafka_client_settings(secure_kafka, pki, partitions=2, ecg_topic=f"test.{name}.chunks",
                                  scores_topic=f"test.{name}.scores", alerts_topic=f"test.{name}.alerts",
                                  dead_letter_topic=f"test.{name}.dead")
    redis_settings = redis_client_settings(secure_redis, pki)
    ensure_topics(kafka)
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(PSEUDONYM_KEY)
    env = os.environ | topic_env(kafka) | {
        "HFRISK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "HFRISK_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "HFRISK_KAFKA__USERNAME": KAFKA_USER,
        "HFRISK_KAFKA__PASSWORD_FILE": str(secure_kafka.password_file),
        "HFRISK_KAFKA__SSL_CAFILE": str(pki.cafile),
        "HFRISK_REDIS__URL": redis_settings.url,
        "HFRISK_REDIS__KEY_PREFIX": REDIS_PREFIX,
        "HFRISK_REDIS__USERNAME": REDIS_USER,
        "HFRISK_REDIS__PASSWORD_FILE": str(secure_redis.password_file),
        "HFRISK_REDIS__SSL_CA_CERTS": str(pki.cafile),
        "HFRISK_PSEUDONYM__ENABLED": "true",
        "HFRISK_PSEUDONYM__KEY_FILE": str(key_file),
        "HFRISK_PATHS__STATE_DIR": str(tmp_path / "state"),
        "HFRISK_PATHS__MODEL_REPOSITORY": str(tmp_path / "no-repository"),  # the built-in card
        "HFRISK_STREAM__BATCH_TIMEOUT_S": "0.1",
        "HFRISK_LOG__LEVEL": "DEBUG",  # the most the worker ever writes about a patient
    }
    metrics_port = free_port()
    argv = [sys.executable, "-m", "hfrisk.stream.worker.command", "--noop-model", "--builtin-card", "--web-port", str(free_port()),
            "--metrics-port", str(metrics_port), "--app-id", f"test-{name}", "--prep-workers", "0",
            "--checkpoint-interval-s", "0.5", "--no-create-topics"]
    worker = ManagedProcess(f"worker-{name}", argv, log_path=tmp_path / "worker.log", env=env,
                            ready=lambda: port_open("127.0.0.1", metrics_port), ready_timeout_s=120,
                            stop_timeout_s=30).start()
    try:
        chunks = good_chunks(beds=2, records=4, salt=name)
        raw_ids = {c.patient_id for c in chunks}
        aliases = {Pseudonymiser(PSEUDONYM_KEY.encode())(pid) for pid in raw_ids}
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all",
                                 max_request_size=kafka.max_message_bytes, **kafka_client_kwargs(kafka))
        try:
            for chunk in chunks:
                producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk))
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=5)

        with redis_client(redis_settings) as client:
            def every_patient_has_a_window() -> bool:
                return all(client.zcard(f"{REDIS_PREFIX}:trend:{alias}") > 0 for alias in aliases)

            wait_until("windows of every patient in Redis", every_patient_has_a_window, timeout_s=120,
                       workers=[worker])
    finally:
        worker.stop()

    with secure_redis.server.client() as admin:
        stored = _redis_text(admin)
    ours = {key: value for key, value in stored.items() if any(alias in key for alias in aliases)}
    assert ours, "the worker wrote nothing under the pseudonyms"
    everything = "\n".join(f"{key} {value}" for key, value in stored.items())
    assert not [pid for pid in raw_ids if pid in everything], "a raw patient id reached Redis"

    scores = _scores(kafka, kafka.scores_topic)
    assert scores and {record.key.decode() for record in scores} <= aliases
    assert not any(pid.encode() in record.value for record in scores for pid in raw_ids)

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "worker starting" in log
    for secret in (secure_kafka.password, secure_redis.password, PSEUDONYM_KEY):
        assert secret not in log
    assert not [pid for pid in raw_ids if pid in log], "a raw patient id reached the worker's log"
