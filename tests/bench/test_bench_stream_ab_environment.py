"""A variant's environment in the A/B benchmark (bench/bench_stream_ab.py) reaches this process's
own settings too, not only the workers it starts: the replay's linger is read here. Until
2026-12-07 the cached settings kept the first values read, and two A/B runs of the replay's
linger compared 20 ms with 20 ms (docs/bench/stream-tuning.md, "2026-12-07 morning")."""

from __future__ import annotations

import os

from bench.bench_stream_ab import environment
from hfrisk.core.config import get_settings


def test_a_variants_environment_reaches_the_settings_inside_and_leaves_with_it(monkeypatch):
    monkeypatch.delenv("HFRISK_KAFKA__REPLAY_LINGER_MS", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().kafka.replay_linger_ms == 20
        with environment({"HFRISK_KAFKA__REPLAY_LINGER_MS": "100"}):
            assert os.environ["HFRISK_KAFKA__REPLAY_LINGER_MS"] == "100"
            assert get_settings().kafka.replay_linger_ms == 100
        assert "HFRISK_KAFKA__REPLAY_LINGER_MS" not in os.environ
        assert get_settings().kafka.replay_linger_ms == 20
    finally:
        get_settings.cache_clear()
