"""What a written batch sends and counts: its records for the output topics and its metrics.

Alert events go out with every write of their window, a redelivery included (the first attempt
may have died before they reached Kafka); metrics count first writes only.
"""

from __future__ import annotations

from collections import Counter

from hfrisk.core.logs import get_logger
from hfrisk.stream.messages.chunk import message_key
from hfrisk.stream.messages.scores import score_record
from hfrisk.stream.sinks import WindowResult, WriteOutcome
from hfrisk.stream.windowing import Window
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.worker.monitoring import ModelMonitor
from hfrisk.stream.worker.records import BatchReport, ChunkRecord, OutboundMessage

__all__ = ["Scored", "Written", "outbound_messages", "count_batch"]

log = get_logger(__name__)

# A window's result with the window and the message that completed it.
Scored = tuple[WindowResult, Window, ChunkRecord]
# The sink's answer for a window and when it was written (µs since the epoch).
Written = tuple[WriteOutcome, int]


def outbound_messages(results: list[Scored], written: list[Written], report: BatchReport) -> list[OutboundMessage]:
    """Alert events, one score record per window, then the batch's dead letters."""
    messages: list[OutboundMessage] = []
    for (result, _, record), (outcome, _) in zip(results, written):
        key = message_key(result.patient_id)
        # A redelivered window hands back the events of its first write: re-sent, since the
        # first attempt may have died before they reached Kafka.
        for event in outcome.events:
            messages.append(OutboundMessage("alerts", key, event.to_json()))
            report.events.append(event)
        value = score_record(result, redelivered=outcome.duplicate, chunk_timestamp_ms=record.timestamp_ms)
        messages.append(OutboundMessage("scores", key, value))
    for letter in report.dead_letters:
        messages.append(OutboundMessage("dead_letter", letter.key, letter.value, letter.headers()))
    return messages


def count_batch(metrics: StreamMetrics, results: list[Scored], written: list[Written], report: BatchReport,
                monitor: ModelMonitor | None = None) -> None:
    """Fill ``report`` and the metrics (and ``monitor``'s per-device counts) with the batch's
    outcomes (first writes only)."""
    m = metrics
    for (result, window, _), (outcome, written_us) in zip(results, written):
        report.results.append(result)
        report.outcomes.append(outcome)
        if outcome.duplicate:
            continue  # counted when it was first written
        kind = "scored" if result.scored else "low_quality"
        report.windows[kind] += 1
        m.windows.labels(outcome=kind).inc()
        if monitor is not None:
            monitor.observe(result)
        for event in outcome.events:
            m.alerts.labels(kind=event.kind.value).inc()
        last_sample_us = window.end_us - round(1e6 / window.ecg.fs_hz)
        m.end_to_end_latency.observe(max(0.0, (written_us - last_sample_us) / 1e6))
    report.windows["skipped"] += sum(len(s) for s in report.skipped)
    m.windows.labels(outcome="dead_letter").inc(report.windows["dead_letter"])
    for outcome, n in report.chunks.items():
        m.chunks.labels(outcome=outcome).inc(n)
    for letter in report.dead_letters:
        m.dead_letters.labels(reason=letter.reason).inc()
    if report.dead_letters:
        log.warning("dead-lettered", count=len(report.dead_letters),
                    reasons=dict(Counter(letter.reason for letter in report.dead_letters)))
