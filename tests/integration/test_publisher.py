"""The worker's publisher against a real broker: every record on its role's topic, with its key,
value and headers, in the order sent, on the partition its key gives (the partition the patient's
chunks are on), and Kafka's acknowledgement awaited.

``FaustPublisher`` sends through the Faust app's producer rather than ``Topic.send``
(bench/bench_publish.py); this pins down that nothing a consumer sees changed.
"""

from __future__ import annotations

import asyncio
import uuid

from kafka.partitioner.default import murmur2

from hfrisk.core.config import KafkaSettings, Settings
from hfrisk.stream.ingest.topics import ensure_topics
from hfrisk.stream.messages import message_key
from hfrisk.stream.worker.agents import FaustPublisher
from hfrisk.stream.worker.app import create_app
from hfrisk.stream.worker.records import OutboundMessage
from hfrisk.testing import consume_all

PARTITIONS = 4


def _messages() -> list[OutboundMessage]:
    messages = []
    for i in range(60):
        key = message_key(f"patient-{i % 7}")
        messages.append(OutboundMessage("scores", key, f'{{"window": {i}}}'.encode()))
        if i % 5 == 0:
            messages.append(OutboundMessage("alerts", key, f'{{"alert": {i}}}'.encode(), [("kind", b"raised")]))
        if i % 9 == 0:  # a dead letter may have no key (an undecodable message had none)
            messages.append(OutboundMessage("dead_letter", None if i % 2 else key, bytes([i]) * 300,
                                            [("reason", b"bad_avro"), ("offset", str(i).encode())]))
    return messages


async def _publish(app, publisher: FaustPublisher, groups) -> None:
    await app.producer.start()
    try:
        for group in groups:
            await publisher.publish(group)  # returns once Kafka acknowledged every record
    finally:
        await app.producer.stop()


def test_records_reach_their_topics_keys_partitions_and_order(kafka_broker, tmp_path):
    uid = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers, partitions=PARTITIONS,
        ecg_topic=f"test.publisher.{uid}.chunks", scores_topic=f"test.publisher.{uid}.scores",
        alerts_topic=f"test.publisher.{uid}.alerts", dead_letter_topic=f"test.publisher.{uid}.dead",
    )
    ensure_topics(kafka)
    settings = Settings(kafka=kafka)
    messages = _messages()
    # Made outside the event loop that runs them, as the worker command makes them.
    app = create_app(settings, app_id=f"test-publisher-{uid}", datadir=tmp_path / "faust")
    publisher = FaustPublisher(app, kafka)
    asyncio.run(_publish(app, publisher, [messages[:40], messages[40:]]))

    topics = {"scores": kafka.scores_topic, "alerts": kafka.alerts_topic, "dead_letter": kafka.dead_letter_topic}
    for role, topic in topics.items():
        sent = [(m.key, m.value, list(m.headers or [])) for m in messages if m.role == role]
        records = consume_all(kafka.bootstrap_servers, topic, len(sent))
        by_partition: dict[int, list] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_partition.setdefault(r.partition, []).append((r.key, r.value, list(r.headers)))
        assert sorted(map(repr, sum(by_partition.values(), []))) == sorted(map(repr, sent)), role
        for key, value, headers in sent:
            if key is not None:
                # Kafka's default partitioner (murmur2): where the gateway's producer puts the patient's chunks.
                expected = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
                assert (key, value, headers) in by_partition.get(expected, []), (role, key)
        for partition, held in by_partition.items():  # each partition in the order sent
            assert held == [record for record in sent if record in held], (role, partition)
