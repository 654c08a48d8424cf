"""The report writers of docs/training/evidence.md (bench/bench_floors.py, bench/bench_evidence.py): each
rewrites only its own marked block, resolved differences are marked, and the older block re-renders from
the committed JSON when its run folder is gone. No data under ../shared is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench import bench_evidence, bench_floors

ROOT = Path(__file__).resolve().parents[2]


def _pair(mean: float, low: float, high: float, sd: float = 0.01) -> dict:
    return {"n": 10, "mean": mean, "sd": sd, "wins": 5, "test_train_ratio": 1.0, "level": 0.95,
            "ci_low": mean - 0.005, "ci_high": mean + 0.005, "corrected_ci_low": low, "corrected_ci_high": high}


def _cohort(scenario: str, rate: float, with_network: bool) -> dict:
    methods = ["oracle_true_hazard", "cox_age_sex", "cox_measurements", "ridge_cox_beat_pcs",
               "ridge_cox_random_embedding_pcs"] + (["finetune_dual_attention_scratch_ridge_head"] if with_network else [])
    rows = [{"method": m, "runs": 10, "harrell_c": 0.7 - 0.01 * i, "sd": 0.02, "seconds": 3.0}
            for i, m in enumerate(methods)]
    pairs = {f"{x} - {y}": _pair(0.05, 0.02, 0.08) if x == "oracle_true_hazard" else _pair(0.01, -0.02, 0.04)
             for x in methods for y in methods if x != y}
    return {"name": f"{scenario}-{rate:g}", "scenario": scenario, "event_rate": rate,
            "cohort": {"n": 1999, "n_events": int(1999 * rate), "patients": 1857, "test_events_per_fold": [50],
                       "val_events_per_run": [10]},
            "rows": rows, "pairs": pairs}


def _result() -> dict:
    return {"seeds": [42, 2021], "cohort_seed": 0, "load_average": [1.0, 1.0, 1.0], "finished": "now",
            "calls": [{"command": "python -m bench.bench_floors", "finished": "now", "load_average": [1.0, 1.0, 1.0],
                       "seconds": {"preprocess": 40.0, "total": 100.0}}],
            "cohorts": [_cohort("labels", 0.05, False), _cohort("labels", 0.25, True),
                        _cohort("music-cardiac-ecg-only", 0.25, False)]}


def test_floors_report_marks_resolved_differences_and_missing_methods():
    text = bench_floors.markdown(_result())
    assert text.startswith(bench_floors.BEGIN) and text.endswith(bench_floors.END)
    # The oracle's lead (corrected interval above 0) is bold; an interval across 0 is not.
    assert "| oracle − age + sex | **+0.050 (+0.020 to +0.080)** |" in text
    assert "| Cox measurements − age + sex | +0.010 (−0.020 to +0.040) |" in text
    # The network ran on one cohort only: its row says "not run" and its pairs "—" elsewhere.
    assert "not run" in text and "| dual attention from scratch − random embedding | +0.010 (−0.020 to +0.040) | — |" in text
    assert "MUSIC cardiac, ECG terms only, 25 %" in text


def test_floors_report_shows_the_leak_free_row_and_its_pairs():
    r = _result()
    c = r["cohorts"][0]
    for m in ("ridge_cox_pretrained_embedding_pcs", "ridge_cox_leakfree_embedding_pcs"):
        c["rows"].append({"method": m, "runs": 10, "harrell_c": 0.69, "sd": 0.02, "seconds": 3.0})
    c["pairs"]["ridge_cox_leakfree_embedding_pcs - ridge_cox_random_embedding_pcs"] = _pair(-0.01, -0.05, 0.03)
    c["pairs"]["ridge_cox_leakfree_embedding_pcs - ridge_cox_pretrained_embedding_pcs"] = _pair(-0.03, -0.05, -0.01)
    text = bench_floors.markdown(r)
    assert f"| {bench_floors.LABELS['ridge_cox_leakfree_embedding_pcs']} | 0.690 ± 0.020 |" in text
    assert "| leak-free pretrained − random embedding | −0.010 (−0.050 to +0.030) |" in text
    # Resolved (interval below 0): bold; the other cohorts did not run it.
    assert "| leak-free pretrained − pretrained embedding | **−0.030 (−0.050 to −0.010)** |" in text


def test_floors_report_rewrites_only_its_block(tmp_path):
    doc = tmp_path / "evidence.md"
    doc.write_text(f"# title\nhand text\n\n{bench_floors.BEGIN}\nold table\n{bench_floors.END}\n\nmore hand text\n")
    bench_floors.write_report(_result(), doc)
    text = doc.read_text()
    assert text.startswith("# title\nhand text\n") and text.endswith("more hand text\n")
    assert "old table" not in text and text.count(bench_floors.BEGIN) == 1


def test_evidence_report_rerenders_the_committed_json_when_the_runs_are_gone(tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    shutil.copy(ROOT / "docs/training/evidence.json", out / "evidence.json")
    committed = json.loads((out / "evidence.json").read_text())
    (out / "evidence.md").write_text(f"hand\n{bench_evidence.BEGIN}\nstale\n{bench_evidence.END}\nkept\n")
    assert bench_evidence.main(["--data", str(tmp_path), "--out", str(out), "--runs", str(tmp_path / "gone"),
                                "--report-only"]) == 0
    text = (out / "evidence.md").read_text()
    assert text.startswith("hand\n") and text.endswith("kept\n") and "stale" not in text
    assert f"Cohort: {committed['cohort']['n']} labelled 100-Hz PTB-XL records" in text
    assert "| dual-attention, pretrained encoder | 10 |" in text
    # The committed JSON is not rewritten by a re-render.
    assert json.loads((out / "evidence.json").read_text()) == committed
