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


def test_the_overhead_section_says_where_each_consumer_spent_its_cpu_when_the_report_has_it():
    report = json.loads(PAGE.read_text())
    n = report["noop_vs_raw"]
    for key in ("raw_cores", "raw_stock_cores", "floor_cores", "noop_cores", "noop_model_only_cores"):
        n.pop(key, None)
    assert "| consumer | main thread |" not in markdown(report)  # a report from before the figures
    n["raw_cores"] = {"main thread": 0.61, "other threads": 0.3, "machine (all processes)": 1.05}
    n["noop_cores"] = {"main thread": 0.65, "other threads": 0.25, "machine (all processes)": 1.26}
    lines = markdown(report).splitlines()
    assert "| raw Faust consumer | 0.61 | 0.30 | 0.91 | 1.05 |" in lines
    assert "| worker --noop-model --noop-prep | 0.65 | 0.25 | 0.90 | 1.26 |" in lines
    assert not any(line.startswith("| worker --noop-model only |") for line in lines)
    assert not any(line.startswith("| raw Faust consumer, Faust as it comes |") for line in lines)
    n["raw_stock_cores"] = {"main thread": 0.78, "other threads": 0.25, "machine (all processes)": 1.21}
    assert "| raw Faust consumer, Faust as it comes | 0.78 | 0.25 | 1.03 | 1.21 |" in markdown(report).splitlines()


def test_the_throughput_section_says_where_the_cpu_went_while_the_backlog_drained():
    report = json.loads(PAGE.read_text())
    for row in report["throughput"]:
        row.pop("drain_cpu_cores", None)
    assert "backlog drained" not in markdown(report)
    report["throughput"][0]["drain_cpu_cores"] = {"Kafka broker": 0.1, "worker + pool": 1.5, "machine (all processes)": 1.9}
    lines = markdown(report).splitlines()
    at = next(i for i, line in enumerate(lines) if "while the backlog drained after the replay ended" in line)
    assert lines[at + 2] == "| beds | Kafka broker | worker + pool | other | machine busy |"
    assert lines[at + 4] == f"| {report['throughput'][0]['beds']} | 0.10 | 1.50 | 0.30 | 1.90 |"


def test_the_reference_measured_before_and_after_the_runs_is_their_mean_and_the_page_gives_both():
    from bench.bench_stream import bracketed, efficiency

    before = {"ort_batched_windows_per_s": 800.0, "prepare_ms_per_window": 2.0,
              "prepare_plus_ort_windows_per_s": 300.0, "prepare_windows_timed": 960}
    after = {"ort_batched_windows_per_s": 700.0, "prepare_ms_per_window": 2.4,
             "prepare_plus_ort_windows_per_s": 260.0, "prepare_windows_timed": 864}
    reference = bracketed(before, after)
    assert reference["prepare_plus_ort_windows_per_s"] == 280.0
    assert reference["prepare_ms_per_window"] == 2.2 and reference["ort_batched_windows_per_s"] == 750.0
    assert efficiency({"steady_windows_per_s": 336.0}, reference, 2) == 0.6

    report = json.loads(PAGE.read_text())
    report["offline"] = reference
    page = markdown(report)
    assert "300.0 and 260.0 windows/s; the reference is their mean, **280.0 windows/s**" in page
    assert "over 960 and 864 windows" in page
    assert "steady / 560.0" in verdict(report)


def test_the_overhead_section_gives_the_ratio_against_stock_faust_beside_the_goals_when_measured():
    report = json.loads(PAGE.read_text())
    n = report["noop_vs_raw"]
    n |= {"raw_faust_chunks_per_s": 10000.0, "noop_pipeline_chunks_per_s": 2500.0, "ratio": 0.25,
          "raw_stock_faust_chunks_per_s": 5000.0, "ratio_to_stock": 0.5, "ratio_noop_model_only_to_stock": 0.25}
    page = markdown(report)
    assert "(issue #15) = worker with no-op model and no-op preprocessing / raw Faust consumer = 0.250" in page
    assert "(`HFRISK_STREAM__EAGER_DELIVERY=false`, 5000.0 chunks/s" in page
    assert "the no-op worker's ratio is 0.500 and the no-op-model worker's 0.250" in page
    for key in ("raw_stock_faust_chunks_per_s", "ratio_to_stock", "ratio_noop_model_only_to_stock"):
        n.pop(key)
    assert "Against a raw consumer on Faust as it comes" not in markdown(report)


