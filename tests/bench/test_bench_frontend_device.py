"""bench/bench_frontend_device.py, run here on torch's CPU: what a lent GPU runs first in
``scripts/gpu_check.sh run``, to hold the front end on the device to numpy."""

from __future__ import annotations

from bench.bench_frontend_device import SOURCE, compare, markdown


def test_torchs_cpu_prepares_the_windows_numpy_prepares():
    c = compare(SOURCE, "cpu")
    assert c["windows"] == 24 and c["scored_both"] > 0
    assert c["verdicts_differ"] == [] and c["agree"]
    assert 0 < c["max_input_diff"] < 1e-4 and c["max_log_risk_diff"] < 1e-4  # float32 on two engines


def test_the_page_says_when_the_device_disagrees():
    result = {"command": "x", "when": "now", "device_name": "GPU", "torch": "2", "python": "3", "records": "r",
              "device": "cuda", "comparison": {"windows": 24, "scored_both": 20, "device_s": 1.0,
                                               "verdicts_differ": [3], "max_input_diff": 0.5,
                                               "max_log_risk_diff": 0.2, "agree": False}}
    page = markdown(result)
    assert "| windows whose verdict, reasons or beats differ | 1 | 0 |" in page
    assert "**NOT the same scores.**" in page
