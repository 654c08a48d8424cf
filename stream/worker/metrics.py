"""Prometheus metrics of the stream worker, served on ``StreamSettings.metrics_port``.

The names and labels are a contract with the dashboards (Grafana queries them by name); change
them only together with the dashboards:

=====================================  =========  ==========================================================
metric                                 type       meaning
=====================================  =========  ==========================================================
``hfrisk_chunks_total{outcome}``       counter    chunk messages by outcome: ``accepted`` (placed in a
                                                  patient's buffer, or waiting there for an earlier one),
                                                  ``duplicate`` (already had it: a redelivery),
                                                  ``late`` (arrived after being declared lost),
                                                  ``dead_letter`` (refused: see the reason counter)
``hfrisk_windows_total{outcome}``      counter    windows by outcome: ``scored``, ``low_quality`` (not fit
                                                  to score, stored without a score), ``skipped`` (the grid
                                                  defined them but there was no signal: gaps, rate
                                                  changes), ``dead_letter`` (preprocessing or Triton
                                                  refused the window)
``hfrisk_dead_letters_total{reason}``  counter    dead-lettered messages and windows by reason code
                                                  (:mod:`hfrisk.stream.messages.dead_letter`)
``hfrisk_alerts_total{kind}``          counter    alert events first produced (``raised`` / ``cleared``);
                                                  re-sends after a redelivery are not counted
``hfrisk_triton_latency_seconds``      histogram  one Triton call (one micro-batch, split by RiskClient
                                                  into requests of at most ``max_batch``)
``hfrisk_end_to_end_latency_seconds``  histogram  acquisition time of a window's last sample -> its
                                                  result committed to Redis (first writes only)
``hfrisk_batch_size``                  histogram  windows sent to Triton per call (the cross-patient
                                                  micro-batch that reaches the model)
``hfrisk_consumer_lag{partition}``     gauge      chunk messages on the partition not yet processed
                                                  (high watermark - next offset to process)
``hfrisk_patients_active``             gauge      patients whose window buffers this worker holds
``hfrisk_device_windows_total``        counter    windows first written, by ``device`` and ``outcome``
``{device,outcome}``                              (``scored`` / ``low_quality``: refused by the quality gate)
``hfrisk_device_refusals_total``       counter    refused windows by ``device`` and quality ``reason`` (a
``{device,reason}``                               window may give several reasons)
``hfrisk_device_score_bins_total``     counter    scored windows by ``device`` and ``bin`` of the reference
``{device,bin}``                                  cohort's quantiles (:mod:`hfrisk.stream.worker.monitoring`)
``hfrisk_score_reference_share{bin}``  gauge      the reference cohort's share in each bin (from the card)
=====================================  =========  ==========================================================

``device`` takes a bounded set of values (``MonitoringSettings``: named devices, the first
``max_devices`` others, then ``other``); Prometheus turns the per-device counters into refusal
shares and the drift statistic (:mod:`hfrisk.dashboards.rules`, docs/monitoring.md).

Every label value listed above is created at zero on start, so a dashboard shows 0 rather than
"no data" before the first event of a kind. Each :class:`StreamMetrics` has its own registry
(tests make several); :meth:`StreamMetrics.serve` exposes it over HTTP.

Example::

    metrics = StreamMetrics()
    metrics.serve(8003)                          # http://127.0.0.1:8003/metrics
    metrics.chunks.labels(outcome="accepted").inc()
    metrics.value("hfrisk_chunks_total", outcome="accepted")   # 1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["StreamMetrics", "CHUNK_OUTCOMES", "WINDOW_OUTCOMES", "ALERT_KINDS"]

CHUNK_OUTCOMES = ("accepted", "duplicate", "late", "dead_letter")
WINDOW_OUTCOMES = ("scored", "low_quality", "skipped", "dead_letter")
ALERT_KINDS = ("raised", "cleared")

# Triton calls take ~1 ms (one window) to ~100 ms (a full batch on a busy CPU); retries go further.
_TRITON_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A window is complete one chunk (~1 s) after its last sample is acquired at the earliest; the
# ward target is seconds, a backlog shows up as minutes.
_E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class StreamMetrics:
    """The worker's metrics in their own :class:`CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.chunks = Counter("hfrisk_chunks_total", "Chunk messages by outcome.", ["outcome"], registry=r)
        self.windows = Counter("hfrisk_windows_total", "Windows by outcome.", ["outcome"], registry=r)
        self.dead_letters = Counter(
            "hfrisk_dead_letters_total", "Dead-lettered messages and windows by reason.", ["reason"], registry=r
        )
        self.alerts = Counter("hfrisk_alerts_total", "Alert events produced, by kind.", ["kind"], registry=r)
        self.triton_latency = Histogram(
            "hfrisk_triton_latency_seconds", "Seconds per Triton call (one micro-batch).",
            buckets=_TRITON_BUCKETS, registry=r,
        )
        self.end_to_end_latency = Histogram(
            "hfrisk_end_to_end_latency_seconds",
            "Acquisition of a window's last sample to its result in Redis, seconds.",
            buckets=_E2E_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "hfrisk_batch_size", "Windows per Triton call.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.consumer_lag = Gauge(
            "hfrisk_consumer_lag", "Chunk messages not yet processed, per partition.", ["partition"], registry=r
        )
        self.patients_active = Gauge(
            "hfrisk_patients_active", "Patients whose window buffers this worker holds.", registry=r
        )
        self.device_windows = Counter(
            "hfrisk_device_windows_total", "Windows first written, by device and outcome.", ["device", "outcome"],
            registry=r,
        )
        self.device_refusals = Counter(
            "hfrisk_device_refusals_total", "Windows refused by the quality gate, by device and reason.",
            ["device", "reason"], registry=r,
        )
        self.device_score_bins = Counter(
            "hfrisk_device_score_bins_total", "Scored windows by device and bin of the reference cohort's quantiles.",
            ["device", "bin"], registry=r,
        )
        self.score_reference_share = Gauge(
            "hfrisk_score_reference_share", "The reference cohort's share in each score bin.", ["bin"], registry=r
        )
        for outcome in CHUNK_OUTCOMES:
            self.chunks.labels(outcome=outcome)
        for outcome in WINDOW_OUTCOMES:
            self.windows.labels(outcome=outcome)
        for kind in ALERT_KINDS:
            self.alerts.labels(kind=kind)
        self._server = None

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample (0.0 if it does not exist yet): for tests and logs."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` from a daemon thread (loopback unless told otherwise)."""
        if self._server is not None:
            raise RuntimeError("metrics are already served")
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()
