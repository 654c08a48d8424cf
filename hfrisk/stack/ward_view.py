"""The terminal ward view (``hfrisk ward``): patients ranked by current risk, flagged ones first, read from Redis.

It reads through :class:`~hfrisk.stream.sinks.SinkReader`, so lead attention arrives decoded by
the one wire form (:func:`~hfrisk.model.contract.attention_weights.decode_lead_weights`).
"""

from __future__ import annotations

import math
import time

from rich.table import Table

from hfrisk.model.contract.attention_weights import decode_lead_weights
from hfrisk.stream.sinks import SinkReader

__all__ = ["ward_table", "ward_rows"]


def ward_rows(sink: SinkReader, limit: int = 20) -> list[dict]:
    """One dict per patient in the ranking, riskiest first, with what the ward view shows."""
    flagged = sink.flagged()
    rows = []
    for patient_id, log_risk in sink.ranking(limit):
        view = sink.read_patient(patient_id)
        latest = view.latest or {}
        attention = _lead_weights(latest.get("lead_attention"))
        rows.append(
            {
                "patient_id": patient_id,
                "log_risk": float(log_risk),
                "hazard_ratio": latest.get("hazard_ratio", math.nan),
                # From the served card's risk scale (None when it has none: docs/score-scale.md).
                "risk_percentile": latest.get("risk_percentile"),
                "absolute_risk": latest.get("absolute_risk"),
                "absolute_risk_horizon_days": latest.get("absolute_risk_horizon_days"),
                "quality": latest.get("quality_score", math.nan),
                "heart_rate_bpm": latest.get("heart_rate_bpm"),
                "windows": len(view.trend),
                "low_quality": len(view.low_quality),
                "top_lead": max(attention, key=attention.get) if attention else "",
                "flagged": patient_id in flagged,
                "window_start": latest.get("window_start", ""),
            }
        )
    rows.sort(key=lambda r: (not r["flagged"], -r["log_risk"]))
    return rows


def _lead_weights(value: dict[str, float] | str | None) -> dict[str, float]:
    # The sink decodes the stored JSON; a raw stored value (str) goes through the same decoder.
    return decode_lead_weights(value) if value is None or isinstance(value, str) else value


def ward_table(sink: SinkReader, limit: int = 20, title: str = "Ward") -> Table:
    rows = ward_rows(sink, limit)
    horizon = next((r["absolute_risk_horizon_days"] for r in rows if r["absolute_risk_horizon_days"]), None)
    risk_header = f"{horizon / 365.25:g}-y risk" if horizon else "abs. risk"
    table = Table("patient", "log-risk", "HR x", "pctl", risk_header, "quality", "bpm", "windows", "low-q", "top lead",
                  "status", title=f"{title} — {time.strftime('%H:%M:%S')}")
    for row in rows:
        bpm = row["heart_rate_bpm"]
        percentile, risk = row["risk_percentile"], row["absolute_risk"]
        table.add_row(
            row["patient_id"], f"{row['log_risk']:+.2f}", f"{row['hazard_ratio']:.2f}",
            f"{percentile:.1f}" if percentile is not None else "-", f"{risk:.1%}" if risk is not None else "-",
            f"{row['quality']:.2f}",
            f"{bpm:.0f}" if bpm is not None else "", str(row["windows"]), str(row["low_quality"]), row["top_lead"],
            "[bold red]FLAGGED[/bold red]" if row["flagged"] else "",
        )
    return table
