"""How the Redis sink lays each value out, and how it reads it back (docs/redis-keys.md, "Conventions").

Hash fields are strings: numbers with ``repr`` (they read back as the same float), an absent value
as the empty string. JSON is compact with sorted keys, so the same record always serialises to the
same sorted-set member (a rewrite is then a no-op). Sorted-set scores that are times are epoch
milliseconds, the unit Grafana's Redis data source plots; Python values are µs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from hfrisk.model.contract.attention_weights import decode_lead_weights, encode_lead_weights
from hfrisk.stream.alerts.policy import AlertEvent
from hfrisk.stream.sinks.records import TrendPoint, WindowResult
from hfrisk.stream.windowing import SkippedWindows, us_to_datetime

__all__ = [
    "text", "num", "ms", "us", "compact_json", "now_us",
    "trend_member", "parse_trend_member", "latest_fields", "parse_latest", "quality_record", "parse_quality_record",
    "patient_fields",
    "window_record", "recorded_events", "gap_record", "alert_entry", "parse_alert_entry",
]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def num(value: float) -> str:
    return repr(float(value))


def ms(us_value: int) -> float:
    return us_value / 1000.0


def us(ms_value: float) -> int:
    return round(float(ms_value) * 1000)


def compact_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def now_us() -> int:
    return time.time_ns() // 1000


# -- per-patient values ------------------------------------------------------------------------


def trend_member(window_id: str, log_risk: float) -> str:
    return f"{window_id}:{num(log_risk)}"


def parse_trend_member(member: Any, score: float) -> TrendPoint:
    # Window ids hold no colon: the log-risk is after the last one.
    window_id, _, risk = text(member).rpartition(":")
    return TrendPoint(us(score), window_id, float(risk))


def latest_fields(r: WindowResult) -> dict[str, str]:
    """The ``latest`` hash of a scored window."""
    scored_at_us = r.scored_at_us if r.scored_at_us is not None else now_us()
    temporal = [round(float(w), 6) for w in r.temporal_attention] if r.temporal_attention is not None else None
    return {
        "patient_id": r.patient_id,
        "window_id": r.window_id,
        "window_start_us": str(r.window_start_us),
        "window_end_us": str(r.window_end_us),
        "window_start": us_to_datetime(r.window_start_us).isoformat(),
        "log_risk": num(r.log_risk),
        "hazard_ratio": num(r.hazard_ratio),
        "risk_percentile": _optional(r.risk_percentile),
        "absolute_risk": _optional(r.absolute_risk),
        "absolute_risk_horizon_days": _optional(r.absolute_risk_horizon_days),
        "quality_score": num(r.quality_score),
        "fit_to_score": "1" if r.fit_to_score else "0",
        "quality_reasons": compact_json(list(r.quality_reasons)),
        "n_beats_detected": str(r.n_beats_detected),
        "n_beats_used": str(r.n_beats_used),
        "heart_rate_bpm": "" if r.heart_rate_bpm is None else num(r.heart_rate_bpm),
        "lead_attention": encode_lead_weights(r.lead_names, r.lead_attention),
        "temporal_attention": compact_json(temporal),
        "model_version": r.model_version,
        "scored_at_us": str(scored_at_us),
        "scored_at": us_to_datetime(scored_at_us).isoformat(),
    }


def _optional(value: float | None) -> str:
    return "" if value is None else num(value)


def parse_latest(fields: Mapping) -> dict[str, Any]:
    """:func:`latest_fields` read back (bytes or str), with numbers, flags and JSON decoded.

    A hash written before beats were counted apart has one ``n_beats`` (the beats used): it reads
    as ``n_beats_used``, with ``n_beats_detected`` None (not known).
    """
    f = {text(k): text(v) for k, v in fields.items()}
    out: dict[str, Any] = _split_beat_count(dict(f))
    for name in ("window_start_us", "window_end_us", "scored_at_us"):
        out[name] = int(f[name])
    for name in ("n_beats_detected", "n_beats_used"):
        out[name] = int(out[name]) if out[name] not in (None, "") else None
    for name in ("log_risk", "hazard_ratio", "quality_score"):
        out[name] = float(f[name])
    out["heart_rate_bpm"] = float(f["heart_rate_bpm"]) if f["heart_rate_bpm"] else None
    # Absent from hashes written before the card had a risk scale; empty when it has none.
    for name in ("risk_percentile", "absolute_risk", "absolute_risk_horizon_days"):
        out[name] = float(f[name]) if f.get(name) else None
    out["fit_to_score"] = f["fit_to_score"] == "1"
    for name in ("quality_reasons", "temporal_attention"):
        out[name] = json.loads(f[name])
    out["lead_attention"] = decode_lead_weights(f["lead_attention"])  # {} when the model gave none
    return out


def quality_record(r: WindowResult) -> str:
    """The ``quality`` sorted-set member of a window not fit to score."""
    return compact_json({
        "window_id": r.window_id,
        "quality_score": round(r.quality_score, 6),
        "reasons": list(r.quality_reasons),
        "n_beats_detected": r.n_beats_detected,
        "n_beats_used": r.n_beats_used,
        "log_risk": r.log_risk,
    })


def parse_quality_record(member: Any) -> dict[str, Any]:
    """:func:`quality_record` read back; an older member's ``n_beats`` reads as ``n_beats_used``."""
    return _split_beat_count(json.loads(member))


