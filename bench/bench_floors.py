"""The frozen-feature floors against the oracle and age + sex, on the same patient-grouped folds.

On the semi-synthetic cohort of every 100-Hz PTB-XL record (diagnosis-label hazard, ``--event-rate``),
the paper's 5 seeds x 2 folds grouped by patient, four methods:

* ``oracle_true_hazard``: the simulated log-hazard (the ceiling);
* ``cox_age_sex``: ridge Cox on age and sex, penalty chosen on validation (the hazard's largest terms);
* ``ridge_cox_beat_pcs``: ridge Cox on the principal components of the flattened model input (the
  raw median beat, 12 x 608), component count and penalty chosen on validation;
* ``ridge_cox_random_embedding_pcs``: the same on the 512-d embedding of the untrained network
  (seed 72, as pretraining initialises it).

Paired differences (:func:`~hfrisk.training.evaluation.comparison.paired_difference`) of every method
against the oracle and against age + sex, with the naive t-interval and the corrected one. The table
in docs/training/evidence.md ("Frozen-feature floors on patient-grouped folds") was made with

    nice -n 15 .venv/bin/python -m bench.bench_floors --data /work/shared/data/ecg/ptbxl \\
        --runs runs/floors --out docs/training/floors.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs", type=Path, default=Path("runs/floors"))
    p.add_argument("--out", type=Path, default=Path("docs/training/floors.json"))
    p.add_argument("--event-rate", type=float, default=0.05)
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument("--folds", default="patient")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    from hfrisk.training.data.cohort import PAPER_CV_SEEDS
    from hfrisk.training.data.ptbxl import PTBXL
    from hfrisk.training.data.synthetic_cohort import oracle_method, synthetic_hf_cohort
    from hfrisk.training.evaluation.comparison import paired_difference
    from hfrisk.training.evaluation.cox_baseline import CoxBaselineConfig, cox_method
    from hfrisk.training.evaluation.floors import RIDGE_PENALIZERS, principal_components_method
    from hfrisk.training.evaluation.probe import embed, random_encoder
    from hfrisk.training.evaluation.protocol import cross_validate
    from hfrisk.training.finetune.data import FinetuneData

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    synth = synthetic_hf_cohort(PTBXL(a.data, sampling_rate=100), event_rate=a.event_rate, seed=a.cohort_seed,
                                with_demographics=True)
    cohort = synth.cohort
    tick = time.perf_counter()
    inputs = FinetuneData.from_cohort(cohort, cache_dir=a.runs / "cache")
    seconds["preprocess"] = time.perf_counter() - tick
    x = inputs.x.numpy()
    tick = time.perf_counter()
    embedding = embed(random_encoder("dual_attention", seed=72), x)
    seconds["embed"] = time.perf_counter() - tick
    records = cohort.records
    demographics = cohort.table[["age", "sex"]].astype(float).set_axis(records)
    methods = [
        oracle_method(synth.log_hazard),
        cox_method(demographics, CoxBaselineConfig(features=("age", "sex"), penalizers=RIDGE_PENALIZERS)),
        principal_components_method(x, "ridge_cox_beat_pcs", records=records),
        principal_components_method(embedding, "ridge_cox_random_embedding_pcs", records=records),
    ]
    methods[1].name = "cox_age_sex"
    results = {}
    for method in methods:
        tick = time.perf_counter()
        results[method.name] = cross_validate(cohort, method, a.runs / method.name, seeds=PAPER_CV_SEEDS, by=a.folds,
                                              progress=False)
        seconds[method.name] = time.perf_counter() - tick
    rows = []
    for name, result in results.items():
        c = result.summary["metrics"]["harrell_c"]
        row = {"method": name, "runs": int(c["n_runs"]), "harrell_c": c["mean"], "sd": c["sd"],
               "ci_low": c["ci_low"], "ci_high": c["ci_high"], "seconds": seconds[name]}
        for reference in ("oracle_true_hazard", "cox_age_sex"):
            if reference != name:
                row[f"minus_{reference}"] = paired_difference(result.runs, results[reference].runs)
        rows.append(row)
    out = {
        "command": "python -m bench.bench_floors " + " ".join(argv or sys.argv[1:]),
        "cohort": {**{k: v for k, v in synth.summary().items() if k not in ("spec", "records_root")},
                   "patients": int(cohort.table["patient_id"].nunique()),
                   "folds": results["oracle_true_hazard"].summary.get("folds")},
        "usable_inputs": int((inputs.lead_mask.sum(dim=1) > 0).sum()),
        "rows": rows, "seconds": {**seconds, "total": time.perf_counter() - started}, "threads": a.threads,
        "load_average": list(os.getloadavg()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    for row in rows:
        diffs = "; ".join(f"{k}: {v['mean']:+.3f} ({v['ci_low']:+.3f} to {v['ci_high']:+.3f}; corrected "
                          f"{v['corrected_ci_low']:+.3f} to {v['corrected_ci_high']:+.3f}; wins {v['wins']}/{v['n']})"
                          for k, v in row.items() if k.startswith("minus_"))
        print(f"{row['method']}: C {row['harrell_c']:.3f} ± {row['sd']:.3f} [{row['ci_low']:.3f}-{row['ci_high']:.3f}] "
              f"{row['seconds']:.0f} s | {diffs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
