"""hfrisk.testing.recovery (the figures of docs/bench/faults-at-load-<beds>.md) against hand-worked cases
and a brute-force version that steps through time, and the latency definition shared with bench_stream."""

from __future__ import annotations

import numpy as np
import pytest

from hfrisk.testing.realtime import window_due_us, window_latencies_s
from hfrisk.testing.recovery import backlog_at, recovery_times


def steady(n_beds: int, seconds: float, latency_s: float = 0.4, hop_s: float = 5.0):
    """Windows of ``n_beds`` staggered beds, each written ``latency_s`` after it is due."""
    due = np.array([10.0 + b * hop_s / n_beds + k * hop_s for b in range(n_beds) for k in range(int(seconds // hop_s))])
    return due, due + latency_s


def test_a_fault_that_changes_nothing_is_recovered_at_once():
    due, written = steady(8, 100)
    t = recovery_times(due, written, 40.0, 40.0)
    assert t.back_s == 0.0 and t.drained_s == pytest.approx(0.0, abs=0.4)
    assert t.peak_latency_s == pytest.approx(0.4)
    assert t.before_p95_s == pytest.approx(0.4) and t.after_p95_s == pytest.approx(0.4)


def test_an_outage_holds_windows_then_the_backlog_drains():
    due, written = steady(8, 120)
    # Nothing written from 40 s to 50 s; the backlog then goes out at 20 windows/s, new windows queue behind it.
    held = (written > 40.0)
    order = np.argsort(due)
    clock = 50.0
    for i in order:
        if held[i]:
            clock = max(clock, due[i]) + 0.05
            written[i] = max(written[i], clock)
    t = recovery_times(due, written, 40.0, 50.0)
    assert t.first_s == pytest.approx(0.05)
    assert t.peak_latency_s > 10.0  # the first window held waited the whole outage
    assert 0 < t.drained_s <= t.back_s
    assert t.after_p95_s <= 1.0 and t.before_p95_s == pytest.approx(0.4)
    assert t.peak_backlog >= 8 * 10 / 5  # at least every window due during the outage


def test_never_back_in_real_time():
    due, written = steady(4, 60)
    late = due > 30.0
    written[late] = due[late] + 3.0  # from the fault on, every window 3 s late
    t = recovery_times(due, written, 30.0, 32.0)
    assert t.back_s is None and t.after_p95_s is None
    assert t.peak_latency_s == pytest.approx(3.0)


def test_no_window_after_the_fault():
    t = recovery_times([1.0, 2.0], [1.5, 2.5], 5.0, 6.0)
    assert t.first_s is None and t.drained_s == 0.0 and t.peak_latency_s is None and t.peak_backlog == 0


def test_backlog_counts_windows_due_and_not_written():
    due, written = [0.0, 1.0, 2.0], [0.5, 3.0, 3.0]
    assert [backlog_at(t, due, sorted(written)) for t in (0.0, 0.6, 1.0, 2.5, 3.0)] == [1, 0, 1, 2, 0]


def brute_force_back(due, written, end, real_time_s, span_s, step=0.01):
    """The first moment on a fine grid (and the write times) where the definition holds."""
    due, written = np.asarray(due), np.asarray(written)
    latency = written - due
    for t in sorted({end, *written[written > end].tolist()}):
        waiting_old = np.any((due <= t - real_time_s) & (written > t))
        nxt = (written >= t) & (written < t + span_s)
        if not waiting_old and nxt.any() and np.percentile(latency[nxt], 95) <= real_time_s:
            return t - end
    return None


@pytest.mark.parametrize("seed", range(20))
def test_back_in_real_time_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    due = np.sort(rng.uniform(0, 60, 200))
    written = due + rng.exponential(0.3, 200)
    hit = (due > 20) & (due < 20 + rng.uniform(1, 15))
    written[hit] += rng.uniform(0, 12)
    t = recovery_times(due, written, 20.0, 30.0, span_s=5.0)
    expected = brute_force_back(due, written, 30.0, 1.0, 5.0)
    assert (t.back_s is None) == (expected is None)
    if expected is not None:
        assert t.back_s == pytest.approx(expected)
    until = 30.0 + t.back_s + 5.0 if t.back_s is not None else due.max()
    moments = [g for g in np.concatenate([due, written]) if 20.0 <= g <= until]
    assert t.peak_backlog == max(int(np.sum((due <= g) & (written > g))) for g in moments)


def test_lengths_must_match():
    with pytest.raises(ValueError):
        recovery_times([1.0, 2.0], [1.5], 0.0, 1.0)


def test_window_latency_is_bench_streams_definition():
    """Redis write - acquisition of the window's last sample (10 s at 500 Hz: start + 9.998 s)."""
    record = {"written_at_us": 20_000_000, "window_start_us": 10_000_000}
    assert window_due_us(10_000_000, 10.0, 500.0) == 19_998_000
    assert window_latencies_s([record], 10.0) == [pytest.approx(0.002)]
    assert window_latencies_s([record], 10.0, shift_us=-1_000_000) == [pytest.approx(1.002)]
