"""How many runs tell two methods apart by 0.03 in C: measured by simulation on the semi-synthetic cohort.

Every replicate draws new outcomes for the same real PTB-XL records (the diagnosis-label hazard,
``synthetic_hf_cohort``'s), splits them with the protocol's patient-grouped folds over ``--seeds``
seeds x 2 folds, and scores on every test fold:

* ``oracle``: the true log-hazard;
* ``oracle_noisy``: the true log-hazard plus Gaussian noise fixed per record (a model with a fixed
  error), its SD calibrated so that the oracle beats it by ``--delta`` in C on average;
* ``oracle_noisy_b``: a second, independent noisy copy at the same SD (the null: no true difference);
* ``age_sex``: a Cox model on age and sex fitted on the training fold (lifelines), a real method.

Per replicate: the per-run SD of each paired difference and the paired t-test over the runs. Over
replicates: the spread of the run-mean difference (the noise a new cohort would bring), the share of
replicates in which the t-test rejects (power, and the false-positive rate under the null), and the
SD of one fold's C against the Hanley-McNeil SE. Output: JSON for docs/training/evidence.md
("Power: how many runs"); the figures there were made with

    nice -n 15 .venv/bin/python -m bench.bench_power --data /work/shared/data/ecg/ptbxl --out docs/training/power.json \\
        --replicates 100 --seeds 20 --age-sex-replicates 30
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from lifelines.utils import concordance_index
from scipy import stats

from hfrisk.training.data.cohort import Cohort
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.data.synthetic_cohort import HazardSpec, simulate_outcomes
from hfrisk.training.evaluation.power import (
    events_needed,
    harrell_c_se,
    paired_c_difference_se,
    paired_t_power,
    runs_needed,
    runs_needed_corrected,
    sd_from_t_interval,
)

SEEDS = (42, 2021, 2022, 2023, 2024, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61)


def harrell(risk: np.ndarray, event: np.ndarray, time_: np.ndarray) -> float:
    return float(concordance_index(time_, -risk, event))


def covariates_of(ptbxl: PTBXL, spec: HazardSpec) -> pd.DataFrame:
    labels = ptbxl.superclass_labels(min_likelihood=spec.min_likelihood)
    return labels.join(ptbxl.demographics())


def calibrate_noise(eta: np.ndarray, covariates: pd.DataFrame, spec: HazardSpec, event_rate: float, delta: float) -> float:
    """The noise SD at which C(eta) - C(eta + noise) averages ``delta`` (common random numbers, bisection)."""
    draws = []
    for rep in range(10):
        out = simulate_outcomes(covariates, event_rate, 10_000 + rep, spec)
        draws.append((out, np.random.default_rng(20_000 + rep).normal(size=len(eta))))

    def gap(sd: float) -> float:
        return float(np.mean([harrell(eta, o.event, o.time) - harrell(eta + sd * z, o.event, o.time) for o, z in draws]))

    low, high = 0.0, 5.0
    for _ in range(30):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if gap(mid) < delta else (low, mid)
    return 0.5 * (low + high)


def age_sex_cox(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    from lifelines import CoxPHFitter

    columns = ["age", "sex"]
    fitter = CoxPHFitter(penalizer=1e-4).fit(train[columns + ["time", "event"]], "time", "event")
    return fitter.predict_log_partial_hazard(test[columns]).to_numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="PTB-XL root (records100/).")
    p.add_argument("--out", type=Path, default=Path("docs/training/power.json"))
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--seeds", type=int, default=20, help=f"CV seeds per replicate (at most {len(SEEDS)}).")
    p.add_argument("--event-rate", type=float, default=0.05)
    p.add_argument("--delta", type=float, default=0.03)
    p.add_argument("--age-sex-replicates", type=int, default=30, help="Replicates that also fit the age + sex Cox.")
    a = p.parse_args(argv)
    started = time.perf_counter()
    ptbxl = PTBXL(a.data, sampling_rate=100)
    spec = HazardSpec()
    covariates = covariates_of(ptbxl, spec)
    ids = covariates.index.to_numpy()
    eta = spec.log_hazard(covariates)
    patient = ptbxl.metadata.loc[ids, "patient_id"].astype("Int64").to_numpy()
    demographics = ptbxl.demographics().loc[ids]
    age = demographics["age"].astype(float).fillna(demographics["age"].median()).to_numpy()
    sex = demographics["sex"].astype(float).fillna(1.0).to_numpy()
    noise_sd = calibrate_noise(eta, covariates, spec, a.event_rate, a.delta)
    seeds = SEEDS[: a.seeds]

    rows = []
    for rep in range(a.replicates):
        out = simulate_outcomes(covariates, a.event_rate, rep, spec)
        rng = np.random.default_rng(100_000 + rep)
        noisy, noisy_b = eta + noise_sd * rng.normal(size=len(eta)), eta + noise_sd * rng.normal(size=len(eta))
        table = pd.DataFrame({"record": ids.astype(str), "patient_id": patient, "time": out.time, "event": out.event,
                              "age": age, "sex": sex})
        cohort = Cohort(table)
        whole = {name: harrell(score, out.event, out.time) for name, score in
                 (("oracle", eta), ("oracle_noisy", noisy), ("oracle_noisy_b", noisy_b))}
        for seed in seeds:
            for fold, (train, test) in enumerate(cohort.stratified_folds(2, seed)):
                e, t = out.event[test], out.time[test]
                row = {"replicate": rep, "seed": seed, "fold": fold, "n_test_events": int(e.sum()), "n_test": len(test),
                       "oracle": harrell(eta[test], e, t), "oracle_noisy": harrell(noisy[test], e, t),
                       "oracle_noisy_b": harrell(noisy_b[test], e, t),
                       **{f"whole_{k}": v for k, v in whole.items()}}
                if rep < a.age_sex_replicates:
                    row["age_sex"] = harrell(age_sex_cox(table.iloc[train], table.iloc[test]), e, t)
                rows.append(row)
        if rep % 10 == 0:
            print(f"replicate {rep}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    runs = pd.DataFrame(rows)
    runs["d_noise"] = runs["oracle"] - runs["oracle_noisy"]
    runs["d_null"] = runs["oracle_noisy"] - runs["oracle_noisy_b"]
    runs["d_age_sex"] = runs["oracle"] - runs["age_sex"] if "age_sex" in runs else np.nan

    def per_replicate(column: str, n_seeds: int) -> pd.DataFrame:
        kept = runs[runs["seed"].isin(seeds[:n_seeds])].dropna(subset=[column])
        grouped = kept.groupby("replicate")[column]
        frame = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.size()})
        frame["p"] = [stats.ttest_1samp(g.to_numpy(), 0.0).pvalue for _, g in grouped]
        # Nadeau-Bengio: 2 folds, so n_test / n_train = 1.
        corrected_t = frame["mean"] / (frame["sd"] * np.sqrt(1.0 / frame["n"] + 1.0))
        frame["p_corrected"] = 2 * stats.t.sf(np.abs(corrected_t), frame["n"] - 1)
        return frame

    comparisons = {}
    for column, label in (("d_noise", f"oracle - noisy oracle (true gap {a.delta})"), ("d_null", "noisy - noisy (no true gap)"),
                          ("d_age_sex", "oracle - age+sex Cox")):
        by_seeds = {}
        for n_seeds in sorted({1, 2, 5, 10, len(seeds)} & set(range(1, len(seeds) + 1))):
            frame = per_replicate(column, n_seeds)
            if frame.empty:
                continue
            n_runs = int(frame["n"].median())
            sd_runs = float(frame["sd"].median())
            by_seeds[n_seeds] = {
                "n_runs": n_runs,
                "replicates": len(frame),
                "mean_diff": float(frame["mean"].mean()),
                "median_per_run_sd": sd_runs,
                "naive_se_of_mean": sd_runs / math.sqrt(n_runs),
                "sd_of_mean_over_replicates": float(frame["mean"].std(ddof=1)),
                "t_test_rejects": float((frame["p"] < 0.05).mean()),
                "corrected_sd_of_mean": sd_runs * math.sqrt(1.0 / n_runs + 1.0),
                "corrected_t_test_rejects": float((frame["p_corrected"] < 0.05).mean()),
                "predicted_power_if_independent": paired_t_power(n_runs, sd_runs, a.delta) if n_runs > 1 else None,
            }
        comparisons[column] = {"label": label, "by_seeds": by_seeds}

    whole = runs.drop_duplicates("replicate")
    n_events = int(round(a.event_rate * len(ids)))
    fold_events = float(runs["n_test_events"].mean())
    c_oracle = float(runs["oracle"].mean())
    correlation = float(np.corrcoef(whole["whole_oracle"], whole["whole_oracle_noisy"])[0, 1])
    one_fold = runs[(runs["seed"] == seeds[0]) & (runs["fold"] == 0)]
    se_checks = {
        "one_fold_sd_of_oracle_c": float(one_fold["oracle"].std(ddof=1)),
        "one_fold_hanley_mcneil_se": harrell_c_se(c_oracle, fold_events, len(ids) / 2 - fold_events),
        "whole_cohort_sd_of_oracle_c": float(whole["whole_oracle"].std(ddof=1)),
        "whole_cohort_hanley_mcneil_se": harrell_c_se(float(whole["whole_oracle"].mean()), n_events, len(ids) - n_events),
        "whole_cohort_sd_of_gap": float((whole["whole_oracle"] - whole["whole_oracle_noisy"]).std(ddof=1)),
        "whole_cohort_paired_se_formula": paired_c_difference_se(float(whole["whole_oracle"].mean()),
                                                                 float(whole["whole_oracle_noisy"].mean()),
                                                                 n_events, len(ids) - n_events, correlation),
        "correlation_oracle_vs_noisy_c": correlation,
    }
    # The per-run SD of the network comparison in the evidence table, from its t-interval (10 runs).
    sd_networks = sd_from_t_interval(-0.106, 0.084, 10)
    sd_noise_runs = comparisons["d_noise"]["by_seeds"][5]["median_per_run_sd"]
    plans = {}
    for name, sd in (("dual-attention pretrained - scratch (evidence table)", sd_networks),
                     ("oracle - noisy oracle (simulation, per run)", sd_noise_runs)):
        plans[name] = {"sd_diff": sd, "runs_if_independent": runs_needed(sd, a.delta),
                       "runs_corrected_2fold": runs_needed_corrected(sd, 1.0, a.delta),
                       "runs_corrected_5fold": runs_needed_corrected(sd, 0.25, a.delta),
                       "runs_corrected_10fold": runs_needed_corrected(sd, 1 / 9, a.delta)}
    events = {f"r={r}, event rate {rate}": events_needed(0.75, a.delta, r, rate)
              for r in (0.0, 0.5, 0.8, round(correlation, 2)) for rate in (0.05, 0.25)}
    result = {
        "command": "python -m bench.bench_power " + " ".join(argv or sys.argv[1:]),
        "cohort": {"records": len(ids), "patients": int(pd.Series(patient).nunique()), "events": n_events,
                   "event_rate": a.event_rate, "hazard": spec.describe()},
        "noise_sd": noise_sd, "delta": a.delta, "seeds": list(seeds), "replicates": a.replicates,
        "age_sex_replicates": a.age_sex_replicates,
        "mean_c": {k: float(runs[k].mean()) for k in ("oracle", "oracle_noisy", "oracle_noisy_b", "age_sex") if k in runs},
        "comparisons": comparisons, "se_checks": se_checks, "plans": plans,
        "events_needed_c075": events, "seconds": time.perf_counter() - started,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
