"""The MLLP gateway with a real asyncio MLLP client (python-hl7) on a loopback socket: each message
is acknowledged per HL7 (AA/AE/AR) and its waveform arrives as chunks that rebuild the recording."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timezone

import hl7
import hl7.mllp
import numpy as np
import pytest

from hfrisk.core.config import KafkaSettings
from hfrisk.gateway.hl7_mllp import ack_code, start_hl7_gateway
from hfrisk.gateway.intake import Intake
from hfrisk.model.readers.hl7_io import ecg_to_oru_r01
from hfrisk.model.readers.wfdb_io import read_wfdb
from tests.interop.gateway_fakes import RecordingPublisher

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ptbxl_ecg(ptbxl_record_hr):
    return replace(read_wfdb(ptbxl_record_hr), acquired_at=START, patient_id="MRN-1", device_id="mon-3")


async def _exchange(publisher, messages, *, max_message_bytes=16 * 1024 * 1024, raw=False):
    """Send ``messages`` over one MLLP connection; return the acknowledgements' texts."""
    intake = Intake(publisher, KafkaSettings(), chunk_s=1.0, source="hl7-mllp")
    server = await start_hl7_gateway(intake, host="127.0.0.1", port=0, max_message_bytes=max_message_bytes)
    port = server.sockets[0].getsockname()[1]
    acks = []
    async with server:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, limit=max_message_bytes * 2)
        try:
            for message in messages:
                if raw:
                    writer.writeblock(message)
                else:
                    writer.writemessage(message)
                await writer.drain()
                acks.append((await asyncio.wait_for(reader.readblock(), 30)).decode())
        finally:
            writer.close()
    return acks


def test_two_messages_are_acked_and_rebuild_the_recording(ptbxl_ecg):
    first, second = ptbxl_ecg.slice_s(0, 5), ptbxl_ecg.slice_s(5, 10)
    second = replace(second, acquired_at=datetime(2024, 5, 6, 7, 8, 14, tzinfo=timezone.utc))
    publisher = RecordingPublisher()
    acks = asyncio.run(_exchange(publisher, [ecg_to_oru_r01(first, message_id="m1"),
                                             ecg_to_oru_r01(second, message_id="m2", channel_definitions=False)]))
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    assert "MSA|AA|m1" in acks[0] and "MSA|AA|m2" in acks[1]
    chunks = publisher.decoded()
    assert [c.sequence for c in chunks] == list(range(10))  # one stream across both messages
    assert {key for key, _ in publisher.chunks} == {b"MRN-1"}
    assert all(c.patient_id == "MRN-1" and c.device_id == "mon-3" and c.n_samples == 500 for c in chunks)
    assert [c.acquired_at_us for c in chunks] == [int(START.timestamp() * 1e6) + k * 1_000_000 for k in range(10)]
    rebuilt = np.concatenate([c.to_ecg().samples for c in chunks], axis=1)
    assert np.abs(rebuilt - ptbxl_ecg.samples).max() <= 0.0005 + 1e-6  # HL7's 1 µV counts
    assert not publisher.dead_letters