def _split_beat_count(values: dict[str, Any]) -> dict[str, Any]:
    # Before beats detected and used were told apart, one ``n_beats`` counted the beats used.
    if "n_beats" in values and "n_beats_used" not in values:
        values["n_beats_used"] = values.pop("n_beats")
    values.setdefault("n_beats_used", None)
    values.setdefault("n_beats_detected", None)
    return values


def patient_fields(r: WindowResult, *, newest_seen: bool) -> dict[str, str]:
    """The ``patient`` hash fields a window sets (last-seen ones only if it is the newest seen)."""
    info = {"patient_id": r.patient_id}
    if r.device_id:
        info["device_id"] = r.device_id
    if r.bed:
        info["bed"] = r.bed
    if newest_seen:
        info |= {
            "last_window_id": r.window_id,
            "last_window_start_us": str(r.window_start_us),
            "last_seen_us": str(r.window_end_us),
            "last_seen": us_to_datetime(r.window_end_us).isoformat(),
            "last_quality_score": num(r.quality_score),
            "last_fit_to_score": "1" if r.fit_to_score else "0",
        }
    return info


def window_record(r: WindowResult, events: tuple[AlertEvent, ...]) -> str:
    """The idempotency record: the events are kept so that a redelivery can re-send them."""
    return compact_json({
        "window_id": r.window_id,
        "window_start_us": r.window_start_us,
        "scored": r.scored,
        "log_risk": r.log_risk,
        "events": [e.to_dict() for e in events],
        "written_at_us": now_us(),
    })


def recorded_events(record: Any) -> tuple[AlertEvent, ...]:
    """The alert events of a stored :func:`window_record`."""
    return tuple(AlertEvent.from_dict(e) for e in json.loads(record).get("events", []))


def gap_record(skipped: SkippedWindows) -> str:
    """The ``gaps`` sorted-set member of a run of windows never emitted."""
    return compact_json({
        "first_window_id": skipped.first_window_id,
        "windows": len(skipped),
        "reason": skipped.reason.value,
        "detail": skipped.detail,
        "hole_us": list(skipped.hole_us) if skipped.hole_us else None,
        "missing_sequences": list(skipped.missing_sequences) if skipped.missing_sequences else None,
    })


# -- ward values -------------------------------------------------------------------------------


def alert_entry(event: AlertEvent) -> dict[str, str]:
    """An ``alerts`` stream entry: the event's dict as strings."""
    return {f: text(v) for f, v in event.to_dict().items()}


def parse_alert_entry(fields: Mapping) -> AlertEvent:
    return AlertEvent.from_dict({text(f): text(v) for f, v in fields.items()})
