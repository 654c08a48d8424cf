"""bench/bench_held_counts.py on a small feed: the counts variant saves the held samples as int16
(about half the bytes) and both variants cut the same windows; withholding the counts is undone."""

from __future__ import annotations

import json

from bench import bench_held_counts
from hfrisk.stream.messages import EcgChunk


def test_the_counts_variant_saves_about_half_the_bytes_of_the_float32_one(tmp_path):
    result = bench_held_counts.main(["--beds", "3", "--seconds", "25", "--rounds", "2", "--out", str(tmp_path)])
    counts, float32 = result["summary"]["counts"], result["summary"]["float32"]
    assert counts["windows"] == float32["windows"] == 3 * 4  # windows ending at 10, 15, 20 and 25 s
    # Held samples as counts: half the bytes, plus the metadata and, at the first save (5 s), the
    # chunks still waiting for 5 s of signal to anchor the grid, which are float32 either way.
    assert 0.5 < counts["bytes_per_save"] / float32["bytes_per_save"] < 0.65
    assert json.loads((tmp_path / "held-counts.json").read_text())["summary"] == result["summary"]
    assert "| bytes a saved buffer (median) |" in (tmp_path / "held-counts.md").read_text()
    assert EcgChunk.millivolts_and_counts is bench_held_counts.EcgChunk.millivolts_and_counts
    assert "withheld" not in EcgChunk.millivolts_and_counts.__qualname__
