"""The GPU-host estimate of bench/bench_screening.py: bounds from per-record CPU costs."""

import pytest

from bench.bench_screening import GPU_HOST_GOAL, _gpu_host_lines, gpu_host_estimate


def test_each_bound_is_cores_over_the_cpu_cost_per_record_capped_by_the_network():
    e = gpu_host_estimate(read_ms=0.8, preprocess_ms=2.4, cores=16, network_ecg_per_s=111_000.0, host_python_ms=0.2)
    assert e["cpu_frontend_ecg_per_s"] == pytest.approx(16_000 / 3.2)
    assert e["gpu_frontend_ecg_per_s"] == pytest.approx(16_000 / 1.0)
    assert e["reading_only_ecg_per_s"] == pytest.approx(16_000 / 0.8)
    # Reading that would give the goal with the same host Python per window.
    assert e["read_ms_for_goal"] == pytest.approx(16_000 / GPU_HOST_GOAL - 0.2)
    capped = gpu_host_estimate(read_ms=0.01, preprocess_ms=0.01, cores=16, network_ecg_per_s=5_000.0, host_python_ms=0.0)
    assert capped["cpu_frontend_ecg_per_s"] == capped["gpu_frontend_ecg_per_s"] == 5_000.0


def test_the_page_says_it_is_an_estimate_and_whether_it_meets_the_goal():
    slow = "\n".join(_gpu_host_lines(gpu_host_estimate(0.88, 2.53, 16, 111_000.0, 0.32)))
    fast = "\n".join(_gpu_host_lines(gpu_host_estimate(0.2, 2.53, 16, 111_000.0, 0.32)))
    assert "estimated, not measured" in slow
    assert "does not meet the goal" in slow and "13,333 ECG/s" in slow
    assert "meets the goal" in fast and "does not meet" not in fast


def test_the_calling_process_that_scores_on_the_gpu_bounds_the_estimate_and_adds_to_each_record():
    free = gpu_host_estimate(0.2, 2.53, 16, 111_000.0, 0.32)
    busy = gpu_host_estimate(0.2, 2.53, 16, 111_000.0, 0.32, caller_ms=0.08)
    # Its CPU a record joins the cores' bound; on its one core it is a bound of its own.
    assert busy["gpu_frontend_ecg_per_s"] == pytest.approx(min(16_000 / 0.6, 1e3 / 0.08))
    assert busy["caller_ecg_per_s"] == pytest.approx(12_500) and free["caller_ecg_per_s"] == float("inf")
    assert busy["read_ms_for_goal"] == pytest.approx(free["read_ms_for_goal"] - 0.08)
    page = "\n".join(_gpu_host_lines(busy))
    assert "12,500 ECG/s" in page and "does not meet the goal, bound by the calling process" in page
    assert "the calling process" not in "\n".join(_gpu_host_lines(free))
    assert "meets the goal, bound by reading" in "\n".join(_gpu_host_lines(free))


def test_the_calling_process_is_split_into_what_a_recording_adds_and_what_a_call_costs():
    from bench.bench_screening import caller_cost

    # 0.05 ms a recording and 0.1 s a call: 0.25 ms a recording over 500, 0.15 over 1,000.
    rounds = [[0.25, 0.15], [0.26, 0.15], [0.25, 0.16]]
    cost = caller_cost(rounds, 500, 1000)
    assert cost["per_ecg_ms"] == pytest.approx(0.05) and cost["fixed_s"] == pytest.approx(0.1)


def test_what_the_calling_process_does_while_the_pool_waits_adds_to_each_record_after_the_rest():
    overlapped = gpu_host_estimate(0.2, 2.53, 16, 111_000.0, 0.32, caller_ms=0.02)
    waiting = gpu_host_estimate(0.2, 2.53, 16, 111_000.0, 0.32, caller_ms=0.02, serial_ms=0.01)
    assert overlapped["gpu_frontend_ecg_per_s"] == pytest.approx(16_000 / 0.54)
    assert waiting["gpu_frontend_ecg_per_s"] == pytest.approx(1e3 / (0.54 / 16 + 0.01))
    assert waiting["gpu_frontend_while_pool_works_ecg_per_s"] == pytest.approx(16_000 / 0.54)
    # The reading that would still give the goal leaves the pool 0.01 ms less of each 0.05 ms.
    assert waiting["read_ms_for_goal"] == pytest.approx(16 * (0.05 - 0.01) - 0.32 - 0.02)
    page = "\n".join(_gpu_host_lines(waiting))
    assert "while the pool waits" in page and "0.0100 ms, after the rest" in page
