"""The scores topic's record: one JSON value per window the worker wrote to Redis.

Key: the patient id (:func:`hfrisk.stream.messages.chunk.message_key`). Value: a JSON object with
``patient_id``, ``window_id``, ``window_start_us``, ``window_end_us``, ``scored``, ``fit_to_score``,
``log_risk`` (null unless scored), ``hazard_ratio``, ``risk_percentile`` and ``absolute_risk`` by
``absolute_risk_horizon_days`` (from the model card's risk scale; null without a score or a scale,
docs/score-scale.md), ``quality_score``, ``quality_reasons``,
``n_beats_detected`` (R peaks found), ``n_beats_used`` (beats in the median beat), ``heart_rate_bpm``
(from the detected beats), ``lead_attention`` (lead -> weight, the one wire form of
:mod:`hfrisk.model.contract.attention_weights`), ``model_version``, ``scored_at_us``, ``device_id``,
``chunk_timestamp_ms`` (Kafka timestamp of the chunk that completed the window) and
``redelivered`` (the window had been written before: a re-send). Consumers deduplicate on
``(patient_id, window_id)``.
"""

from __future__ import annotations

import json
from typing import Any

from hfrisk.model.contract.attention_weights import lead_weights

__all__ = ["score_record"]


def score_record(result: Any, *, redelivered: bool, chunk_timestamp_ms: int | None) -> bytes:
    """The JSON value of the scores-topic record of ``result``, a :class:`hfrisk.stream.sinks.WindowResult`
    (not imported: the topic formats sit below the sinks)."""
    record = {
        "patient_id": result.patient_id,
        "window_id": result.window_id,
        "window_start_us": result.window_start_us,
        "window_end_us": result.window_end_us,
        "scored": result.scored,
        "fit_to_score": result.fit_to_score,
        "log_risk": result.log_risk,
        "hazard_ratio": result.hazard_ratio,
        "risk_percentile": result.risk_percentile,
        "absolute_risk": result.absolute_risk,
        "absolute_risk_horizon_days": result.absolute_risk_horizon_days,
        "quality_score": result.quality_score,
        "quality_reasons": list(result.quality_reasons),
        "n_beats_detected": result.n_beats_detected,
        "n_beats_used": result.n_beats_used,
        "heart_rate_bpm": result.heart_rate_bpm,
        "lead_attention": lead_weights(result.lead_names, result.lead_attention),
        "model_version": result.model_version,
        "scored_at_us": result.scored_at_us,
        "device_id": result.device_id,
        "chunk_timestamp_ms": chunk_timestamp_ms,
        "redelivered": redelivered,
    }
    return json.dumps(record, separators=(",", ":")).encode()
