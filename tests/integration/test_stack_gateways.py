"""``hfrisk up --gateway hl7 --gateway fhir``: the gateways start as processes of the stack, on
loopback ports recorded in the stack's URLs and environment, take a message, and stop with it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import hl7.mllp
import pytest

from hfrisk.gateway.hl7_mllp import ack_code
from hfrisk.model.readers.fhir_io import ecg_to_observation
from hfrisk.model.readers.hl7_io import ecg_to_oru_r01
from hfrisk.model.readers.wfdb_io import read_wfdb
from hfrisk.stack.local import StackInfo, start_gateways
from hfrisk.testing import RECORDS, consume_all, stream_topics, topic_env

pytestmark = [pytest.mark.integration]


async def _send(port: int, message: bytes) -> str:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, limit=64 << 20)
    try:
        writer.writeblock(message)
        await writer.drain()
        return (await asyncio.wait_for(reader.readblock(), 60)).decode()
    finally:
        writer.close()


def test_up_starts_both_gateways_on_loopback(kafka_broker, redis_server, triton_server, tmp_path):
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"stackgw-{uuid.uuid4().hex[:8]}", partitions=1)
    info = StackInfo(folder=str(tmp_path), env=topic_env(kafka) | {"HFRISK_REDIS__URL": redis_server.url})
    processes = start_gateways(info, ["hl7", "fhir"], model_repository=triton_server.model_repository)
    try:
        hl7_port, fhir_port = int(info.env["HFRISK_GATEWAY__HL7_PORT"]), int(info.env["HFRISK_GATEWAY__FHIR_PORT"])
        assert info.urls == {"gateway_hl7": f"mllp://127.0.0.1:{hl7_port}", "gateway_fhir": f"http://127.0.0.1:{fhir_port}"}
        assert set(info.processes) == {"gateway-hl7", "gateway-fhir"}
        assert "HFRISK_GATEWAY__HL7_PORT" in (tmp_path / "stack.env").read_text()

        ecg = replace(read_wfdb(RECORDS / "00000" / "00003_hr"), patient_id="MRN-UP-1", device_id="m-1",
                      acquired_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
        assert ack_code(asyncio.run(_send(hl7_port, str(ecg_to_oru_r01(ecg.slice_s(0, 2))).encode()))) == "AA"
        request = urllib.request.Request(
            f"http://127.0.0.1:{fhir_port}/Observation", method="POST",
            data=ecg_to_observation(replace(ecg, patient_id="MRN-UP-2").slice_s(0, 3)).model_dump_json().encode(),
            headers={"content-type": "application/fhir+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        with urllib.request.urlopen(f"http://127.0.0.1:{fhir_port}/RiskAssessment?subject=Patient/MRN-UP-2",
                                    timeout=30) as response:
            assert json.loads(response.read())["type"] == "searchset"  # nothing scored: no worker here
        keys = sorted(r.key for r in consume_all(kafka.bootstrap_servers, kafka.ecg_topic, 5))
        assert keys == [b"MRN-UP-1"] * 2 + [b"MRN-UP-2"] * 3
    finally:
        for process in processes.values():
            process.stop()
    assert not any(p.running() for p in processes.values())
