"""bench/bench_soak.py without servers: the per-sample latency from two scrapes of the worker's
histogram, the memory slope and the report, on made-up samples."""

from __future__ import annotations

import pytest

from bench import bench_soak

E2E = bench_soak.E2E


def scrape(counts: dict[str, float]) -> dict[str, float]:
    return {f'{E2E}_bucket{{le="{le}"}}': value for le, value in counts.items()} | {f"{E2E}_count": counts["+Inf"]}


def test_a_samples_latency_comes_from_the_windows_written_since_the_last_scrape():
    before = bench_soak.histogram(scrape({"0.5": 100, "1.0": 190, "1.5": 200, "+Inf": 200}), E2E)
    # 100 windows since: 50 within 0.5 s, 40 more within 1 s, 6 within 1.5 s, 4 later.
    after = bench_soak.histogram(scrape({"0.5": 150, "1.0": 280, "1.5": 296, "+Inf": 300}), E2E)
    got = bench_soak.interval_latency(before, after)
    assert got == {"windows": 100, "p95_le_s": 1.5, "within_1s": 0.9}
    assert bench_soak.interval_latency(after, after) == {"windows": 0, "p95_le_s": None, "within_1s": None}


def test_memory_slope_skips_the_first_quarter_and_is_per_hour():
    # Start-up jump in the first quarter, then 12 MB per hour.
    samples = [{"t_s": t, "m": (500.0 if t < 900 else 800.0 + 12.0 * t / 3600)} for t in range(0, 3600, 10)]
    assert bench_soak.slope_mb_per_h(samples, "m") == pytest.approx(12.0, abs=0.1)
    assert bench_soak.slope_mb_per_h(samples[:2], "m") is None


def test_report_counts_lost_windows_and_says_where_memory_went():
    samples = [{"t_s": 10.0 * i, "worker_rss_mb": 900.0, "kafka_rss_mb": 700.0, "redis_rss_mb": 50.0 + i,
                "redis_used_mb": 40.0 + i, "lag": 30 + (i % 3), "windows": 500, "p95_le_s": 0.75 if i else 1.5,
                "within_1s": 0.97} for i in range(20)]
    r = {"command": "x", "when": "now", "machine": {"cpus": 2, "load_before": [0, 0, 0], "load_after": [1, 1, 1]},
         "beds": 500, "duration_s": 200.0, "stagger_s": 5.0, "sample_s": 10.0, "partitions": 4,
         "worker": {"prep_workers": 2, "batch_size": 128, "batch_timeout_s": 0.2, "checkpoint_interval_s": 5.0},
         "replay": {"chunks": 100000, "max_lag_s": 0.05}, "windows_expected": 19000, "windows_done": 18990.0,
         "windows_in_redis": 18990, "drained_after_replay_s": None,
         "slope_mb_per_h": {"worker_rss_mb": 0.0, "kafka_rss_mb": 0.0, "redis_rss_mb": 1.0, "redis_used_mb": 1.0},
         "sampling_errors": [], "samples": samples}
    text = bench_soak.markdown(r)
    assert "| lost (expected, not in Redis) / extra | 10 / 0 |" in text
    assert "| samples with p95 <= 1 s (bucket bound) | 19 of 20 |" in text
    assert "| consumer lag: max over the run / over its second half (messages) | 32 / 32 |" in text


def test_progress_says_where_the_run_stands_even_before_a_window_is_written(capsys):
    sample = {"t_s": 60.2, "lag": 41, "p95_le_s": None, "within_1s": None, "worker_rss_mb": 1021.4,
              "kafka_rss_mb": 380.0, "redis_used_mb": 59.9}
    bench_soak.Sampler._progress(sample)
    bench_soak.Sampler._progress(sample | {"p95_le_s": 0.75, "within_1s": 0.97})
    first, second = capsys.readouterr().out.splitlines()
    assert first == "soak 60 s: lag 41, p95 <= None s, within 1 s None, worker 1021 MB, broker 380 MB, Redis 60 MB"
    assert "p95 <= 0.75 s, within 1 s 0.97" in second
