"""``hfrisk gateway risk-assessments``: every scored window on the scores topic, republished as a
FHIR R4 RiskAssessment (JSON) on a topic an EHR's integration engine can subscribe to.

At least once: a batch's offsets are committed after Kafka has taken its RiskAssessments, so a
restart may repeat some; consumers deduplicate on ``identifier`` (the window id), as they do for
score records. Windows not fit to score make no RiskAssessment. A score record that is not valid
JSON goes to the dead-letter topic with reason ``bad_message``.

The scores topic carries the worker's patient key: the keyed pseudonym when pseudonymisation is on.
The relay cannot turn it back (nothing can without the key), so it then names the subject only by
its ``urn:hfrisk:pseudonym`` identifier; the FHIR gateway's search, which is given the hospital's
id, names the Patient itself.
"""

from __future__ import annotations

import json
import threading

from kafka import KafkaConsumer, KafkaProducer

from hfrisk.core.config import KafkaSettings
from hfrisk.core.logs import get_logger
from hfrisk.core.security import kafka_client_kwargs
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.stream.ingest.kafka_admin import create_topics
from hfrisk.stream.messages.dead_letter import DeadLetter

from hfrisk.gateway.risk_assessment import risk_assessment

__all__ = ["relay_risk_assessments", "risk_assessment_value"]

log = get_logger(__name__)


def risk_assessment_value(value: bytes, card: ModelCard, *, pseudonymous: bool) -> bytes | None:
    """The RiskAssessment JSON of one scores-topic value; ``None`` for a window without a score.

    Raises ``ECGInputError(BAD_MESSAGE)`` for a value that is not a score record.
    """
    try:
        score = json.loads(value)
        if not isinstance(score, dict):
            raise TypeError(f"a score record is a JSON object, got {type(score).__name__}")
        resource = risk_assessment(score, card=card, pseudonymous=pseudonymous)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ECGInputError(InputErrorReason.BAD_MESSAGE, f"not a score record: {type(exc).__name__}: {exc}") from exc
    return None if resource is None else resource.model_dump_json().encode()


def relay_risk_assessments(
    kafka: KafkaSettings,
    topic: str,
    card: ModelCard,
    *,
    pseudonymous: bool,
    group_id: str = "hfrisk-risk-assessments",
    stop: threading.Event | None = None,
    max_records: int | None = None,
    create_topic: bool = True,
) -> int:
    """Relay until ``stop`` is set (or ``max_records`` score records were read); returns how many
    RiskAssessments were published."""
    stop = stop or threading.Event()
    client = kafka_client_kwargs(kafka)
    if create_topic:
        create_topics(kafka.bootstrap_servers, {topic: kafka.partitions}, client_kwargs=client,
                      configs={"retention.ms": str(int(kafka.retention_hours * 3_600_000))})
    consumer = KafkaConsumer(kafka.scores_topic, bootstrap_servers=kafka.bootstrap_servers, group_id=group_id,
                             enable_auto_commit=False, auto_offset_reset="earliest", **client)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True,
                             client_id="hfrisk-risk-assessments", **client)
    published = read = 0
    try:
        while not stop.is_set() and (max_records is None or read < max_records):
            batches = consumer.poll(timeout_ms=500, max_records=500)
            if not batches:
                continue
            for records in batches.values():
                for record in records:
                    read += 1
                    try:
                        value = risk_assessment_value(record.value, card, pseudonymous=pseudonymous)
                    except ECGInputError as exc:
                        letter = DeadLetter.for_message(
                            record.value, key=record.key, reason=exc.reason.value, detail=exc.detail,
                            topic=record.topic, partition=record.partition, offset=record.offset,
                            timestamp_ms=record.timestamp, max_message_bytes=kafka.max_message_bytes)
                        producer.send(kafka.dead_letter_topic, key=letter.key, value=letter.value,
                                      headers=letter.headers())
                        continue
                    if value is not None:
                        producer.send(topic, key=record.key, value=value)
                        published += 1
            producer.flush()
            consumer.commit()
    finally:
        consumer.close()
        producer.close()
    log.info("risk assessment relay stopped", read=read, published=published)
    return published
