"""The README's main job: `hfrisk up` brings up the real stack, scores a ward, `hfrisk down` cleans up.

While the stack is up, every panel query of both dashboards runs against it (Redis commands as
the Grafana Redis plugin sends them, PromQL against the stack's Prometheus) and must return data.
The run is chosen so that every panel has something to show: a replay in which a bed is flagged
(PTB-XL 7 and 18 score above the default threshold with the shipped model) and a flat-lined
recording gives low-quality windows; then one more patient with a gap in its signal and one
undecodable message (a dead letter) are sent to the stack's Kafka.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from hfrisk import dashboards as dash
from hfrisk.core.config import get_settings
from hfrisk.stack.process import ServiceNotInstalled
from hfrisk.stack.prometheus import find_prometheus
from hfrisk.stack.redis_server import find_redis_server
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import encode_chunk

from tests.integration.dashboard_queries import (
    prometheus_panel_results,
    prometheus_query,
    raw_redis,
    redis_panel_results,
    titled,
)
from tests.integration.service_required import service_unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GAP_PATIENT = "bed-gap"
GAP_S = 12.0


def _hfrisk(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfrisk.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _flat_copy(record: Path, folder: Path) -> Path:
    """The record with every sample zero: readable, but no lead is fit to score."""
    header = record.with_suffix(".hea").read_text().replace(record.stem, "flat")
    (folder / "flat.hea").write_text(header)
    (folder / "flat.dat").write_bytes(bytes(len(record.with_suffix(".dat").read_bytes())))
    return folder / "flat.hea"


def _send_gap_patient_and_a_dead_letter(bootstrap: str, records: list[Path]) -> None:
    """Recordings for one more patient, back to back but with ``GAP_S`` of silence before the last
    one (sequence numbers contiguous: a gap in acquisition time), then one undecodable message."""
    start_us = time.time_ns() // 1000 - 60_000_000
    chunks = [chunk for _, chunk in feed(records[:-1], chunk_s=1.0, start_us=start_us)]
    resume_us = chunks[-1].end_us + round(GAP_S * 1e6)
    chunks += [chunk for _, chunk in feed(records[-1:], chunk_s=1.0, start_us=resume_us)]
    topic = get_settings().kafka.ecg_topic
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for sequence, chunk in enumerate(chunks):
            chunk = dataclasses.replace(chunk, patient_id=GAP_PATIENT, device_id="monitor-gap", sequence=sequence)
            producer.send(topic, key=chunk.key, value=encode_chunk(chunk))
        producer.send(topic, key=b"bed-bad", value=b"\x00 not an ECG chunk")
        producer.flush(30)
    finally:
        producer.close()


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def test_up_scores_a_ward_and_down_leaves_nothing_running(tmp_path, ecg_data_dir):
    try:
        find_redis_server(), find_prometheus()
    except ServiceNotInstalled as err:
        service_unavailable(str(err))
    ptbxl = ecg_data_dir / "ptbxl" / "records500" / "00000"
    # Five-year risks under the bundled model: 21 % and 17 % (over the default 10 % flag), and 2.3 %.
    high_17, high_20, mid_3 = (ptbxl / f"{i:05d}_hr.hea" for i in (17, 20, 3))
    flat = _flat_copy(ptbxl / "00008_hr.hea", tmp_path)
    # Beds take recordings in turn: bed-0 plays 17 then 20 (flagged), bed-1 plays 3 then the flat line.
    records = [high_17, mid_3, high_20, flat]
    env = {**os.environ, "HFRISK_PATHS__STATE_DIR": str(tmp_path), "HFRISK_LOG__LEVEL": "WARNING"}
    up = _hfrisk("up", *map(str, records), "--beds", "2", "--fast", "--view-s", "150", env=env, timeout=400)
    stack = json.loads((tmp_path / "stack" / "stack.json").read_text())
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        flagged = re.search(r"flagged patients: ([^\n]*)", up.stdout)
        assert flagged and "bed-0" in flagged.group(1), up.stdout[-2000:]
        assert set(stack["processes"]) >= {"redis", "kafka", "triton", "worker-0", "prometheus", "replay"}
        # Two 10-s recordings per bed, 10-s windows every 5 s: windows at 0, 5 and 10 s per bed.
        prefix = get_settings().redis.key_prefix
        client = redis.Redis.from_url(stack["urls"]["redis"])
        assert {m.decode() for m in client.zrange(f"{prefix}:ranking", 0, -1)} == {"bed-0", "bed-1"}
        for bed in ("bed-0", "bed-1"):
            scored = client.zcard(f"{prefix}:trend:{bed}")
            low_quality = client.zcard(f"{prefix}:quality:{bed}")
            assert scored + low_quality == 3, (bed, scored, low_quality)
            assert client.hget(f"{prefix}:latest:{bed}", "model_version") is not None
        assert client.zcard(f"{prefix}:quality:bed-1") >= 1  # the flat line

        # Triton's time-per-request panels are rates: Prometheus needs a sample of its counters from
        # before some request and one from after. On a loaded machine its first good scrape of
        # Triton came after the ward was scored, and the panels had no data (once in a full CI
        # run): the next patient's requests come after that first sample.
        _wait_for(lambda: bool(prometheus_query(stack["urls"]["prometheus"],
                                                'nv_inference_request_success{model="hfrisk"}')),
                  90, "Prometheus's first sample of Triton's counters")
        # The same for the worker's histograms (micro-batch size, end-to-end latency, the Triton
        # round trip): once, on a loaded machine, Prometheus's first scrape of the worker came
        # after the ward was scored, and those rate panels had no data either.
        for series in ("hfrisk_batch_size_count", "hfrisk_end_to_end_latency_seconds_count",
                       "hfrisk_triton_latency_seconds_count"):
            _wait_for(lambda series=series: bool(prometheus_query(stack["urls"]["prometheus"], series)),
                      90, f"Prometheus's first sample of {series}")
        _send_gap_patient_and_a_dead_letter(stack["urls"]["kafka"], [high_17, high_20, flat, high_17])
        _wait_for(lambda: client.zcard(f"{prefix}:gaps:{GAP_PATIENT}") > 0, 90, "the gap in Redis")
        _wait_for(lambda: client.zcard(f"{prefix}:quality:{GAP_PATIENT}") > 0, 30, "its low-quality windows")
        client.close()
        _check_every_dashboard_query(stack["urls"], prefix)
    finally:
        down = _hfrisk("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(_group_alive(pgid) for pgid in stack["processes"].values())
    assert not (tmp_path / "stack" / "stack.json").exists()


def _check_every_dashboard_query(urls: dict, prefix: str) -> None:
    boards = dash.build_dashboards()
    now_ms = time.time_ns() // 1_000_000
    ward_values = {"prefix": prefix, "patient": GAP_PATIENT, "patients": GAP_PATIENT,
                   "__from": str(now_ms - 3_600_000), "__to": str(now_ms + 60_000)}
    with raw_redis(urls["redis"]) as client:
        ward = redis_panel_results(client, boards["ward"], ward_values)
    assert {GAP_PATIENT.encode(), b"bed-0"} <= set(ward["Flagged now"][::2])
    assert set(ward["$patients (variable)"]) == {b"bed-0", b"bed-1", GAP_PATIENT.encode()}
    assert b"flat_line" in ward["Why windows were not scored"][::2]

    # Grafana's $__rate_interval and $__range for a view of the last quarter hour: the whole run.
    ops_values = {"__rate_interval": "10m", "__range": "15m", "__interval": "15s"}
    ops = prometheus_panel_results(lambda q: prometheus_query(urls["prometheus"], q), boards["operations"],
                                   ops_values, timeout_s=90)
    jobs = {s["metric"]["job"]: float(s["value"][1]) for s in titled(ops, "Scrape targets up")[0]}
    assert jobs == {"worker": 1.0, "triton": 1.0}
    assert {s["metric"]["kind"] for s in titled(ops, "Alerts in range")[0]} >= {"raised"}
    assert "bad_message" in {s["metric"]["reason"] for s in titled(ops, "Dead letters by reason")[0]}
    # Model monitoring per device (the replay's monitor-<bed>): bed-1's flat line is refused, bed-0's
    # scores are compared with the served card's reference cohort.
    refused = {s["metric"]["device"]: float(s["value"][1])
               for s in titled(ops, "Windows refused by the quality gate, by device")[0]}
    assert refused["monitor-1"] > 0 and set(refused) >= {"monitor-0", "monitor-1"}
    reasons = {(s["metric"]["device"], s["metric"]["reason"]) for s in titled(ops, "Refusal reasons by device")[0]}
    assert ("monitor-1", "flat_line") in reasons
    psi = {s["metric"]["device"] for s in titled(ops, "Score drift by device (PSI against the reference cohort)")[0]}
    assert "monitor-0" in psi
