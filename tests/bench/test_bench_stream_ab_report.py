"""The A/B benchmark's real-time table (bench/bench_stream_ab.py): each round's p95 of every 10 s
beside its whole-run figures, so that a round slow only at its start reads apart from one that
falls behind."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench_stream_ab import markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "bench" / "two-workers" / "warmup-2026-12-07" / "ab-linger-896" / "stream-ab.json"


def rows_of(page: str) -> list[str]:
    """The runs' rows: ``| run | variant | ...``."""
    return [line for line in page.splitlines() if line.split("|")[2:3] in ([" a "], [" b "], [" warm-up "])]


def test_each_round_gives_its_p95_of_every_10_s_and_older_pages_leave_it_blank():
    report = json.loads(PAGE.read_text())
    late_start = next(row for row in report["rows"] if row["variant"] == "a" and row["latency_s"]["p95"] > 1)
    late_start["p95_by_10s"] = [2.5, 4.25, 0.5]
    lines = rows_of(markdown(report))
    assert len(lines) == len(report["rows"])
    assert any(line.endswith("| 2.50 · 4.25 · 0.50 |") for line in lines)
    for row in report["rows"]:
        row.pop("p95_by_10s", None)
    assert all(line.endswith("|  |") for line in rows_of(markdown(report)))
