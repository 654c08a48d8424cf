"""The stream benchmark's verdict on stream efficiency (bench/bench_stream.py): a steady rate
measured over a moment (a batch or two coming out at once) must not meet the goal."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bench.bench_stream import MIN_STEADY_S, markdown, steady_span_s

PAGE = Path(__file__).resolve().parents[2] / "docs" / "bench" / "stream.json"


def verdict(report: dict) -> str:
    return next(line for line in markdown(report).splitlines() if line.startswith("**Stream efficiency**"))


def test_a_burst_of_windows_read_as_a_rate_does_not_meet_the_goal():
    report = json.loads(PAGE.read_text())
    reference = report["offline"]["prepare_plus_ort_windows_per_s"]
    rows = report["throughput"]
    for row in rows:
        row["steady_s"] = MIN_STEADY_S + 1
    rows[0] |= {"steady_windows_per_s": round(2 * reference * 0.9, 1), "steady_s": 0.1}  # 0.9 of the ideal
    assert "**not met**" in verdict(report)
    assert "too short to count" in markdown(report)

    counted = copy.deepcopy(report)
    counted["throughput"][0]["steady_s"] = MIN_STEADY_S
    assert "**met**" in verdict(counted)

    none_long_enough = copy.deepcopy(report)
    for row in none_long_enough["throughput"]:
        row["steady_s"] = 0.5
    assert "**not measured**" in verdict(none_long_enough)


def test_the_steady_span_starts_with_the_first_progress():
    samples = [(0.0, 0), (1.0, 0), (2.0, 0), (2.5, 10), (4.0, 40)]
    assert steady_span_s(samples) == 2.0  # from the last sample before progress (2.0 s) to the end
    assert steady_span_s([(0.0, 5), (1.0, 5)]) == 0.0
