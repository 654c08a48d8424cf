"""The terminal ward view: patients ranked by current risk, flagged ones first, read from Redis."""

from __future__ import annotations

import math
import time

from rich.table import Table

from hfrisk.stream.sinks.redis_sink import RedisSink

__all__ = ["ward_table", "ward_rows"]


def ward_rows(sink: RedisSink, limit: int = 20) -> list[dict]:
    """One dict per patient in the ranking, riskiest first, with what the ward view shows."""
    flagged = sink.flagged()
    rows = []
    for patient_id, log_risk in sink.ranking(limit):
        view = sink.read_patient(patient_id)
        latest = view.latest or {}
        attention = latest.get("lead_attention") or {}
        rows.append(
            {
                "patient_id": patient_id,
                "log_risk": float(log_risk),
                "hazard_ratio": latest.get("hazard_ratio", math.nan),
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


def ward_table(sink: RedisSink, limit: int = 20, title: str = "Ward") -> Table:
    table = Table("patient", "log-risk", "HR x", "quality", "bpm", "windows", "low-q", "top lead", "status",
                  title=f"{title} — {time.strftime('%H:%M:%S')}")
    for row in ward_rows(sink, limit):
        bpm = row["heart_rate_bpm"]
        table.add_row(
            row["patient_id"], f"{row['log_risk']:+.2f}", f"{row['hazard_ratio']:.2f}", f"{row['quality']:.2f}",
            f"{bpm:.0f}" if bpm is not None else "", str(row["windows"]), str(row["low_quality"]), row["top_lead"],
            "[bold red]FLAGGED[/bold red]" if row["flagged"] else "",
        )
    return table
