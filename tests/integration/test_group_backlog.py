"""``GroupBacklog`` on the real broker: what a consumer group has not committed of a topic, which
``hfrisk up`` waits to reach 0 before it stops showing the ward."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from hfrisk.stack.backlog import GroupBacklog
from hfrisk.testing import stream_topics

pytestmark = pytest.mark.integration


def test_the_backlog_is_what_the_group_has_not_committed(kafka_broker):
    uid = uuid.uuid4().hex[:8]
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"backlog.{uid}", 2)
    group = f"backlog-{uid}"
    backlog = GroupBacklog(kafka.bootstrap_servers, kafka.ecg_topic, group)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        assert backlog.remaining() == 0  # nothing sent, nothing owed
        for i in range(10):
            producer.send(kafka.ecg_topic, value=b"x", partition=i % 2)
        producer.flush(30)
        assert backlog.remaining() is None  # messages, and the group has committed nothing yet

        first, second = TopicPartition(kafka.ecg_topic, 0), TopicPartition(kafka.ecg_topic, 1)
        consumer.assign([first, second])
        consumer.commit({first: OffsetAndMetadata(3, "", -1), second: OffsetAndMetadata(0, "", -1)})
        assert backlog.remaining() == 2 + 5
        consumer.commit({first: OffsetAndMetadata(5, "", -1), second: OffsetAndMetadata(5, "", -1)})
        assert backlog.remaining() == 0
    finally:
        consumer.close()
        producer.close()
        backlog.close()
