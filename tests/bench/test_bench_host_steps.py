"""bench/bench_host_steps.py: both trees' children measure the same windows and must prepare them alike."""

from __future__ import annotations

import json

from bench.bench_host_steps import BATCHES, STEPS, main, measure
from bench.trees import ROOT

RECORDS = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500"


def test_a_child_times_each_step_and_digests_what_it_prepared():
    got = measure(RECORDS)
    assert got["windows"] == 24 and len(got["digest"]) == 64
    for key in ["window_and_leads_ms", *(f"prepare_{s}_ms" for s in BATCHES)]:
        assert got[key] > 0
    for size in BATCHES:  # steps of the whole, each of them timed
        steps = {step: got[f"prepare_{size}_{step}_ms"] for step in STEPS}
        whole = got[f"prepare_{size}_ms"]
        assert min(steps.values()) > 0 and steps["window_and_leads"] + steps["quality"] < whole
        # All of them are the whole again (wall time of one pass against the CPU time of three).
        assert 0.5 * whole < sum(steps.values()) < 2 * whole
        assert {key for key in got if key.startswith(f"prepare_{size}_") and key != f"prepare_{size}_ms"} == {
            f"prepare_{size}_{step}_ms" for step in STEPS}
    assert measure(RECORDS)["digest"] == got["digest"]


def test_the_page_compares_the_baseline_tree_with_the_checkout(tmp_path):
    result = main(["--records", str(RECORDS), "--baseline", "HEAD", "--repeats", "1", "--out", str(tmp_path)])
    assert set(result["median"]) == {"baseline", "current"}
    assert json.loads((tmp_path / "host-steps.json").read_text())["digest"] == result["digest"]
    page = (tmp_path / "host-steps.md").read_text()
    assert "| `window_and_leads` alone |" in page and "| … of it, its `quality` step |" in page and "tests/data/ecg/ptbxl/records500" in page


def test_the_page_reports_the_steps_it_is_asked_for(tmp_path):
    result = main(["--records", str(RECORDS), "--baseline", "HEAD", "--repeats", "1", "--steps", "beats_and_median",
                   "--out", str(tmp_path)])
    page = (tmp_path / "host-steps.md").read_text()
    assert result["steps"] == ["beats_and_median"]
    assert "| … of it, its `beats_and_median` step |" in page and "its `quality` step" not in page
    assert page.startswith("# The front end's steps (`beats_and_median`)")