def test_the_overhead_section_gives_the_floor_and_what_the_goal_leaves_beyond_it_when_measured():
    report = json.loads(PAGE.read_text())
    n = report["noop_vs_raw"]
    for key in ("floor_chunks_per_s", "floor_cores", "ratio_floor"):
        n.pop(key, None)
    assert "**The floor**" not in markdown(report)  # a report from before the floor consumer
    # 1.0 core at 10,000 chunks/s: 100 µs a chunk; the goal (0.5) then allows 100 µs beyond it.
    n |= {"raw_faust_chunks_per_s": 10000.0, "raw_cores": {"main thread": 0.6, "other threads": 0.4},
          "floor_chunks_per_s": 6000.0, "ratio_floor": 0.6, "floor_cores": {"main thread": 0.8, "other threads": 0.4}}
    page = markdown(report)
    assert "read 6000.0 chunks/s over the same messages, **0.600** of the raw consumer." in page
    # 1.2 cores at 6,000 chunks/s: 200 µs, 100 of them beyond the raw consumer's, 0 left.
    assert "Its process spent 200 µs of CPU a chunk against the raw consumer's 100." in page
    assert "has 100 µs a chunk beyond the raw consumer's work; the floor takes 100 of them, which leaves 0 µs" in page
    assert "| floor consumer | 0.80 | 0.40 | 1.20 | 0.00 |" in page.splitlines()
    n["floor_cores"] = {}
    page = markdown(report)
    assert "**0.600** of the raw consumer." in page and "Its process spent" not in page


def test_the_page_says_the_part_size_its_workers_ran_with_when_the_report_has_it():
    report = json.loads(PAGE.read_text())
    report["worker"].pop("part_windows", None)
    assert "parts of at most" not in markdown(report)  # a report from before it was recorded
    report["worker"]["part_windows"] = 32
    worker = next(line for line in markdown(report).splitlines() if line.startswith("Model: "))
    assert "a batch scored while the last one is written, parts of at most 32 windows to the pool and Triton, hop" \
        in worker


def test_a_runs_p95_is_given_for_each_10_s_of_its_windows_in_order():
    from bench.bench_stream import p95_by_stretch
    from hfrisk.testing.realtime import window_due_us, window_latencies_s

    start = 1_700_000_000_000_000
    records = []
    for k in range(30):  # a window due every second; the first 10 s written 2 s late, the rest 0.1 s
        window_start = start + k * 1_000_000
        due = window_due_us(window_start, 10.0)
        records.append({"window_start_us": window_start, "written_at_us": due + (2_000_000 if k < 10 else 100_000)})
    records.reverse()  # the order Redis gives them in is no order
    latencies = window_latencies_s(records, 10.0)
    assert p95_by_stretch(records, latencies, 10.0) == [2.0, 0.1, 0.1]
    assert p95_by_stretch([], [], 10.0) == []


def test_the_real_time_section_gives_the_warm_up_apart_and_each_runs_stretches_and_jit():
    report = json.loads(PAGE.read_text())
    report.pop("realtime_warmup", None)
    for row in report["realtime"]:
        row.pop("p95_by_10s", None)
        row.pop("broker_jit_cores", None)
    page = markdown(report)
    assert "Warm-up, not counted" not in page
    row = report["realtime"][0]
    first = next(line for line in page.splitlines() if line.startswith(f"| {row['stagger_s']:g} | {row['beds']} | "))
    assert first.endswith("|  |  |")  # a page from before the figures: blank, not made up

    row |= {"p95_by_10s": [1.5, 0.25], "broker_jit_cores": 0.14}
    report["realtime_warmup"] = row | {"beds": 1000, "seconds": 90.0, "broker_jit_cores": 0.15,
                                       "cpu_cores": {"Kafka broker": 0.31}}
    page = markdown(report)
    first = next(line for line in page.splitlines() if line.startswith(f"| {row['stagger_s']:g} | {row['beds']} | "))
    assert first.endswith("| 1.50 · 0.25 | 0.14 |")
    warm = next(line for line in page.splitlines() if line.startswith("**Warm-up, not counted:**"))
    assert "1000 beds for 90 s" in warm and "kept 0.15 cores busy, the broker 0.31" in warm
