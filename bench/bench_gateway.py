"""What it costs to take a hospital format in: the figures of docs/bench/gateway.md.

    .venv/bin/python -m bench.bench_gateway [--repeats 30] [--messages 100] [--out docs/bench]

One real recording (PTB-XL ecg_id 1, 12 leads, 500 Hz, 10 s) written in each format by hfrisk's
own writers, then:

* **read**: median time to read it into the canonical ECG, per format, against reading the WFDB
  original in the same run (the baseline every other format is compared with);
* **HL7 over MLLP**: messages acknowledged per second on one connection to ``hfrisk gateway hl7``'s
  server (parse, chunk, encode, ACK), Kafka replaced by a publisher that keeps nothing, so the
  figure is the gateway's own ceiling;
* **FHIR over HTTP**: ``POST /Observation`` per second through the ASGI app in process (httpx's
  ASGI transport, no sockets), same publisher.

Kafka's own cost is not in these figures (docs/bench/stream.md measures a producer's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from bench.record import command_line, load_average, machine, save

RECORD = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500" / "00000" / "00001_hr"


class _NullPublisher:
    """Kafka's place: takes every record and keeps none (the gateway's ceiling without a broker)."""

    def send_chunks(self, records) -> None:
        pass

    def send_dead_letter(self, letter) -> None:
        pass

    def close(self) -> None:
        pass


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def _mllp_rate(message: bytes, n: int) -> float:
    import hl7.mllp

    from hfrisk.core.config import KafkaSettings
    from hfrisk.gateway.hl7_mllp import ack_code, start_hl7_gateway
    from hfrisk.gateway.intake import Intake

    intake = Intake(_NullPublisher(), KafkaSettings(), chunk_s=1.0, source="bench")
    server = await start_hl7_gateway(intake, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, limit=64 << 20)
        start = time.perf_counter()
        for _ in range(n):
            writer.writeblock(message)
            await writer.drain()
            assert ack_code(await reader.readblock()) == "AA"
        elapsed = time.perf_counter() - start
        writer.close()
    return n / elapsed


async def _fhir_rate(body: bytes, n: int) -> float:
    import httpx

    from hfrisk.core.config import KafkaSettings
    from hfrisk.gateway.fhir_app import fhir_app
    from hfrisk.gateway.intake import Intake

    app = fhir_app(Intake(_NullPublisher(), KafkaSettings(), chunk_s=1.0, source="bench"), max_message_bytes=16 << 20)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        start = time.perf_counter()
        for _ in range(n):
            response = await client.post("/Observation", content=body, headers={"content-type": "application/fhir+json"})
            assert response.status_code == 202, response.text
        elapsed = time.perf_counter() - start
    return n / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)

    from hfrisk.model.readers import (
        ecg_to_observation,
        ecg_to_oru_r01,
        read_edf,
        read_fhir,
        read_hl7,
        read_wfdb,
        write_edf,
    )

    load_before = load_average()
    ecg = replace(read_wfdb(RECORD), patient_id="MRN-1", device_id="monitor-1",
                  acquired_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    with tempfile.TemporaryDirectory() as tmp:
        edf = write_edf(ecg, Path(tmp) / "ecg.edf")
        fhir = ecg_to_observation(ecg, observation_id="ecg-1").model_dump_json().encode()
        hl7_text = str(ecg_to_oru_r01(ecg, message_id="m1")).encode()
        read_ms = {
            "wfdb": _median_ms(lambda: read_wfdb(RECORD), args.repeats),
            "edf": _median_ms(lambda: read_edf(edf), args.repeats),
            "fhir": _median_ms(lambda: read_fhir(fhir), args.repeats),
            "hl7": _median_ms(lambda: read_hl7(hl7_text), args.repeats),
        }
    mllp = asyncio.run(_mllp_rate(hl7_text, args.messages))
    http = asyncio.run(_fhir_rate(fhir, args.messages))
    result = {
        "command": command_line("bench_gateway", argv),
        "machine": machine(load_before),
        "record": "PTB-XL ecg_id 1, 12 leads, 500 Hz, 10 s",
        "read_ms": {k: round(v, 2) for k, v in read_ms.items()},
        "message_bytes": {"fhir": len(fhir), "hl7": len(hl7_text)},
        "hl7_mllp_messages_per_s": round(mllp, 1),
        "fhir_http_observations_per_s": round(http, 1),
    }
    rows = "\n".join(
        f"| {fmt} | {ms:.2f} | {ms / read_ms['wfdb']:.1f}× |" for fmt, ms in read_ms.items()
    )
    markdown = f"""# Gateways and hospital formats: what taking a recording in costs

Command: `{result['command']}`
Machine: {result['machine']['cpus']} CPUs, load {result['machine']['load_before']} before, {result['machine']['load_after']} after
(shared with other jobs). Recording: {result['record']}; FHIR message {len(fhir) / 1e3:.0f} kB, HL7 {len(hl7_text) / 1e3:.0f} kB.

| format | read, median ms | ÷ WFDB |
| --- | --- | --- |
{rows}

| gateway (Kafka replaced by a publisher that keeps nothing) | per second | seconds of 12-lead signal per second |
| --- | --- | --- |
| HL7 ORU^R01 over MLLP, one connection, ACK awaited | {mllp:.1f} messages | {mllp * 10:.0f} |
| FHIR `POST /Observation`, ASGI in process | {http:.1f} Observations | {http * 10:.0f} |

A live bed sends one second of signal per second, so one gateway process keeps up with about as many
beds as the last column says, before Kafka's own cost.
"""
    save(args.out, "gateway", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
