"""``relay_risk_assessments`` on a real Kafka broker: score records in, RiskAssessments out on their
topic (one per scored window, keyed by patient), an unusable record dead-lettered, offsets committed."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from kafka import KafkaProducer

from hfrisk.gateway.relay import relay_risk_assessments
from hfrisk.model.contract.card import default_card
from hfrisk.stream.messages.dead_letter import DeadLetter
from hfrisk.testing import consume_all, stream_topics

pytestmark = [pytest.mark.integration]


def _score(patient: str, window: int, scored: bool) -> bytes:
    return json.dumps({"patient_id": patient, "window_id": f"{patient}:{window}", "window_start_us": window,
                       "window_end_us": window + 10_000_000, "scored": scored, "fit_to_score": scored,
                       "log_risk": 0.5 if scored else None, "model_version": "1"}).encode()


def test_scored_windows_are_republished_as_risk_assessments(kafka_broker):
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"relay-{uuid.uuid4().hex[:8]}", partitions=2)
    topic = f"{kafka.scores_topic}.fhir"
    records = [(b"p-1", _score("p-1", 0, True)), (b"p-1", _score("p-1", 5_000_000, False)),
               (b"p-2", _score("p-2", 0, True)), (b"p-2", b"not a score record")]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    for key, value in records:
        producer.send(kafka.scores_topic, key=key, value=value)
    producer.flush()
    producer.close()

    published = relay_risk_assessments(kafka, topic, default_card(), pseudonymous=True, max_records=len(records),
                                       group_id="relay-test", stop=threading.Event())
    assert published == 2
    out = consume_all(kafka.bootstrap_servers, topic, 2)
    resources = {r.key: json.loads(r.value) for r in out}
    assert len(out) == 2 and set(resources) == {b"p-1", b"p-2"}
    assert resources[b"p-1"]["resourceType"] == "RiskAssessment"
    assert resources[b"p-1"]["identifier"][0]["value"] == "p-1:0"
    assert resources[b"p-2"]["subject"]["identifier"]["value"] == "p-2"
    letters = [DeadLetter.from_record(r.key, r.value, r.headers)
               for r in consume_all(kafka.bootstrap_servers, kafka.dead_letter_topic, 1)]
    assert [(d.reason, d.value, d.topic) for d in letters] == [("bad_message", b"not a score record", kafka.scores_topic)]
    # Offsets were committed: a second run of the same group finds nothing new.
    assert relay_risk_assessments(kafka, topic, default_card(), pseudonymous=True, group_id="relay-test",
                                  stop=_stop_after(3.0)) == 0


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop
