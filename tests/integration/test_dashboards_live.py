"""Every dashboard query, run for real: each Prometheus panel's PromQL against a real Prometheus
scraping the worker's and Triton's metric names, and each Redis panel's command (as the Redis
data source plugin sends it) against a real Redis filled by the real RedisSink.

The executing helpers live in ``dashboard_queries.py``; ``test_local_stack.py`` runs the same
queries against the whole ``hfrisk up`` stack.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import numpy as np
import pytest
from pathlib import Path

from hfrisk.model.contract.card import CANONICAL_LEADS, load_card
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.core.config import MonitoringSettings
from hfrisk.dashboards.rules import PSI_PSEUDOCOUNT
from hfrisk.stream.worker.monitoring import ModelMonitor, ScoreBins, bin_label
from hfrisk.stream.sinks.records import risk_terms
from hfrisk.stream.sinks.redis_sink import RedisSink, WindowResult
from hfrisk.stream.windowing import SkippedWindows, SkipReason, window_id
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from scipy.stats import entropy

from hfrisk import dashboards as dash
from hfrisk.stack.process import free_port

from tests.integration.dashboard_queries import (
    prometheus_panel_results,
    redis_panel_results,
    run_redis,
    titled,
)

pytestmark = pytest.mark.integration

BOARDS = dash.build_dashboards()
RATE_WINDOW = "30s"
# The bundled model's risk scale: the percentile and absolute risk the worker stores with a score,
# and the reference bins of model monitoring.
RISK_SCALE = load_card(Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk").risk_scale


# -- Prometheus ---------------------------------------------------------------------------------------


# Growth per second of each Triton counter (1 when not listed): 8 inferences per execution.
_TRITON_STEP = {"nv_inference_count": 24, "nv_inference_exec_count": 3, "nv_inference_request_failure": 0.1,
                "nv_inference_queue_duration_us": 150, "nv_inference_compute_infer_duration_us": 900,
                "nv_inference_request_duration_us": 1200}


class _TritonMetrics:
    """Triton's counters under their real names (no ``_total`` suffix), growing on every scrape."""

    NAMES = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
             "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
             "nv_inference_request_duration_us")

    def __init__(self):
        self.started = time.monotonic()

    def collect(self):
        elapsed = time.monotonic() - self.started
        for name in self.NAMES:
            metric = Metric(name, f"Triton {name}", "unknown")
            metric.add_sample(name, {"model": "hfrisk", "version": "1"}, 10 + elapsed * 10 * _TRITON_STEP.get(name, 1))
            yield metric


# Model monitoring: scored windows per reference bin and refused windows of two devices, written
# once (constant counters, so the recorded shares and PSI are exact); a third device refuses every
# window, all the time.
MONITORED = {"monitor-live-a": ([20] * 10, 10), "monitor-live-b": ([60] + [0] * 8 + [180], 60)}
ALWAYS_REFUSED = "monitor-live-c"


def _monitoring_window(device: str, log_risk: float | None) -> WindowResult:
    return WindowResult(patient_id=f"p-{device}", window_id="w", window_start_us=0, window_end_us=1,
                        fit_to_score=log_risk is not None, quality_score=0.5,
                        quality_reasons=() if log_risk is not None else ("noisy", "too_few_beats"),
                        log_risk=log_risk, device_id=device)


def _feed_monitor(monitor: ModelMonitor) -> None:
    edges = monitor.bins.edges
    # A score in each bin: its lower edge (the first bin: below the first edge).
    in_bin = [edges[0] - 1.0] + list(edges)
    for device, (per_bin, refused) in MONITORED.items():
        for i, count in enumerate(per_bin):
            for _ in range(count):
                monitor.observe(_monitoring_window(device, float(in_bin[i])))
        for _ in range(refused):
            monitor.observe(_monitoring_window(device, None))


def _worker_step(metrics: StreamMetrics):
    """A function that moves every worker metric a step, as a busy worker would."""
    rng = np.random.default_rng(0)
    monitor = ModelMonitor(metrics, risk_scale=RISK_SCALE)
    _feed_monitor(monitor)

    def step() -> None:
        for outcome, n in (("accepted", 12), ("duplicate", 1), ("late", 1), ("dead_letter", 1)):
            metrics.chunks.labels(outcome=outcome).inc(n)
        for outcome, n in (("scored", 3), ("low_quality", 1), ("skipped", 1), ("dead_letter", 1)):
            metrics.windows.labels(outcome=outcome).inc(n)
        metrics.dead_letters.labels(reason="bad_schema").inc()
        metrics.alerts.labels(kind="raised").inc()
        metrics.alerts.labels(kind="cleared").inc()
        metrics.triton_latency.observe(float(rng.uniform(0.002, 0.02)))
        metrics.end_to_end_latency.observe(float(rng.uniform(0.5, 3.0)))
        metrics.batch_size.observe(int(rng.integers(1, 33)))
        for partition in range(4):
            metrics.consumer_lag.labels(partition=str(partition)).set(int(rng.integers(0, 50)))
        metrics.patients_active.set(8)
        monitor.observe(_monitoring_window(ALWAYS_REFUSED, None))

    return step


@pytest.fixture
def scraped_metrics(prometheus_server):
    """The worker's StreamMetrics and Triton's counters served on loopback, changing every 0.2 s,
    scraped under the job names of the compose deployment."""
    metrics = StreamMetrics()  # the worker's own metric definitions
    step = _worker_step(metrics)
    worker_port = free_port("127.0.0.1")
    metrics.serve(worker_port, "127.0.0.1")
    triton_registry = CollectorRegistry()
    triton_registry.register(_TritonMetrics())
    triton_server = start_http_server(0, addr="127.0.0.1", registry=triton_registry)[0]
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.2):
            step()

    step()
    ticker = threading.Thread(target=run, daemon=True)
    ticker.start()
    targets = {dash.PROMETHEUS_JOBS["worker"]: worker_port, dash.PROMETHEUS_JOBS["triton"]: triton_server.server_port}
    for job, port in targets.items():
        prometheus_server.add_targets(job, [f"127.0.0.1:{port}"])
    try:
        yield prometheus_server
    finally:
        stop.set()
        for job in targets:
            prometheus_server.remove_job(job)
        metrics.close()
        triton_server.shutdown()
        triton_server.server_close()


def test_every_prometheus_panel_returns_data(scraped_metrics):
    prom = scraped_metrics
    # Rates need two scrapes of growing counters inside the window.
    prom.wait_for(f"histogram_quantile(0.5, sum by (le) (rate(hfrisk_triton_latency_seconds_bucket[{RATE_WINDOW}]))) > 0",
                  timeout_s=60)
    prom.wait_for(f"rate(nv_inference_exec_count[{RATE_WINDOW}]) > 0", timeout_s=30)
    values = {"__rate_interval": RATE_WINDOW, "__range": "5m", "__interval": "5s"}
    results = prometheus_panel_results(prom.query, BOARDS["operations"], values, timeout_s=30)
    assert len(results) >= 15
    # Spot-check that the numbers mean what the panels say.
    by_outcome = {s["metric"]["outcome"] for s in titled(results, "Chunks by outcome")[0]}
    assert by_outcome == {"accepted", "duplicate", "late", "dead_letter"}
    partitions = titled(results, "Consumer lag by partition")[0]
    assert sorted(s["metric"]["partition"] for s in partitions) == ["0", "1", "2", "3"]
    jobs = {s["metric"]["job"]: float(s["value"][1]) for s in titled(results, "Scrape targets up")[0]}
    assert jobs == {"worker": 1.0, "triton": 1.0}
    batching = float(titled(results, "Triton batching")[0][0]["value"][1])
    assert batching == pytest.approx(24 / 3, rel=0.05)  # inferences per execution
    _check_model_monitoring(prom, results)


def _values(series: list[dict], label: str) -> dict[str, float]:
    # Only this test's devices: other tests may have scraped workers into the same Prometheus.
    return {s["metric"][label]: float(s["value"][1]) for s in series
            if s["metric"].get("device", "monitor-live").startswith("monitor-live")}


