"""Kafka over SASL_SSL with SCRAM-SHA-512: a kafka-python producer and an aiokafka consumer set up
exactly as Faust sets it up (hfrisk.core.security), and the connections the broker must refuse."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from hfrisk.core.security import faust_broker_options, kafka_client_kwargs
from hfrisk.stream.ingest.kafka_admin import create_topics

from tests.security.conftest import kafka_client_settings

pytestmark = pytest.mark.integration


def _topic() -> str:
    return f"test.secure.{uuid.uuid4().hex[:8]}"


async def _consume(bootstrap: str, topic: str, auth: dict, expected: int, timeout_s: float = 30.0) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"test-{uuid.uuid4().hex[:6]}", **auth)
    await consumer.start()
    try:
        records: list = []
        async with asyncio.timeout(timeout_s):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def _connects(bootstrap: str, **kwargs) -> bool:
    """Whether an admin client gets metadata; a refused client fails to bootstrap (4 s)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                 bootstrap_timeout_ms=4000, **kwargs)
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def test_produce_with_kafka_python_and_consume_with_faust_credentials(secure_kafka, pki):
    kafka = kafka_client_settings(secure_kafka, pki)
    topic = _topic()
    assert create_topics(kafka.bootstrap_servers, {topic: 2}, client_kwargs=kafka_client_kwargs(kafka)) == [topic]
    sent = [(f"patient-{i % 2}".encode(), f"chunk-{i}".encode()) for i in range(6)]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", **kafka_client_kwargs(kafka))
    try:
        for key, value in sent:
            producer.send(topic, key=key, value=value).get(timeout=20)
    finally:
        producer.close(timeout=5)

    # The very arguments Faust hands its aiokafka consumers (broker_credentials -> aiokafka auth).
    auth = credentials_to_aiokafka_auth(faust_broker_options(kafka)["broker_credentials"])
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    records = asyncio.run(_consume(kafka.bootstrap_servers, topic, auth, expected=len(sent)))
    assert sorted((r.key, r.value) for r in records) == sorted(sent)


def test_wrong_password_unknown_user_and_plaintext_are_refused(secure_kafka, pki):
    server = secure_kafka.server
    kafka = kafka_client_settings(secure_kafka, pki)
    assert _connects(server.bootstrap_servers, **kafka_client_kwargs(kafka))

    wrong = kafka_client_kwargs(kafka_client_settings(secure_kafka, pki, password_file=None, password="guess"))
    assert not _connects(server.bootstrap_servers, **wrong)
    nobody = kafka_client_kwargs(kafka_client_settings(secure_kafka, pki, username="mallory"))
    assert not _connects(server.bootstrap_servers, **nobody)
    log = server.log_path.read_text(errors="replace")
    assert log.count("invalid credentials with SASL mechanism SCRAM-SHA-512") >= 2

    assert not _connects(server.bootstrap_servers)  # PLAINTEXT against the TLS listener
    # TLS but without SASL: the handshake succeeds, the first request does not authenticate.
    assert not _connects(server.bootstrap_servers, **kafka_client_kwargs(kafka.model_copy(update={"security_protocol": "SSL"})))


def test_a_client_that_does_not_trust_the_certificate_refuses_the_broker(secure_kafka, pki):
    kafka = kafka_client_settings(secure_kafka, pki, ssl_cafile=pki.other_cafile)
    assert not _connects(secure_kafka.server.bootstrap_servers, **kafka_client_kwargs(kafka))


def test_the_broker_keeps_no_password_in_its_command_lines_or_logs(secure_kafka):
    server = secure_kafka.server
    log = server.log_path.read_text(errors="replace")
    assert "SASL_SSL" in log
    assert secure_kafka.password not in log
    assert secure_kafka.password not in server.properties_path.read_text()
    assert server.properties_path.stat().st_mode & 0o077 == 0  # it holds the broker's own login
