"""Replay into the real broker and read everything back: topics, partitions, order, exact samples."""

from __future__ import annotations

import uuid
from collections import defaultdict

import numpy as np
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from hfrisk.core.config import KafkaSettings
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.stream.ingest.kafka_admin import create_topics
from hfrisk.stream.ingest.replay import replay
from hfrisk.stream.messages import decode_chunk, message_key
from hfrisk.stream.ingest.topics import ensure_topics, topic_specs

from hfrisk.testing import consume_all

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    # The broker is shared by the whole session: unique names keep tests independent.
    return f"test.{prefix}.{uuid.uuid4().hex[:8]}"


def _settings(broker, partitions: int = 3) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        ecg_topic=_unique("chunks"),
        scores_topic=_unique("scores"),
        alerts_topic=_unique("alerts"),
        dead_letter_topic=_unique("dead"),
        partitions=partitions,
    )


def _describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Partition counts and topic-level configs of ``names``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if t["error_code"] == 0}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        described = admin.describe_configs(resources, config_filter="modified")
    finally:
        admin.close()
    configs = {
        name: {key: entry["value"] for key, entry in values.items()}
        for name, values in next(iter(described.values())).items()
    }
    return counts, configs


def test_ensure_topics_creates_the_streams_topics_with_their_partitions(kafka_broker):
    settings = _settings(kafka_broker, partitions=3)
    names = [spec.name for spec in topic_specs(settings)]

    created = ensure_topics(settings)

    assert sorted(created) == sorted(names)
    counts, configs = _describe(kafka_broker.bootstrap_servers, names)
    assert counts == {name: 3 for name in names}
    chunk_retention = int(configs[settings.ecg_topic]["retention.ms"])
    assert chunk_retention == int(settings.retention_hours * 3_600_000)
    assert int(configs[settings.dead_letter_topic]["retention.ms"]) > chunk_retention
    assert configs[settings.ecg_topic]["max.message.bytes"] == str(settings.max_message_bytes)
    assert ensure_topics(settings) == []  # idempotent


def test_replay_three_ptbxl_records_for_two_beds(kafka_broker, ecg_data_dir):
    settings = _settings(kafka_broker, partitions=4)
    ensure_topics(settings)
    folder = ecg_data_dir / "ptbxl" / "records500" / "00000"
    records = [folder / f"0000{i}_hr" for i in (1, 2, 3)]

    stats = replay(records, kafka_broker.bootstrap_servers, settings.ecg_topic, beds=2, chunk_s=1.0,
                   realtime=False, progress=False, max_message_bytes=kafka_broker.max_message_bytes)

    assert (stats.records, stats.records_failed, stats.beds, stats.chunks) == (3, 0, 2, 30)
    assert stats.int16_chunks == 30 and stats.bytes < 30 * 15_000
    messages = consume_all(kafka_broker.bootstrap_servers, settings.ecg_topic, stats.chunks,
                           max_partition_fetch_bytes=kafka_broker.max_message_bytes)
    assert len(messages) == stats.chunks and sum(len(m.value) for m in messages) == stats.bytes

    by_bed = defaultdict(list)
    partitions = defaultdict(set)
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        chunk = decode_chunk(message.value)
        assert message.key == message_key(chunk.patient_id)
        by_bed[chunk.patient_id].append(chunk)
        partitions[chunk.patient_id].add(message.partition)
    assert set(by_bed) == {"bed-0", "bed-1"}
    recordings = {"bed-0": [records[0], records[2]], "bed-1": [records[1]]}
    for patient, chunks in by_bed.items():
        assert len(partitions[patient]) == 1, f"{patient} spread over partitions {partitions[patient]}"
        # Offsets within the partition are the send order: sequences 0..n-1, no gap, no duplicate.
        assert [c.sequence for c in chunks] == list(range(len(chunks)))
        starts = [c.acquired_at_us for c in chunks]
        assert all(b > a for a, b in zip(starts, starts[1:]))
        assert all(b.acquired_at_us == a.end_us for a, b in zip(chunks, chunks[1:]))
        expected = np.concatenate([read_ecg(path).samples for path in recordings[patient]], axis=1)
        got = np.concatenate([c.to_ecg().samples for c in chunks], axis=1)
        assert got.tobytes() == expected.tobytes()
        assert [c.source for c in chunks] == [path.name for path in recordings[patient] for _ in range(10)]


def test_realtime_replay_is_paced_and_skips_unreadable_records(kafka_broker, ecg_data_dir, tmp_path):
    topic = _unique("paced")
    create_topics(kafka_broker.bootstrap_servers, {topic: 2})
    record = ecg_data_dir / "ptbxl" / "records100" / "00000" / "00001_lr"

    stats = replay([tmp_path / "missing.hea", record, record], kafka_broker.bootstrap_servers, topic,
                   beds=2, chunk_s=0.25, duration_s=1.0, realtime=True, progress=False)

    assert stats.records_failed == 1 and stats.records == 2 and stats.chunks == 8
    # The last chunk (bed 1, staggered by half a chunk) is due 1.125 s after the start.
    assert 1.1 <= stats.wall_s < 3.0, stats.summary()
    messages = consume_all(kafka_broker.bootstrap_servers, topic, 8, max_partition_fetch_bytes=kafka_broker.max_message_bytes)
    assert sorted((decode_chunk(m.value).patient_id, decode_chunk(m.value).sequence) for m in messages) == [
        (bed, seq) for bed in ("bed-0", "bed-1") for seq in range(4)
    ]
