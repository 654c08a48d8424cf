"""bench/bench_faults.py without servers: its options and its two reports (docs/reliability.md's
generated block, docs/bench/faults-at-load-<beds>.md) from made-up rows."""

from __future__ import annotations

import pytest

from bench import bench_faults
from bench.record import write_marked_block


def row(fault: str, **load) -> dict:
    base = {"fault": fault, "what": f"{fault} happened", "fault_s": 12.3, "expected": 40, "written": 40,
            "duplicates": 0, "missing": 0, "wrong_scores": 0, "alerts_consistent": True, "during_fault": 0,
            "recover_first_s": 0.4, "recover_drained_s": 3.0, "redelivered": 2, "dead_letters": 0,
            "notes": ["w exit 0"], "load_average": [1.0, 1.0, 1.0]}
    if load:
        base["load"] = {"fault_at_s": 20.0, "stream_s": 60.0, "latency_s": {"p50": 0.3, "p95": 0.6, "max": 9.0},
                        "feed_max_lag_s": 0.01, "feed_errors": 0, "first_s": 0.4, "drained_s": 3.0, "back_s": None,
                        "peak_latency_s": 9.0, "peak_backlog": 120, "before_p95_s": 0.55, "after_p95_s": None} | load
    return base


def result(rows: dict, **extra) -> dict:
    return {"command": ".venv/bin/python -m bench.bench_faults", "when": "now", "repeats": 1,
            "machine": {"cpus": 2, "load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.2, 0.2]},
            "faults": rows} | extra


def test_load_report_has_a_row_per_fault_and_says_never():
    r = result({"baseline": [row("baseline", back_s=0.0, after_p95_s=0.6)],
                "triton": [row("triton", back_s=None), row("triton", back_s=8.0, after_p95_s=0.7)]},
               beds=16, duration_s=60.0, fault_at_s=20.0, down_s=10.0, windows=40, alert_events=4)
    text = bench_faults.load_markdown(r)
    assert "# Faults at load: 16 beds in real time" in text
    (triton,) = [line for line in text.splitlines() if line.startswith("| triton |")]
    assert "40 / 40/40 / 0 / 0" in triton and "8.0, 1x never" in triton
    (baseline,) = [line for line in text.splitlines() if line.startswith("| baseline |")]
    assert baseline.startswith("| baseline | – |") and "| 0.0 |" in baseline


def test_default_report_is_a_marked_block_that_keeps_the_hand_written_text(tmp_path):
    page = tmp_path / "reliability.md"
    page.write_text(f"# Reliability\n\n{bench_faults.BEGIN}\nold\n{bench_faults.END}\n\n## At load\n\nby hand\n")
    r = result({"triton": [row("triton")]}, explanation="## What the figures say")
    write_marked_block(page, bench_faults.markdown(r), bench_faults.BEGIN, bench_faults.END)
    text = page.read_text()
    assert text.startswith("# Reliability\n") and text.endswith("## At load\n\nby hand\n")
    assert "old" not in text and "| triton | triton happened | 12.3 | 40 / 40 / 0 / 0 |" in text


@pytest.mark.parametrize("argv", [["--beds", "8"], ["--real-time"], ["--faults", "baseline"]])
def test_load_options_go_together(argv):
    with pytest.raises(SystemExit):
        bench_faults.main(argv)


def test_load_report_states_the_starts_and_worker_settings_it_ran_with():
    rows = {"baseline": [row("baseline", back_s=0.0, after_p95_s=0.6)]}
    common = dict(beds=500, duration_s=150.0, fault_at_s=40.0, down_s=10.0, windows=14500, alert_events=9)
    spread = bench_faults.load_markdown(result(rows, **common, stagger_s=5.0, worker={
        "prep_workers": 2, "batch_size": 128, "batch_timeout_s": 0.2, "checkpoint_interval_s": 5.0}))
    assert "bed i starts i/500 x 5 s after bed 0" in spread
    assert "batch 128 / 0.2 s, checkpoint every 5 s" in spread
    # A page of a run from before the settings were recorded says what ran then.
    old = bench_faults.load_markdown(result(rows, **common))
    assert "all beds' windows fall due within one second" in old and "batch 32 / 0.2 s, checkpoint every 2 s" in old


def test_load_report_lists_the_runs_that_did_not_finish():
    r = result({"baseline": [row("baseline", back_s=0.0, after_p95_s=0.6)]}, beds=500, duration_s=150.0,
               fault_at_s=40.0, down_s=10.0, windows=14500, alert_events=9,
               unfinished=[{"fault": "kafka_kill", "error": "AssertionError: timed out after 150 s waiting",
                            "load_average": [4.0, 4.0, 4.0]}])
    text = bench_faults.load_markdown(r)
    assert "Runs that did not finish" in text and "- kafka_kill: AssertionError: timed out after 150 s" in text
    assert not [line for line in text.splitlines() if line.startswith("| kafka_kill |")]
