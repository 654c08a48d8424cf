"""HL7 v2 over MLLP on the real local stack: ``hfrisk gateway hl7`` (a subprocess) -> Kafka ->
``hfrisk worker`` -> Triton -> Redis.

Two consecutive 10-s PTB-XL recordings of one patient go as two ORU^R01 messages (the first with
CD channel definitions, the second in the IHE PCD form) over one MLLP connection, with a message
missing its sample rate between them. Checked: AA, AE, AA; the AE'd message on the dead-letter
topic with its reason and original bytes; every window of the 20 s in Redis under the patient's
keyed pseudonym (gateway and worker share the key, as deployed), scored within 1e-4 of ``prepare``
+ ONNX Runtime on the same samples cut into the same chunks offline.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import hl7.mllp
import onnxruntime as ort
import pytest

from hfrisk.core.config import StreamSettings
from hfrisk.core.pseudonym import Pseudonymiser
from hfrisk.gateway.chunks import Sequencer, ecg_to_chunks
from hfrisk.gateway.hl7_mllp import ack_code
from hfrisk.model.readers.hl7_io import ecg_to_oru_r01, read_hl7
from hfrisk.model.readers.wfdb_io import read_wfdb
from hfrisk.stack.process import ManagedProcess, port_open
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.messages.dead_letter import DeadLetter
from hfrisk.testing import (
    RECORDS,
    consume_all,
    offline_scores,
    redis_view,
    served_card,
    start_worker,
    stream_topics,
    topic_env,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENT = "MRN-HL7-0001"


async def _send(port: int, messages: list[bytes]) -> list[str]:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, limit=64 << 20)
    acks = []
    try:
        for message in messages:
            writer.writeblock(message)
            await writer.drain()
            acks.append((await asyncio.wait_for(reader.readblock(), 60)).decode())
    finally:
        writer.close()
    return acks


def test_hl7_messages_reach_redis_through_kafka_and_the_worker(kafka_broker, redis_server, triton_server,
                                                              exported_model_dir, tmp_path):
    uid = uuid.uuid4().hex[:8]
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"hl7gw-{uid}", partitions=2)
    key = secrets.token_hex(16)
    pseudonym = Pseudonymiser(key.encode()).pseudonym(PATIENT)
    prefix = f"test-hl7gw-{uid}"
    shared = {"HFRISK_PSEUDONYM__ENABLED": "true", "HFRISK_PSEUDONYM__KEY": key}

    # Two recordings of one patient, back to back in time, 10 minutes ago.
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    sources = [read_wfdb(RECORDS / "00000" / name) for name in ("00001_hr", "00002_hr")]
    ecgs = [replace(ecg, patient_id=PATIENT, device_id="monitor-7", acquired_at=start + timedelta(seconds=10 * k))
            for k, ecg in enumerate(sources)]
    messages = [str(ecg_to_oru_r01(ecgs[0], message_id="m1")).encode(),
                str(ecg_to_oru_r01(ecgs[1], message_id="m2", channel_definitions=False)).encode()]
    no_rate = b"\r".join(s for s in messages[1].split(b"\r") if b"MDC_ATTR_SAMP_RATE" not in s).replace(b"|m2|", b"|m-bad|")

    # The reference: the samples as HL7 carries them, cut into chunks as the gateway does, windowed
    # and scored offline (under the pseudonym the worker will use).
    card = served_card(triton_server.model_repository)
    session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    sequencer = Sequencer()
    chunks = [replace(c, patient_id=pseudonym) for m in messages
              for c in ecg_to_chunks(read_hl7(m), sequencer, chunk_s=1.0)]
    _, expected = offline_scores(chunks, card, session)
    assert len(expected) == 3  # 20 s at a 5-s hop

    env = worker_env(kafka=kafka, redis_url=redis_server.url, prefix=prefix, triton_grpc_url=triton_server.grpc_url,
                     model_repository=triton_server.model_repository, state_dir=tmp_path / "state",
                     policy=AlertPolicy.from_settings(StreamSettings())) | shared
    worker, _ = start_worker("worker-hl7", env, tmp_path, f"test-hl7gw-{uid}")
    port_file = tmp_path / "hl7.port"
    gateway = ManagedProcess(
        "gateway-hl7",
        [sys.executable, "-m", "hfrisk.gateway.command", "hl7", "--port", "0", "--port-file", str(port_file),
         "--no-create-topics"],
        log_path=tmp_path / "gateway.log", env=os.environ | topic_env(kafka) | shared,
        ready=lambda: port_file.is_file() and port_open("127.0.0.1", int(port_file.read_text())),
        ready_timeout_s=60,
    )
    try:
        gateway.start()
        acks = asyncio.run(_send(int(port_file.read_text()), [messages[0], no_rate, messages[1]]))
        assert [ack_code(a) for a in acks] == ["AA", "AE", "AA"], acks
        assert "bad_sampling_rate" in acks[1]

        wait_until("the worker to write every window of the HL7 messages",
                   lambda: set(expected) <= redis_view(redis_server.client(), prefix, [pseudonym])[1], workers=[worker])
        members, _ = redis_view(redis_server.client(), prefix, [pseudonym])
        assert set(members) == set(expected)
        for window, risk in expected.items():
            (where, stored), = members[window]
            if risk is None:
                assert where == "quality"
            else:
                assert where == "trend" and stored == pytest.approx(risk, abs=1e-4), window
        # The hospital's id never reached Redis.
        assert not list(redis_server.client().scan_iter(match=f"{prefix}*{PATIENT}*"))

        letters = [DeadLetter.from_record(r.key, r.value, r.headers)
                   for r in consume_all(kafka.bootstrap_servers, kafka.dead_letter_topic, 1)]
        assert [(d.reason, d.kind, d.topic, d.key) for d in letters] == [
            ("bad_sampling_rate", "hl7v2", "hl7-mllp", PATIENT.encode())]
        assert letters[0].value == no_rate
    finally:
        gateway.stop()
        worker.stop()