def test_bad_messages_are_nacked_and_dead_lettered_with_the_reason(ptbxl_ecg):
    good = str(ecg_to_oru_r01(ptbxl_ecg, message_id="ok"))
    no_rate = "\r".join(line for line in str(ecg_to_oru_r01(ptbxl_ecg, message_id="norate", channel_definitions=False))
                        .split("\r") if "MDC_ATTR_SAMP_RATE" not in line)
    unknown = good.replace("131329^MDC_ECG_ELEC_POTL_I^MDC", "1^LEAD_Q^L").replace("1&I^", "1&Q^").replace("|ok|", "|unk|", 1)
    adt = "MSH|^~\\&|ADT|H|HFRISK|H|20240101||ADT^A01|adt1|P|2.5\rPID|1||MRN-1"
    publisher = RecordingPublisher()
    acks = asyncio.run(_exchange(publisher, [no_rate.encode(), unknown.encode(), adt.encode(), b"garbage", good.encode()], raw=True))
    assert [ack_code(a) for a in acks] == ["AE", "AE", "AR", "AR", "AA"]
    assert "MSA|AE|norate|bad_sampling_rate" in acks[0] and "ERR|" in acks[0]
    assert "MSA|AE|unk|unknown_lead" in acks[1] and "103^Table value not found" in acks[1]
    assert "MSA|AR|adt1|bad_message" in acks[2] and "200^Unsupported message type" in acks[2]
    reasons = [(d.reason, d.kind, d.topic, d.key) for d in publisher.dead_letters]
    assert reasons == [("bad_sampling_rate", "hl7v2", "hl7-mllp", b"MRN-1"), ("unknown_lead", "hl7v2", "hl7-mllp", b"MRN-1"),
                       ("bad_message", "hl7v2", "hl7-mllp", None), ("bad_message", "hl7v2", "hl7-mllp", None)]
    assert publisher.dead_letters[0].value == no_rate.encode()  # the original, whole
    # The good message after four bad ones on the same connection is taken whole.
    assert len(publisher.decoded()) == 10


def test_oversized_block_is_rejected_and_the_connection_closed(ptbxl_ecg):
    """The framing is lost after an over-long block: one AR, then a new connection starts clean."""
    big = str(ecg_to_oru_r01(ptbxl_ecg, message_id="big"))
    small = ecg_to_oru_r01(ptbxl_ecg.slice_s(0, 1), message_id="small")
    publisher = RecordingPublisher()
    acks = asyncio.run(_exchange(publisher, [big], max_message_bytes=len(big) // 2))
    assert [ack_code(a) for a in acks] == ["AR"] and "oversized" in acks[0]
    assert [d.reason for d in publisher.dead_letters] == ["oversized"]
    acks = asyncio.run(_exchange(publisher, [small], max_message_bytes=len(big) // 2))
    assert [ack_code(a) for a in acks] == ["AA"] and len(publisher.decoded()) == 1


def test_kafka_down_is_a_reject_to_resend_not_a_dead_letter(ptbxl_ecg):
    publisher = RecordingPublisher(down=True)
    acks = asyncio.run(_exchange(publisher, [ecg_to_oru_r01(ptbxl_ecg, message_id="m1")]))
    assert ack_code(acks[0]) == "AR" and "kafka_unavailable" in acks[0] and "207^" in acks[0]
    assert publisher.chunks == [] and publisher.dead_letters == []


def test_mutual_tls_mllp(tmp_path, ptbxl_ecg):
    """With TLS settings the listener speaks only TLS and, with a client CA, wants a client certificate."""
    import ssl

    from hfrisk.gateway.settings import GatewaySettings
    from tests.security.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    settings = GatewaySettings(hl7_host="0.0.0.0", tls_certfile=pki.certfile, tls_keyfile=pki.keyfile,
                               tls_client_cafile=pki.cafile)
    publisher = RecordingPublisher()

    async def run(client_cert: bool):
        intake = Intake(publisher, KafkaSettings(), chunk_s=1.0, source="hl7-mllp")
        server = await start_hl7_gateway(intake, host="127.0.0.1", port=0, ssl=settings.server_ssl_context())
        port = server.sockets[0].getsockname()[1]
        context = ssl.create_default_context(cafile=str(pki.cafile))
        if client_cert:
            context.load_cert_chain(pki.client_certfile, pki.client_keyfile)
        async with server:
            reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, ssl=context, limit=64 << 20)
            try:
                writer.writemessage(ecg_to_oru_r01(ptbxl_ecg.slice_s(0, 1), message_id="tls"))
                await writer.drain()
                return (await asyncio.wait_for(reader.readblock(), 30)).decode()
            finally:
                writer.close()

    assert ack_code(asyncio.run(run(client_cert=True))) == "AA"
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        asyncio.run(run(client_cert=False))
    assert len(publisher.decoded()) == 1  # only the authenticated client's message