def _check_model_monitoring(prom, results) -> None:
    """The monitoring panels' numbers against the windows fed to the worker's monitor, computed
    here from their definitions (PSI: scipy's symmetrised Kullback-Leibler divergence)."""
    refused = _values(titled(results, "Windows refused by the quality gate, by device")[0], "device")
    assert refused == {"monitor-live-a": pytest.approx(10 / 210), "monitor-live-b": pytest.approx(60 / 300),
                       ALWAYS_REFUSED: 1.0}
    reasons = {(s["metric"]["device"], s["metric"]["reason"])
               for s in titled(results, "Refusal reasons by device")[0]}
    assert {(ALWAYS_REFUSED, "noisy"), ("monitor-live-b", "too_few_beats")} <= reasons
    reference = ScoreBins.from_reference(RISK_SCALE.reference).reference_share
    k = PSI_PSEUDOCOUNT
    expected_psi = {}
    for device, (per_bin, _) in MONITORED.items():
        counts = np.asarray(per_bin, dtype=float)
        p = (counts + k) / (counts.sum() + k * len(counts))
        expected_psi[device] = float(entropy(p, reference) + entropy(reference, p))
    psi = _values(titled(results, "Score drift by device (PSI against the reference cohort)")[0], "device")
    assert psi == {d: pytest.approx(v, rel=1e-9) for d, v in expected_psi.items()}
    assert psi["monitor-live-b"] > MonitoringSettings().drift_alert_psi > psi["monitor-live-a"]
    fleet = np.sum([per_bin for per_bin, _ in MONITORED.values()], axis=0)
    ratio = _values(titled(results, "Scores per reference bin, all devices (1 = as in the reference cohort)")[0], "bin")
    assert ratio == {bin_label(i): pytest.approx(fleet[i] / fleet.sum() / reference[i], rel=1e-9)
                     for i in range(len(fleet))}
    # The alerts are evaluated: pending on the device that drifted and the one that refuses
    # everything (each must hold for alert_for before it fires), on no other.
    for alert, device in (("HfriskDeviceScoreDrift", "monitor-live-b"), ("HfriskDeviceRefusals", ALWAYS_REFUSED)):
        pending = prom.wait_for(f'ALERTS{{alertname="{alert}",device=~"monitor-live.*"}}', timeout_s=30)
        assert [(s["metric"]["device"], s["metric"]["alertstate"]) for s in pending] == [(device, "pending")]


# -- Redis ----------------------------------------------------------------------------------------------


