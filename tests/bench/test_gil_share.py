"""bench/gil_share: py-spy raw profiles summed per function for one thread, wall against GIL-held."""

from __future__ import annotations

from bench.gil_share import function_seconds, share_table

# The shape of `py-spy record --threads --format raw` lines: thread;frame (file:line);... count
IDLE = """\
thread (101): MainThread;<module> (w.py:1);feed (buffer.py:10);_extended (held.py:44) 30
thread (101): MainThread;<module> (w.py:1);feed (buffer.py:10);decode (codec.py:7) 10
thread (101): MainThread;<module> (w.py:1);select (selectors.py:468) 20
thread (101): MainThread;<module> (w.py:1);walk (t.py:3);walk (t.py:3) 4
thread (102): Thread-2;run (threading.py:982);fetch (f.py:9) 50
"""
GIL = """\
thread (101): MainThread;<module> (w.py:1);feed (buffer.py:10);_extended (held.py:44) 6
thread (101): MainThread;<module> (w.py:1);feed (buffer.py:10);decode (codec.py:7) 10
thread (102): Thread-2;run (threading.py:982);fetch (f.py:9) 12
"""


def test_seconds_are_per_thread_and_a_recursive_function_counts_once_per_sample(tmp_path):
    idle = tmp_path / "idle.txt"
    idle.write_text(IDLE)
    total, per_function = function_seconds(idle, "MainThread", rate_hz=10.0)
    assert total == 6.4
    assert per_function["feed"] == 4.0 and per_function["_extended"] == 3.0 and per_function["walk"] == 0.4
    assert "fetch" not in per_function
    other, _ = function_seconds(idle, "Thread-2", rate_hz=10.0)
    assert other == 5.0


def test_the_table_shows_the_time_each_function_spent_without_the_gil(tmp_path):
    idle, gil = tmp_path / "idle.txt", tmp_path / "gil.txt"
    idle.write_text(IDLE)
    gil.write_text(GIL)
    table = share_table(idle, gil, "MainThread", rate_hz=10.0)
    assert table.splitlines()[0] == "MainThread: 6.40 s sampled, 1.60 s of them holding the GIL"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["_extended"] == "| _extended | 3.00 | 0.60 | 2.40 |"
    assert rows["decode"] == "| decode | 1.00 | 1.00 | 0.00 |"
    assert rows["select"] == "| select | 2.00 | 0.00 | 2.00 |"
    assert "<module>" not in rows  # in every sample: the entry point, not a place
