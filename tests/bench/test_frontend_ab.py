"""bench/bench_frontend_ab.py on the repository's own records: it swaps another commit's version of
a function in, refuses variants that prepare different inputs, and reports both."""

from __future__ import annotations

import os
import subprocess

import pytest

from bench import bench_frontend_ab
from bench.trees import ROOT
from hfrisk.model.frontend import detection

# The commit that tried R-peak candidates over stacked neighbours (reverted: docs/bench/ab/candidates-2026-12-07).
STACKED = "e95ad57"


@pytest.fixture(scope="module")
def history():
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{STACKED}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {STACKED} is not in this checkout's history (a shallow clone)")


def test_a_module_as_at_a_commit_is_that_commits_code(history):
    old = bench_frontend_ab.module_at(STACKED, "hfrisk.model.frontend.detection")
    assert hasattr(old, "_crowding") and not hasattr(detection, "_crowding")
    assert old._candidates is not detection._candidates and old._candidates.__globals__ is old.__dict__


def test_the_variants_are_timed_on_the_same_inputs_and_reported(history, ecg_data_dir, tmp_path):
    out = tmp_path / "ab"
    cores = os.sched_getaffinity(0)
    result = bench_frontend_ab.main([
        "--a-rev", STACKED, "--functions", "_candidates", "--data", str(ecg_data_dir / "ptbxl" / "records500"),
        "--limit", "3", "--batch-sizes", "1", "3", "--rounds", "2", "--out", str(out),
    ])
    assert result["same_inputs"] and [r["batch"] for r in result["rows"]] == [1, 3]
    assert all(len(r["rounds"]["a"]) == len(r["rounds"]["b"]) == 2 for r in result["rows"])
    assert detection._candidates.__globals__ is detection.__dict__  # the checkout's version is back
    assert os.sched_getaffinity(0) == cores  # and this process runs on every core again
    text = out.with_suffix(".md").read_text()
    assert f"as at `{STACKED}`" in text and "| 3 |" in text


def test_variants_that_prepare_different_inputs_are_refused(history, ecg_data_dir, monkeypatch):
    real = bench_frontend_ab.module_at

    def broken(rev, name):
        module = real(rev, name)
        module._dedupe = lambda xp, pos, keep, min_gap: (pos, keep & False)  # no beat survives
        return module

    monkeypatch.setattr(bench_frontend_ab, "module_at", broken)
    with pytest.raises(SystemExit, match="different inputs"):
        bench_frontend_ab.main(["--a-rev", STACKED, "--functions", "_dedupe", "--data",
                                str(ecg_data_dir / "ptbxl" / "records500"), "--limit", "2", "--batch-sizes", "2"])
