"""The real Kafka broker: topics, a produce/consume round trip, large ECG-sized records, restart."""

from __future__ import annotations

import os
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from hfrisk.stream.ingest.kafka_admin import TopicMismatchError, create_topics

pytestmark = pytest.mark.integration


def _topic(prefix: str) -> str:
    # The broker is shared by the whole session: unique names keep tests independent.
    return f"test.{prefix}.{uuid.uuid4().hex[:8]}"


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if t["error_code"] == 0}
    finally:
        admin.close()


def _producer(broker, **extra) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=broker.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_request_size=broker.max_message_bytes,
        **extra,
    )


def _consume_all(broker, topic: str, expected: int, timeout_s: float = 20.0) -> list:
    """Read ``expected`` records of partition 0 from the beginning (no consumer group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=broker.max_message_bytes,
        fetch_max_bytes=2 * broker.max_message_bytes,
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records = []
        for _ in range(int(timeout_s / 0.5)):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def test_topics_get_their_partition_counts_and_creation_is_idempotent(kafka_broker):
    four, one = _topic("four"), _topic("one")
    created = create_topics(kafka_broker.bootstrap_servers, {four: 4, one: 1})
    assert sorted(created) == sorted([four, one])
    assert _partition_counts(kafka_broker.bootstrap_servers, [four, one]) == {four: 4, one: 1}

    assert create_topics(kafka_broker.bootstrap_servers, {four: 4, one: 1}) == []
    with pytest.raises(TopicMismatchError, match=f"{four} has 4 \\(want 2\\)"):
        create_topics(kafka_broker.bootstrap_servers, {four: 2})


def test_unknown_topics_are_not_auto_created(kafka_broker):
    missing = _topic("missing")
    producer = _producer(kafka_broker, max_block_ms=1500)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(missing, b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)
    assert _partition_counts(kafka_broker.bootstrap_servers, [missing]) == {}


def test_ten_messages_round_trip_in_order(kafka_broker):
    topic = _topic("roundtrip")
    create_topics(kafka_broker.bootstrap_servers, {topic: 1})
    sent = [(f"patient-{i % 3}".encode(), f"window-{i}".encode()) for i in range(10)]
    producer = _producer(kafka_broker)
    try:
        offsets = [producer.send(topic, key=k, value=v).get(timeout=10).offset for k, v in sent]
    finally:
        producer.close(timeout=5)
    assert offsets == list(range(10))

    records = _consume_all(kafka_broker, topic, expected=10)
    assert [(r.key, r.value) for r in records] == sent


def test_ecg_sized_records_go_through(kafka_broker):
    topic = _topic("large")
    create_topics(kafka_broker.bootstrap_servers, {topic: 1})
    # ~300 kB: a 10-s 12-lead window as float32 (240 kB at 500 Hz) plus metadata. 2 MB: above
    # Kafka's ~1 MB default limit, so it only passes because the broker's message.max.bytes was raised.
    payloads = [os.urandom(300_000), os.urandom(2_000_000)]
    producer = _producer(kafka_broker)
    try:
        for payload in payloads:
            producer.send(topic, payload).get(timeout=20)
    finally:
        producer.close(timeout=5)

    records = _consume_all(kafka_broker, topic, expected=2)
    assert [r.value for r in records] == payloads


def test_restart_keeps_topics_and_records(kafka_broker):
    topic = _topic("restart")
    create_topics(kafka_broker.bootstrap_servers, {topic: 3})
    producer = _producer(kafka_broker)
    try:
        for i in range(10):
            producer.send(topic, f"before-{i}".encode(), partition=0).get(timeout=10)
    finally:
        producer.close(timeout=5)
    bootstrap = kafka_broker.bootstrap_servers

    kafka_broker.restart()

    assert kafka_broker.bootstrap_servers == bootstrap
    assert _partition_counts(bootstrap, [topic]) == {topic: 3}
    records = _consume_all(kafka_broker, topic, expected=10)
    assert [r.value for r in records] == [f"before-{i}".encode() for i in range(10)]
    # And the restarted broker takes writes again.
    producer = _producer(kafka_broker)
    try:
        assert producer.send(topic, b"after", partition=0).get(timeout=10).offset == 10
    finally:
        producer.close(timeout=5)
