"""The evidence table on real ECGs: every method of issue #3 under the paper's protocol, one run.

Runs, one after the other (each step a real ``hfrisk`` command, its output under ``--runs``):

1. the semi-synthetic cohort on the labelled PTB-XL records (``hfrisk synthetic-cohort``);
2. the Cox baseline on neurokit2 measurements, with the oracle (true hazard) on the same folds;
3. pretraining (``hfrisk pretrain``), unless ``--pretrained`` names a checkpoint;
4. the linear probe of the pretrained encoder and of its random initialisation (``hfrisk probe``);
5. ``hfrisk evaluate`` for the dual-attention network from the pretrained encoder, the same from
   scratch, and xresnet1d101 from scratch: the same seeds, hence the same 10 folds, for all.

A step whose output exists is skipped (resumable: run the same command again after a stop), and
``steps.json`` keeps each step's command and wall time. The table is then written to
``--out``/evidence.md and evidence.json, from whatever steps have finished.

    nohup nice -n 10 .venv/bin/python -m bench.bench_evidence --data /work/shared/data/ecg/ptbxl \\
        --out docs/training --runs runs/evidence > runs/evidence.log 2>&1 &

``--report-only`` rewrites the table from the finished steps without running anything; when the run
folder is gone it re-renders from the committed ``--out``/evidence.json. Only the block between the
``bench_evidence`` markers of evidence.md is rewritten: the rest of the file (the same-folds tables of
``bench/bench_floors.py``, the power section, the hand-written readings) is kept.

These rows are from the run of 2026-11-24: 897 records, record-wise folds, 6 fine-tuning epochs. The
current protocol (patient-grouped folds, all 1,999 100-Hz records) is in ``bench/bench_floors.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.record import write_marked_block

HFRISK = [sys.executable, "-m", "hfrisk.cli"]
THREADS = 1
BEGIN, END = "<!-- bench_evidence:begin -->", "<!-- bench_evidence:end -->"
DRIVER_FILE = "driver.txt"  # the command line that ran the steps (a --report-only rerun keeps it)


@dataclass
class Step:
    name: str
    args: list[str]
    output: Path  # the step is done when this exists
    label: str = ""
    budget: str = ""
    summary: Path | None = None  # summary.json of an evaluate step
    extra: dict = field(default_factory=dict)


def _hfrisk_args(args: list[str]) -> list[str]:
    return [str(a) for a in args]


def _plan(a: argparse.Namespace) -> list[Step]:
    runs, data = a.runs, a.data
    cohort = runs / "cohort"
    cohort_csv = cohort / "cohort.csv"
    cache = runs / "cache"
    checkpoint = a.pretrained or runs / "pretrain" / "best.pt"
    seeds = [x for s in a.seeds for x in ("--seed", str(s))]
    xr_seeds = [x for s in (a.xresnet_seeds or a.seeds) for x in ("--seed", str(s))]
    common = ["--batch-size", str(a.batch_size), "--device", "cpu", "--cache-dir", str(cache / "model_inputs"),
              "--n-boot", str(a.n_boot)]
    n_runs, n_xr = 2 * len(a.seeds), 2 * len(a.xresnet_seeds or a.seeds)
    steps = [
        Step("cohort", ["synthetic-cohort", data, "--sampling-rate", "100", "--event-rate", str(a.event_rate),
                        "--seed", "0", "--out", cohort], cohort_csv),
        Step("cox", ["evaluate", cohort_csv, "--method", "cox", "--out", runs / "eval-cox", *seeds,
                     "--n-boot", str(a.n_boot)],
             runs / "eval-cox" / "cox_measurements" / "summary.json", label="Cox PH on ECG measurements (neurokit2)",
             budget="penalty chosen on the inner 20 %", summary=runs / "eval-cox" / "cox_measurements" / "summary.json"),
    ]
    if a.pretrained is None:
        steps.append(Step("pretrain", ["pretrain", "--data-root", data, "--sampling-rate", "500", "--max-epochs",
                                       str(a.pretrain_epochs), "--batch-size", "64", "--run-dir", runs / "pretrain",
                                       "--cache-dir", cache, "--device", "cpu", "--no-progress"],
                          runs / "pretrain" / "history-done.json",
                          budget=f"{a.pretrain_epochs} epochs, batch 64, PTB-XL 500 Hz validated folds 1-8"))
    steps.append(Step("probe", ["probe", data, "--checkpoint", checkpoint, "--out", runs / "probe.json",
                                "--n-boot", "1000", "--cache-dir", cache / "model_inputs", "--no-progress"],
                      runs / "probe.json"))
    for name, label, extra, epochs, s, n in (
        ("dual_attention_pretrained", "dual-attention, pretrained encoder", ["--init", checkpoint],
         a.epochs_pretrained, seeds, n_runs),
        ("dual_attention_scratch", "dual-attention, from scratch", [], a.epochs_scratch, seeds, n_runs),
        ("xresnet1d101_scratch", "xresnet1d101, from scratch", [], a.epochs_xresnet,
         xr_seeds, n_xr),
    ):
        encoder = "xresnet1d101" if name.startswith("xresnet") else "dual_attention"
        method = f"finetune_{encoder}_{'pretrained' if 'pretrained' in name else 'scratch'}"
        out = runs / f"eval-{name}"
        steps.append(Step(name, ["evaluate", cohort_csv, "--method", "finetune", "--encoder", encoder, *extra,
                                 "--epochs", str(epochs), *s, "--out", out, *common],
                          out / method / "summary.json", label=label,
                          budget=f"{epochs} epochs x {n} runs, batch {a.batch_size}, Cox + recon (alpha 0.5)"
                          + (" after the pretraining below" if extra[:1] == ["--init"] else ""),
                          summary=out / method / "summary.json"))
    return steps


def _load_steps(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _run(step: Step, runs: Path, record: dict, log_dir: Path) -> None:
    command = HFRISK + _hfrisk_args(step.args)
    shown = "hfrisk " + shlex.join(_hfrisk_args(step.args))
    resume = step.name == "pretrain" and (runs / "pretrain" / "last.pt").exists()
    if resume:  # an interrupted pretraining continues from its last epoch
        command = HFRISK + ["pretrain", "--resume", str(runs / "pretrain"), "--device", "cpu", "--no-progress"]
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {step.name}: {shown}", flush=True)
    # One torch/BLAS thread per process: on a shared, oversubscribed 2-core box two threads spin
    # against each other and ran a fine-tuning batch 2.5x slower than one (measured while choosing epochs).
    env = os.environ | {k: str(THREADS) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with (log_dir / f"{step.name}.log").open("a") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"step {step.name} failed (exit {done.returncode}); see {log_dir / (step.name + '.log')}")
    previous = record.get(step.name, {}).get("seconds", 0.0) if resume else 0.0
    record[step.name] = {"command": shown, "seconds": round(previous + seconds, 1),
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if step.name == "pretrain":
        step.output.write_text(json.dumps(record[step.name]) + "\n")
    print(f"[{time.strftime('%H:%M:%S')}] {step.name}: done in {seconds:.0f} s", flush=True)


def _machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": THREADS,
            "python": platform.python_version(), "platform": platform.platform(), "gpu": "none (CPU only)",
            "load_average_at_report": [round(x, 1) for x in os.getloadavg()]}


def _paired(runs_a: Path, runs_b: Path) -> dict | None:
    """Mean paired difference of Harrell C over the folds both methods ran (same test fingerprints)."""
    if not (runs_a.exists() and runs_b.exists()):
        return None
    a, b = pd.read_csv(runs_a), pd.read_csv(runs_b)
    both = a.merge(b, on=["seed", "fold", "test_fingerprint"], suffixes=("_a", "_b"))
    d = (both["harrell_c_a"] - both["harrell_c_b"]).dropna().to_numpy()
    if len(d) < 2:
        return None
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return {"n": int(len(d)), "mean_diff": float(d.mean()), "ci_low": float(d.mean() - half),
            "ci_high": float(d.mean() + half), "wins": int((d > 0).sum())}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def report(a: argparse.Namespace, steps: list[Step], record: dict) -> dict:
    committed = a.out / "evidence.json"
    if not record and committed.exists():  # the run folder is gone: re-render what was committed
        result = json.loads(committed.read_text())
        _write_block(a.out / "evidence.md", _markdown(result, a))
        return result
    rows = []
    oracle = a.runs / "eval-cox" / "oracle_true_hazard" / "summary.json"
    entries = [("oracle", "true hazard (oracle, same folds)", oracle, "none (the simulated hazard)")]
    entries += [(s.name, s.label, s.summary, s.budget) for s in steps if s.summary is not None]
    for name, label, path, budget in entries:
        if path is None or not path.exists():
            rows.append({"step": name, "method": label, "status": "not run"})
            continue
        summary = json.loads(path.read_text())["summary"]
        m = summary["metrics"]
        step_name = "cox" if name == "oracle" else name
        rows.append({
            "step": name, "method": label, "status": "done", "runs": summary["n_runs"], "budget": budget,
            "harrell_c": m["harrell_c"]["mean"], "harrell_sd": m["harrell_c"]["sd"],
            "ci_low": m["harrell_c"]["ci_low"], "ci_high": m["harrell_c"]["ci_high"],
            "uno_c": m.get("uno_c", {}).get("mean"), "ibs": m.get("ibs", {}).get("mean"),
            "mean_auc": m.get("mean_auc", {}).get("mean"),
            # The oracle is scored inside the Cox step: it has no wall time of its own.
            "wall_s": None if name == "oracle" else record.get(step_name, {}).get("seconds"),
            "command": record.get(step_name, {}).get("command"),
        })
    probe = json.loads((a.runs / "probe.json").read_text()) if (a.runs / "probe.json").exists() else None
    pre_runs = a.runs / "eval-dual_attention_pretrained" / "finetune_dual_attention_pretrained" / "runs.csv"
    scr_runs = a.runs / "eval-dual_attention_scratch" / "finetune_dual_attention_scratch" / "runs.csv"
    pretrain_history = a.runs / "pretrain" / "metrics.jsonl"
    history = [json.loads(l) for l in pretrain_history.read_text().splitlines()] if pretrain_history.exists() else []
    cohort_json = a.runs / "cohort" / "synthetic_cohort.json"
    result = {
        "rows": rows,
        "paired_pretrained_minus_scratch": _paired(pre_runs, scr_runs),
        "probe": probe,
        "pretraining": {"checkpoint": str(a.pretrained or a.runs / "pretrain" / "best.pt"),
                        "epochs_run": len(history),
                        "best_epoch": history[-1].get("best_epoch") if history else None,
                        "first_epoch": {k: history[0].get(k) for k in ("val_recon", "val_align")} if history else None,
                        "last_epoch": {k: history[-1].get(k) for k in ("val_recon", "val_align", "val_cos_matched",
                                                                      "val_cos_shuffled")} if history else None,
                        "n_train": (json.loads((a.runs / "pretrain" / "config.json").read_text())
                                    .get("provenance", {}).get("n_train")
                                    if (a.runs / "pretrain" / "config.json").exists() else None),
                        **record.get("pretrain", {})},
        "cohort": json.loads(cohort_json.read_text()) if cohort_json.exists() else None,
        "steps": record,
        "machine": _machine(),
        "driver": (a.runs / DRIVER_FILE).read_text().strip() if (a.runs / DRIVER_FILE).exists() else None,
        "total_wall_s": round(sum(v.get("seconds", 0) for v in record.values()), 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "evidence.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _write_block(a.out / "evidence.md", _markdown(result, a))
    return result


def _write_block(path: Path, block: str) -> None:
    write_marked_block(path, block, BEGIN, END)


def _markdown(r: dict, a: argparse.Namespace) -> str:
    lines = [BEGIN, "", "*Generated by `bench/bench_evidence.py` (`--report-only` re-renders it from "
             "`docs/training/evidence.json`); the text outside the markers is written by hand.*", "",
             "#### Harrell C on the 897-record cohort, record-wise folds (older run)", ""]
    c = r["cohort"] or {}
    if c:
        lines += [f"Cohort: {c.get('n')} labelled 100-Hz PTB-XL records, {c.get('n_events')} events "
                  f"({100 * c.get('event_rate', 0):.1f} %), seed {c.get('seed')}; "
                  "[how it is built](synthetic_cohort.md). Protocol: seeds "
                  f"{', '.join(map(str, a.seeds))} × 2 stratified folds, inner 80/20 checkpoint choice; "
                  "every method runs on the same folds (same test-fold fingerprints).", ""]
    lines += ["| method | runs | training budget | Harrell C mean ± SD | 95 % CI of the mean (t, over runs) | Uno C | IBS | wall time |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["rows"]:
        if row["status"] != "done":
            lines.append(f"| {row['method']} | not run | | | | | | |")
            continue
        wall = f"{row['wall_s'] / 60:.1f} min" if row.get("wall_s") else ("in the Cox step" if row["step"] == "oracle" else "—")
        lines.append(f"| {row['method']} | {row['runs']} | {row['budget']} | {_fmt(row['harrell_c'])} ± "
                     f"{_fmt(row['harrell_sd'])} | {_fmt(row['ci_low'])}–{_fmt(row['ci_high'])} | "
                     f"{_fmt(row['uno_c'])} | {_fmt(row['ibs'])} | {wall} |")
    p = r["paired_pretrained_minus_scratch"]
    if p:
        lines += ["", f"Paired on the same folds, dual-attention pretrained − from scratch: "
                      f"ΔC = {p['mean_diff']:+.3f} (95 % CI {p['ci_low']:+.3f} to {p['ci_high']:+.3f}, "
                      f"pretrained better in {p['wins']}/{p['n']} runs)."]
    lines += ["", "The t-interval is over the 10 runs, which share subjects: it is narrower than an interval over "
                  "independent cohorts would be (training/evaluation/protocol.py).", ""]
    probe = r["probe"]
    if probe:
        lines += ["#### Linear probe of the frozen encoder (PTB-XL diagnostic superclasses)", "",
                  f"{probe['n_records']} labelled {probe['sampling_rate']}-Hz records with a superclass; one-vs-rest "
                  "logistic regression on the standardised 512-d embedding of the median-beat input, trained on folds "
                  "1–8, C chosen on fold 9, macro AUC (NORM, MI, STTC, HYP, CD) on fold 10 with a 1000-resample "
                  "bootstrap interval. Code: `training/evaluation/probe.py` (`hfrisk probe`).", "",
                  "| encoder | C | val macro AUC | test macro AUC (95 % bootstrap CI) | " +
                  " | ".join(f"{k} AUC" for k in ("NORM", "MI", "STTC", "HYP", "CD")) + " |",
                  "| --- | --- | --- | --- | " + " | ".join(["---"] * 5) + " |"]
        for key in ("pretrained", "random", "input"):
            if key in probe:
                e = probe[key]
                per = " | ".join(_fmt(e["test_auc"].get(k)) for k in ("NORM", "MI", "STTC", "HYP", "CD"))
                lines.append(f"| {e['encoder']} | {e['c']:g} | {_fmt(e['val_macro_auc'])} | "
                             f"{_fmt(e['test_macro_auc'])} ({_fmt(e['test_ci_low'])}–{_fmt(e['test_ci_high'])}) | {per} |")
        some = probe.get("pretrained") or probe.get("random")
        lines += ["", f"Split sizes: {some['n_train']} train, {some['n_val']} validation, {some['n_test']} test records; "
                      f"test positives {some['positives_test']}.", ""]
    pt = r["pretraining"]
    if pt.get("epochs_run"):
        lines += ["#### Pretraining (of that run)", "",
                  f"{pt['epochs_run']} epochs on {pt.get('n_train')} validated 500-Hz PTB-XL records (folds 1–8; the "
                  f"shared subset has only ecg_id 1–500 at 500 Hz); best epoch {pt['best_epoch']} by validation "
                  f"reconstruction. Validation reconstruction {_fmt(pt['first_epoch']['val_recon'])} → "
                  f"{_fmt(pt['last_epoch']['val_recon'])}, alignment loss {_fmt(pt['first_epoch']['val_align'])} → "
                  f"{_fmt(pt['last_epoch']['val_align'])}; cosine of matched vs shuffled ECG–text pairs "
                  f"{_fmt(pt['last_epoch']['val_cos_matched'])} vs {_fmt(pt['last_epoch']['val_cos_shuffled'])}.", ""]
    lines += ["#### Commands, wall time and machine (of that run)", "",
              f"Driver: `nice -n 10 {r['driver']}` (total {r['total_wall_s'] / 60:.1f} min of steps).", "",
              "| step | wall time | command |", "| --- | --- | --- |"]
    for name, s in r["steps"].items():
        lines.append(f"| {name} | {s['seconds'] / 60:.1f} min | `{s['command']}` |")
    m = r["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores shared with other engineers' jobs (load average at the "
                  f"end {m['load_average_at_report']}), {m['gpu']}; torch {m['torch']} ({m['torch_threads']} thread(s) per step), "
                  f"Python {m['python']}. Wall times depend on that load.", ""]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="PTB-XL root (records100/ and records500/).")
    p.add_argument("--out", type=Path, default=Path("docs/training"), help="Folder for evidence.md and evidence.json.")
    p.add_argument("--runs", type=Path, default=Path("runs/evidence"), help="Run outputs (git-ignored).")
    p.add_argument("--pretrained", type=Path, help="Reuse this pretraining checkpoint instead of pretraining.")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--epochs-pretrained", type=int, default=15, help="Fine-tuning epochs from the pretrained encoder.")
    p.add_argument("--epochs-scratch", type=int, default=15, help="Fine-tuning epochs of dual-attention from scratch.")
    p.add_argument("--epochs-xresnet", type=int, default=8, help="Fine-tuning epochs of xresnet1d101 from scratch.")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 2021, 2022, 2023, 2024], help="CV seeds (paper's).")
    p.add_argument("--xresnet-seeds", type=int, nargs="+", help="Fewer seeds for xresnet1d101 (default: --seeds).")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--event-rate", type=float, default=0.05)
    p.add_argument("--n-boot", type=int, default=0, help="Bootstrap resamples per test fold in evaluate.")
    p.add_argument("--only", nargs="+", help="Run only these steps (names as in steps.json).")
    p.add_argument("--report-only", action="store_true", help="Only rewrite evidence.md/.json from finished steps.")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per step.")
    a = p.parse_args(argv)
    global THREADS
    THREADS = a.threads
    a.runs.mkdir(parents=True, exist_ok=True)
    record_path = a.runs / "steps.json"
    record = _load_steps(record_path)
    steps = _plan(a)
    if not a.report_only:
        from tqdm.auto import tqdm

        (a.runs / DRIVER_FILE).write_text("python -m bench.bench_evidence " + shlex.join(argv or sys.argv[1:]) + "\n")
        todo = [s for s in steps if not a.only or s.name in a.only]
        for step in tqdm(todo, desc="evidence steps", unit="step", file=sys.stdout):
            if step.output.exists():
                print(f"{step.name}: {step.output} exists, skipped", flush=True)
                continue
            _run(step, a.runs, record, a.runs / "logs")
            record_path.write_text(json.dumps(record, indent=2) + "\n")
            report(a, steps, record)
    report(a, steps, record)
    print(f"wrote {a.out / 'evidence.md'} and {a.out / 'evidence.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