T0_US = (time.time_ns() // 1000) - 3_600_000_000  # an hour ago, so the windows sit in the time range
HOP_US = 5_000_000


def _result(patient: str, k: int, log_risk: float | None, *, fit: bool = True) -> WindowResult:
    start = T0_US + k * HOP_US
    weights = np.linspace(1, 3, len(CANONICAL_LEADS))
    return WindowResult(
        patient_id=patient, window_id=window_id(T0_US, k), window_start_us=start, window_end_us=start + 10_000_000,
        fit_to_score=fit, quality_score=0.9 if fit else 0.2,
        quality_reasons=() if fit else ("noisy", "too_few_beats"), log_risk=log_risk, n_beats_detected=12, n_beats_used=12,
        heart_rate_bpm=71.0, lead_attention=tuple(float(w) for w in weights / weights.sum()),
        temporal_attention=tuple([1 / 19] * 19), model_version="live-test", scored_at_us=start + 10_300_000,
        device_id=f"monitor-{patient}", bed=patient.upper(), **risk_terms(log_risk if fit else None, RISK_SCALE),
    )


@pytest.fixture
def ward(redis_server):
    """Three patients written by the real sink under a fresh prefix: bed-1 flagged (three windows
    over the threshold), with a noisy window and a gap; bed-2 low risk; bed-3 only unfit windows."""
    prefix = f"dash{uuid.uuid4().hex[:8]}"
    with redis_server.client() as client:
        sink = RedisSink(client, prefix, policy=AlertPolicy(threshold=1.0, clear_threshold=0.8, min_windows=2))
        for k, risk in enumerate([1.3, 1.6, 1.9]):
            sink.write_window_result(_result("bed-1", k, risk))
        sink.write_window_result(_result("bed-1", 3, None, fit=False))
        sink.write_skipped(SkippedWindows("bed-1", 0, T0_US, 4, 6, T0_US + 4 * HOP_US, SkipReason.TIME_GAP,
                                          "no signal for 12 s", (T0_US + 20_000_000, T0_US + 32_000_000), None))
        for k, risk in enumerate([0.1, 0.2]):
            sink.write_window_result(_result("bed-2", k, risk))
        sink.write_window_result(_result("bed-3", 0, None, fit=False))
        # RESP2 replies as they come off the wire (flat lists of bytes), which is what the plugin
        # (radix, RESP2) parses: no RESP3 maps and pairs, no redis-py per-command reshaping.
        with redis_server.client(protocol=2) as raw:
            raw.response_callbacks.clear()
            yield raw, prefix
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def test_every_redis_panel_and_variable_returns_data(ward):
    client, prefix = ward
    now_ms = time.time_ns() // 1_000_000
    values = {"prefix": prefix, "patient": "bed-1", "patients": "bed-1",
              "__from": str(now_ms - 6 * 3_600_000), "__to": str(now_ms + 60_000)}
    results = redis_panel_results(client, BOARDS["ward"], values)

    # The patient variable lists the riskiest first; the quality one every patient seen.
    assert results["$patient (variable)"] == [b"bed-1", b"bed-2"]
    assert sorted(results["$patients (variable)"]) == [b"bed-1", b"bed-2", b"bed-3"]
    # Ranking: member/score pairs as the plugin's ZRANGE turns into a field per patient.
    ranking = dict(zip(results["Patients by current risk"][::2], results["Patients by current risk"][1::2]))
    assert {k: float(v) for k, v in ranking.items()} == {b"bed-1": 1.9, b"bed-2": 0.2}
    assert results["Flagged now"][::2] == [b"bed-1"]
    assert results["Alert state"] == b"1"
    # The newest score in clinical terms: the fields the "Current risk" panel picks by name.
    latest = dict(zip(results["Current risk"][::2], results["Current risk"][1::2]))
    assert float(latest[b"risk_percentile"]) == pytest.approx(float(RISK_SCALE.percentile(1.9)))
    assert float(latest[b"absolute_risk"]) == pytest.approx(float(RISK_SCALE.absolute_risk_at_horizon(1.9)))
    assert float(latest[b"absolute_risk_horizon_days"]) == RISK_SCALE.absolute_risk.horizon_days
    current = next(p for p in BOARDS["ward"]["panels"] if p["title"] == "Current risk")
    picked = re.compile(current["options"]["reduceOptions"]["fields"].strip("/"))
    assert {"risk_percentile", "absolute_risk", "absolute_risk_horizon_days"} <= {
        k.decode() for k in latest if picked.match(k.decode())}
    events = results["Alert events"]
    assert [dict(zip(e[1][::2], e[1][1::2]))[b"kind"] for e in events] == [b"raised"]


def test_trend_members_split_with_the_panels_regex(ward):
    client, prefix = ward
    trend = next(p for p in BOARDS["ward"]["panels"] if p["title"] == "Risk trend")
    regex = next(t["options"]["regExp"] for t in trend["transformations"] if t["id"] == "extractFields")
    pattern = re.compile(regex.strip("/").replace("(?<", "(?P<"))
    command = dash.panel_queries(BOARDS["ward"], {"prefix": prefix, "patient": "bed-1"})
    rows = run_redis(client, next(q.query for q in command if q.title == "Risk trend"))
    points = [(pattern.match(m.decode()).groupdict(), float(s)) for m, s in zip(rows[::2], rows[1::2])]
    assert [(p["window_id"], float(p["log_risk"])) for p, _ in points] == [
        (window_id(T0_US, k), risk) for k, risk in enumerate([1.3, 1.6, 1.9])
    ]
    # Scores are window starts in epoch ms: what the panel converts to its time axis.
    assert [score for _, score in points] == [(T0_US + k * HOP_US) / 1000 for k in range(3)]


def test_json_fields_the_panels_extract_parse(ward):
    client, prefix = ward
    queries = {q.title: q.query for q in dash.panel_queries(BOARDS["ward"], {"prefix": prefix, "patient": "bed-1"})}
    lead_attention = json.loads(run_redis(client, queries["Lead attention"]))
    assert list(lead_attention) == list(CANONICAL_LEADS)
    assert sum(lead_attention.values()) == pytest.approx(1, abs=1e-4)
    assert len(json.loads(run_redis(client, queries["Where in the beat the network looked"]))) == 19
    for title in ("Low-quality windows", "Data gaps"):
        rows = run_redis(client, queries[title])
        assert all(isinstance(json.loads(member), dict) for member in rows[::2]), title
    reasons = run_redis(client, queries["Why windows were not scored"])
    assert dict(zip(reasons[::2], reasons[1::2])) == {b"noisy": b"2", b"too_few_beats": b"2"}
