"""Every method that needs no network training, on the same patient-grouped folds, for several outcomes.

For each scenario x event rate, the semi-synthetic cohort of every 100-Hz PTB-XL record (1,999
records, 1,857 patients; ``hfrisk synthetic-cohort``'s outcomes, built in-process with age and sex
kept as columns), the paper's seeds x 2 folds grouped by patient, and on those same folds:

* ``oracle_true_hazard``: the simulated log-hazard (the ceiling);
* ``cox_age_sex``: ridge Cox on age and sex, penalty chosen on validation;
* ``cox_measurements``: the Cox baseline on the front end's 13 ECG measurements (no age, no sex);
* ``cox_measurements_age_sex``: the same plus age and sex;
* ``ridge_cox_beat_pcs``: ridge Cox on the principal components of the flattened model input (the
  raw median beat, 12 x 608), component count and penalty chosen on validation;
* ``ridge_cox_random_embedding_pcs``: the same on the 512-d embedding of the untrained network
  (seed 72, as pretraining initialises it);
* ``ridge_cox_pretrained_embedding_pcs`` (with ``--pretrained CHECKPOINT``): the same on the frozen
  pretrained encoder's embedding;
* ``ridge_cox_leakfree_embedding_pcs`` (with ``--pretrained-leak-free CHECKPOINT``): the same on an encoder
  pretrained with ``--exclude-ids`` of every cohort record (ecg_id 1-1999) and, by default, every other record
  of their patients: it never saw a cohort record, patient or text, so it is leak-free for every fold at once.

Every pair of methods gets its paired difference of Harrell C over the 10 runs
(:func:`~hfrisk.training.evaluation.comparison.paired_difference`: t-interval and the Nadeau-Bengio
corrected one). A (cohort, method) whose ``summary.json`` exists under ``--runs`` is read back, not
run again (so adding ``--pretrained`` later only runs that method). ``--report`` rewrites the block
between the markers in docs/training/evidence.md from the JSON. The tables there were made with

    nice -n 15 .venv/bin/python -m bench.bench_floors --data ../shared/data/ecg/ptbxl \\
        --runs runs/methods --out docs/training/methods.json --report docs/training/evidence.md \\
        [--pretrained runs/pretrain-scale/best.pt] [--pretrained-leak-free runs/leakfree/pretrain/best.pt]

(``--data`` relative as written, so that the measurement cache's record keys match.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from bench.record import write_marked_block

# music-*-ecg-only: MUSIC's age- and sex-adjusted ECG terms only (synthetic-cohort --ecg-only).
SCENARIOS = ("labels", "music-pump-failure", "music-cardiac", "music-pump-failure-ecg-only", "music-cardiac-ecg-only")
ORACLE, AGE_SEX = "oracle_true_hazard", "cox_age_sex"
LABELS = {
    "oracle_true_hazard": "true hazard (oracle)",
    "cox_age_sex": "Cox on age + sex",
    "cox_measurements": "Cox on the 13 ECG measurements",
    "cox_measurements_age_sex": "Cox on the 13 ECG measurements + age + sex",
    "ridge_cox_beat_pcs": "ridge Cox, PCs of the raw median beat (12 × 608)",
    "ridge_cox_random_embedding_pcs": "ridge Cox, PCs of the untrained dual-attention embedding (seed 72)",
    "ridge_cox_pretrained_embedding_pcs": "ridge Cox, PCs of the pretrained dual-attention embedding (frozen; saw every record)",
    "ridge_cox_leakfree_embedding_pcs": "ridge Cox, PCs of the pretrained embedding, leak-free (frozen; encoder never saw "
                                        "a cohort record, patient or text)",
    "finetune_dual_attention_scratch_ridge_head": "dual-attention fine-tuned from scratch, head started from ridge Cox "
                                                  "(≤ 20 epochs, patience 5 on validation Cox loss)",
    # The pretrained network rows start from the leak-free encoder: the floors' pretrained encoder saw
    # the test folds' records and texts.
    "finetune_dual_attention_pretrained_ridge_head": "dual-attention fine-tuned from the leak-free pretrained encoder, "
                                                     "head started from ridge Cox (same budget)",
    "finetune_dual_attention_pretrained_frozen_ridge_head": "dual-attention, leak-free pretrained encoder frozen, head "
                                                            "started from ridge Cox and trained (same budget)",
    "finetune_xresnet1d101_scratch_ridge_head": "xresnet1d101 fine-tuned from scratch, head started from ridge Cox "
                                                "(same budget)",
}
SHORT = {"oracle_true_hazard": "oracle", "cox_age_sex": "age + sex", "cox_measurements": "Cox measurements",
         "cox_measurements_age_sex": "Cox measurements + age + sex", "ridge_cox_beat_pcs": "beat PCs",
         "ridge_cox_random_embedding_pcs": "random embedding", "ridge_cox_pretrained_embedding_pcs": "pretrained embedding",
         "ridge_cox_leakfree_embedding_pcs": "leak-free pretrained",
         "finetune_dual_attention_scratch_ridge_head": "dual attention from scratch",
         "finetune_dual_attention_pretrained_ridge_head": "dual attention pretrained",
         "finetune_dual_attention_pretrained_frozen_ridge_head": "dual attention frozen",
         "finetune_xresnet1d101_scratch_ridge_head": "xresnet1d101"}
# The paired differences the report shows (A − B); every pair is in the JSON.
KEY_PAIRS = (
    ("oracle_true_hazard", "cox_age_sex"),
    ("cox_measurements", "cox_age_sex"),
    ("cox_measurements_age_sex", "cox_age_sex"),
    ("ridge_cox_beat_pcs", "cox_measurements"),
    ("ridge_cox_random_embedding_pcs", "ridge_cox_beat_pcs"),
    ("ridge_cox_pretrained_embedding_pcs", "ridge_cox_random_embedding_pcs"),
    ("ridge_cox_pretrained_embedding_pcs", "cox_measurements"),
    ("ridge_cox_leakfree_embedding_pcs", "ridge_cox_random_embedding_pcs"),
    ("ridge_cox_leakfree_embedding_pcs", "ridge_cox_pretrained_embedding_pcs"),
    ("finetune_dual_attention_scratch_ridge_head", "ridge_cox_random_embedding_pcs"),
    ("finetune_dual_attention_scratch_ridge_head", "ridge_cox_beat_pcs"),
    ("finetune_dual_attention_scratch_ridge_head", "cox_measurements"),
    ("finetune_dual_attention_pretrained_ridge_head", "finetune_dual_attention_scratch_ridge_head"),
    ("finetune_dual_attention_pretrained_ridge_head", "ridge_cox_leakfree_embedding_pcs"),
    ("finetune_dual_attention_pretrained_frozen_ridge_head", "ridge_cox_leakfree_embedding_pcs"),
    ("finetune_dual_attention_pretrained_ridge_head", "finetune_dual_attention_pretrained_frozen_ridge_head"),
    ("finetune_xresnet1d101_scratch_ridge_head", "finetune_dual_attention_scratch_ridge_head"),
    ("finetune_xresnet1d101_scratch_ridge_head", "ridge_cox_beat_pcs"),
)
BEGIN, END = "<!-- bench_floors:begin -->", "<!-- bench_floors:end -->"


def _cohort(name: str, ptbxl, scenario: str, rate: float, seed: int, measurements_by_id):
    from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort

    if scenario == "labels":
        return synthetic_hf_cohort(ptbxl, event_rate=rate, seed=seed, with_demographics=True)
    from hfrisk.training.data.music_hazard import MusicHazard, music_ecg_cohort

    endpoint = scenario.removeprefix("music-").removesuffix("-ecg-only").replace("-", "_")
    hazard = MusicHazard.from_json(endpoint, demographics=not scenario.endswith("-ecg-only"))
    return music_ecg_cohort(ptbxl, endpoint, event_rate=rate, seed=seed, measurements=measurements_by_id,
                            hazard=hazard, with_demographics=True)


def _load_result(folder: Path):
    import pandas as pd

    from hfrisk.training.evaluation.protocol import RUNS_FILENAME, SUMMARY_FILENAME, ProtocolResult

    if not (folder / SUMMARY_FILENAME).exists():
        return None
    saved = json.loads((folder / SUMMARY_FILENAME).read_text())
    return ProtocolResult(saved["method"], pd.read_csv(folder / RUNS_FILENAME), saved["summary"], saved.get("info", []))


def run(a: argparse.Namespace) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    from hfrisk.training.data.measurements import MEASUREMENTS
    from hfrisk.training.data.music_hazard import measure_ptbxl
    from hfrisk.training.data.ptbxl import PTBXL
    from hfrisk.training.data.synthetic_cohort import oracle_method
    from hfrisk.training.evaluation.comparison import paired_difference
    from hfrisk.training.evaluation.cox_baseline import CoxBaselineConfig, cox_method
    from hfrisk.training.evaluation.floors import RIDGE_PENALIZERS, principal_components_method
    from hfrisk.training.evaluation.probe import embed, pretrained_encoder, random_encoder
    from hfrisk.training.evaluation.protocol import cross_validate
    from hfrisk.training.finetune.data import FinetuneData

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    previous = json.loads(a.out.read_text()) if a.out.exists() else {}
    ptbxl = PTBXL(a.data, sampling_rate=100)
    cache = a.runs / "ptbxl100_measurements.parquet"
    if not cache.exists() and a.measurements_cache and a.measurements_cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(a.measurements_cache, cache)  # a copy: the shared cache is not rewritten from here
    tick = time.perf_counter()
    measurements_by_id = measure_ptbxl(ptbxl, cache=cache, progress=False)
    seconds["measure"] = time.perf_counter() - tick

    features = {}  # name -> (array, records); built on the first cohort (same records in every one)
    cohorts_out = []
    for scenario in a.scenarios:
        for rate in a.event_rates:
            name = f"{scenario}-{rate:g}"
            synth = _cohort(name, ptbxl, scenario, rate, a.cohort_seed, measurements_by_id)
            cohort = synth.cohort
            records = cohort.records
            if not features:
                tick = time.perf_counter()
                inputs = FinetuneData.from_cohort(cohort, cache_dir=a.runs / "cache")
                seconds["preprocess"] = time.perf_counter() - tick
                x = inputs.x.numpy()
                features["ridge_cox_beat_pcs"] = (x, list(records))
                tick = time.perf_counter()
                features["ridge_cox_random_embedding_pcs"] = (embed(random_encoder("dual_attention", seed=72), x),
                                                              list(records))
                seconds["embed_random"] = time.perf_counter() - tick
                if a.pretrained is not None:
                    tick = time.perf_counter()
                    net, _ = pretrained_encoder(a.pretrained)
                    features["ridge_cox_pretrained_embedding_pcs"] = (embed(net, x), list(records))
                    seconds["embed_pretrained"] = time.perf_counter() - tick
                if a.pretrained_leak_free is not None:
                    tick = time.perf_counter()
                    net, _ = pretrained_encoder(a.pretrained_leak_free)
                    features["ridge_cox_leakfree_embedding_pcs"] = (embed(net, x), list(records))
                    seconds["embed_leak_free"] = time.perf_counter() - tick
                usable = int((inputs.lead_mask.sum(dim=1) > 0).sum())
            ids = cohort.table["ecg_id"].astype(int).to_numpy()
            meas = measurements_by_id.loc[ids, list(MEASUREMENTS)].set_axis(records)
            demo = cohort.table[["age", "sex"]].astype(float).set_axis(records)
            both = meas.join(demo)
            methods = [
                oracle_method(synth.log_hazard),
                cox_method(demo, CoxBaselineConfig(features=("age", "sex"), penalizers=RIDGE_PENALIZERS)),
                cox_method(meas),
                cox_method(both, CoxBaselineConfig(features=(*MEASUREMENTS, "age", "sex"))),
            ]
            for m, label in zip(methods[1:], ("cox_age_sex", "cox_measurements", "cox_measurements_age_sex")):
                m.name = label
            for label, (array, rows) in features.items():
                methods.append(principal_components_method(array, label, records=rows))
            results, method_seconds = {}, {}
            for spec in a.extra or []:  # COHORT:FOLDER of a method run elsewhere (hfrisk evaluate) on these folds
                target, folder = spec.split(":", 1)
                if target == name and (extra := _load_result(Path(folder))) is not None:
                    results[extra.method] = extra
                    method_seconds[extra.method] = float(extra.runs["seconds"].sum())
            for method in methods:
                if method.name in results:
                    continue
                folder = a.runs / name / method.name
                tick = time.perf_counter()
                result = _load_result(folder)
                if result is None or len(result.runs) != 2 * len(a.seeds):
                    result = cross_validate(cohort, method, folder, seeds=a.seeds, by=a.folds, progress=False)
                    method_seconds[method.name] = time.perf_counter() - tick
                else:  # read back: keep the wall time the earlier run recorded
                    method_seconds[method.name] = _previous_seconds(previous, name, method.name)
                results[method.name] = result
                c = result.summary["metrics"]["harrell_c"]
                print(f"[{time.strftime('%H:%M:%S')}] {name} {method.name}: C {c['mean']:.3f} ± {c['sd']:.3f} "
                      f"({method_seconds[method.name] or 0:.0f} s)", flush=True)
            rows = []
            for m, result in results.items():
                c = result.summary["metrics"]["harrell_c"]
                rows.append({"method": m, "runs": int(c["n_runs"]), "harrell_c": c["mean"], "sd": c["sd"],
                             "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                             "corrected_ci_low": c.get("corrected_ci_low"), "corrected_ci_high": c.get("corrected_ci_high"),
                             "uno_c": result.summary["metrics"].get("uno_c", {}).get("mean"),
                             "seconds": method_seconds[m]})
            pairs = {f"{x} - {y}": paired_difference(results[x].runs, results[y].runs)
                     for x in results for y in results if x != y}
            oracle_runs = results[ORACLE].runs
            cohorts_out.append({
                "name": name, "scenario": scenario, "event_rate": rate,
                "cohort": {**{k: v for k, v in synth.summary().items() if k not in ("spec", "records_root")},
                           "patients": int(cohort.table["patient_id"].nunique()),
                           "folds": results[ORACLE].summary.get("folds"),
                           "test_events_per_fold": sorted(set(oracle_runs["n_test_events"].astype(int))),
                           "val_events_per_run": sorted(set(oracle_runs["n_val_events"].astype(int)))},
                "rows": rows, "pairs": pairs,
            })
    niceness = os.nice(0)  # as run, not as once planned: the calls' load depends on it
    command = (f"nice -n {niceness} " if niceness else "") + ".venv/bin/python -m bench.bench_floors " + " ".join(sys.argv[1:])
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    call = {"command": command, "finished": finished, "load_average": [round(x, 1) for x in os.getloadavg()],
            "seconds": {**seconds, "total": time.perf_counter() - started}}
    out = {
        "command": command,
        "seeds": list(a.seeds), "folds": a.folds, "cohort_seed": a.cohort_seed,
        "pretrained": str(a.pretrained) if a.pretrained else None,
        "pretrained_leak_free": str(a.pretrained_leak_free) if a.pretrained_leak_free else None,
        "usable_inputs": usable, "cohorts": cohorts_out,
        # Every call, in order: a later call reads finished methods back, so its own costs are its additions.
        "calls": [*previous.get("calls", []), call],
        "threads": a.threads, "load_average": call["load_average"], "finished": finished,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return out


def _previous_seconds(previous: dict, cohort: str, method: str) -> float | None:
    for c in previous.get("cohorts", []):
        if c["name"] == cohort:
            for row in c["rows"]:
                if row["method"] == method:
                    return row.get("seconds")
    return None


# ---------------------------------------------------------------------------------------------- report


def _f(x, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return (f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}").replace("-", "−")


def _diff_cell(d: dict) -> str:
    """'+0.012 (−0.010 to +0.034)', bold when the corrected interval excludes 0."""
    text = f"{_f(d['mean'], sign=True)} ({_f(d['corrected_ci_low'], sign=True)} to {_f(d['corrected_ci_high'], sign=True)})"
    resolved = d["corrected_ci_low"] > 0 or d["corrected_ci_high"] < 0
    return f"**{text}**" if resolved else text


def _scenario_label(c: dict) -> str:
    names = {"labels": "diagnosis labels", "music-pump-failure": "MUSIC pump failure", "music-cardiac": "MUSIC cardiac",
             "music-pump-failure-ecg-only": "MUSIC pump failure, ECG terms only",
             "music-cardiac-ecg-only": "MUSIC cardiac, ECG terms only"}
    return f"{names.get(c['scenario'], c['scenario'])}, {100 * c['event_rate']:g} %"


def markdown(r: dict) -> str:
    from hfrisk.training.evaluation.power import paired_t_power

    cohorts = r["cohorts"]
    methods = [m for m in LABELS if any(row["method"] == m for c in cohorts for row in c["rows"])]
    lines = [BEGIN, "", "*Generated by `bench/bench_floors.py --report` from `docs/training/methods.json`; the text "
             "outside the markers is written by hand.*", "",
             f"Cohorts: all {cohorts[0]['cohort']['n']} 100-Hz PTB-XL records ({cohorts[0]['cohort']['patients']} "
             f"patients), outcomes simulated with seed {r['cohort_seed']}, age and sex kept as columns. Folds: seeds "
             f"{', '.join(map(str, r['seeds']))} × 2, grouped by patient, inner 80/20 choice; every method of a "
             "cohort ran on the same 10 test folds (same fingerprints, checked by `paired_difference`).", "",
             "| cohort | events | test events per fold | validation events per run |", "| --- | --- | --- | --- |"]
    for c in cohorts:
        k = c["cohort"]
        lines.append(f"| {_scenario_label(c)} | {k['n_events']} | {', '.join(map(str, k['test_events_per_fold']))} | "
                     f"{', '.join(map(str, k['val_events_per_run']))} |")
    short = SHORT
    pairs = [(x, y) for x, y in KEY_PAIRS if any(f"{x} - {y}" in c["pairs"] for c in cohorts)]
    for rate in sorted({c["event_rate"] for c in cohorts}):
        group = [c for c in cohorts if c["event_rate"] == rate]
        head = "| {} | " + " | ".join(_scenario_label(c) for c in group) + " |"
        rule = "| --- | " + " | ".join("---" for _ in group) + " |"
        lines += ["", f"**Event rate {100 * rate:g} % ({group[0]['cohort']['n_events']} events).** Harrell C, mean ± SD "
                  "over the 10 runs:", "", head.format("method"), rule]
        for m in methods:
            if not any(x["method"] == m for c in group for x in c["rows"]):
                continue  # not run at this event rate
            cells = []
            for c in group:
                row = next((x for x in c["rows"] if x["method"] == m), None)
                cells.append(f"{_f(row['harrell_c'])} ± {_f(row['sd'])}" if row else "not run")
            lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
        lines += ["", "Paired differences A − B on the same 10 folds: mean (corrected 95 % interval, Nadeau–Bengio); "
                  "**bold** where that interval excludes 0 (resolved):", "", head.format("A − B"), rule]
        for x, y in pairs:
            if any(f"{x} - {y}" in c["pairs"] for c in group):
                lines.append(f"| {short[x]} − {short[y]} | " + " | ".join(
                    _diff_cell(c["pairs"][f"{x} - {y}"]) if f"{x} - {y}" in c["pairs"] else "—" for c in group) + " |")
    lines += ["", "**Per-run SD s of the paired differences**, and in brackets the power of the corrected test at 10 "
              "runs to detect a true gap of 0.03 (variance of the mean s²(1/10 + 1)):", "",
              "| A − B | " + " | ".join(_scenario_label(c) for c in cohorts) + " |",
              "| --- | " + " | ".join("---" for _ in cohorts) + " |"]
    for x, y in pairs:
        cells = []
        for c in cohorts:
            d = c["pairs"].get(f"{x} - {y}")
            if d is None:
                cells.append("—")
                continue
            # The corrected test over n runs is a t-test whose variance of the mean is s^2 (1/n + ratio).
            n_eff = 1.0 / (1.0 / d["n"] + d["test_train_ratio"])
            power = paired_t_power(d["n"], d["sd"] * math.sqrt(d["n"] / n_eff), 0.03)
            cells.append(f"{_f(d['sd'])} ({100 * power:.0f} %)")
        lines.append(f"| {short[x]} − {short[y]} | " + " | ".join(cells) + " |")
    wall = ["", "**Wall time per method** (10 runs, one thread, on the 2 shared cores: the load beside each call is "
            "in its line below; a network row is the wall time its `hfrisk evaluate` run recorded):", "",
            "| method | " + " | ".join(_scenario_label(c) for c in cohorts) + " |",
            "| --- | " + " | ".join("---" for _ in cohorts) + " |"]
    for m in methods:
        cells = []
        for c in cohorts:
            row = next((x for x in c["rows"] if x["method"] == m), None)
            cells.append(f"{row['seconds']:.0f} s" if row and row.get("seconds") is not None else "—")
        wall.append(f"| {short[m]} | " + " | ".join(cells) + " |")
    lines += wall + ["", "Calls (a later call reads the finished methods back and runs only what is new; the "
                     "measurements, model inputs and embeddings are computed or read from cache once per call):", ""]
    for call in r["calls"]:
        once = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in call["seconds"].items())
        lines.append(f"- `{call['command']}`, finished {call['finished']}, load average "
                     f"{', '.join(f'{x:.1f}' for x in call['load_average'])}: {once}.")
    lines += ["", END]
    return "\n".join(lines)


def write_report(r: dict, path: Path) -> None:
    write_marked_block(path, markdown(r), BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="PTB-XL root (records100/).")
    p.add_argument("--runs", type=Path, default=Path("runs/methods"))
    p.add_argument("--out", type=Path, default=Path("docs/training/methods.json"))
    p.add_argument("--report", type=Path, help="Markdown file whose bench_floors block is rewritten (evidence.md).")
    p.add_argument("--report-only", action="store_true", help="Only rewrite --report from --out.")
    p.add_argument("--scenarios", nargs="+", default=["labels", "music-pump-failure"], choices=SCENARIOS)
    p.add_argument("--event-rates", type=float, nargs="+", default=[0.05, 0.25])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 2021, 2022, 2023, 2024])
    p.add_argument("--pretrained", type=Path, help="Pretraining checkpoint: adds the pretrained-embedding floor.")
    p.add_argument("--pretrained-leak-free", type=Path, help="Checkpoint of a pretraining that excluded every cohort "
                   "record (and its patients): adds the leak-free pretrained-embedding floor.")
    p.add_argument("--measurements-cache", type=Path, default=Path("runs/music/ptbxl100_measurements.parquet"),
                   help="Copied under --runs on the first call (measurements of the 1,999 records).")
    p.add_argument("--extra", nargs="+", help="COHORT:FOLDER: add a method that `hfrisk evaluate` ran on that cohort's "
                   "folds (its runs.csv and summary.json), e.g. labels-0.25:runs/methods/finetune5-labels-0.25/<method>.")
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument("--folds", default="patient")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    result = json.loads(a.out.read_text()) if a.report_only else run(a)
    if a.report:
        write_report(result, a.report)
        print(f"wrote {a.report}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
