"""bench/bench_worker_gate.py without the reference data: its report from made-up summaries."""

from __future__ import annotations

from bench import bench_worker_gate


def test_worker_gate_report_sets_the_worker_path_beside_the_front_end_page():
    summary = {"n": 498, "n_acceptable": 386, "n_unacceptable": 112, "accuracy": 0.8916,
               "sensitivity_unacceptable": 0.5536, "acceptable_refused": 0.0104}
    r = {"command": "x", "when": "now", "machine": {"cpus": 2, "load_before": [0, 0, 0], "load_after": [0, 0, 0]},
         "prep_workers": 2, "part_windows": 8, "batch": 32, "seconds": 5.0, "worker_path": summary,
         "frontend_page": summary, "verdicts_differ": 3, "max_input_abs_diff": 0.0}
    text = bench_worker_gate.markdown(r)
    assert "| accuracy | 0.892 | 0.892 |" in text and "**3 verdicts differ**" in text
