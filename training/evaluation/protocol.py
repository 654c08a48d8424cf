"""The paper's evaluation protocol, for any risk model: repeated stratified 2-fold cross-validation.

For each of the paper's seeds, 2 folds stratified on the event and grouped by patient (no patient's
ECGs on both sides; ``by="record"`` is the paper's record-wise split, ``by="strat_fold"`` keeps
PTB-XL's own folds whole); inside each training fold an 80/20 split, grouped the same way, chooses
the model; the figure is the mean test Harrell C over the 10 runs. A *method*
is any ``method(split, run_dir) -> MethodResult`` (:func:`hfrisk.training.finetune.method.finetune_method`,
:func:`hfrisk.training.evaluation.cox_baseline.cox_method`). Details: docs/training/evaluation.md.

>>> result = cross_validate(cohort, cox_method(), "runs/cv-cox")  # doctest: +SKIP
>>> result.summary["metrics"]["harrell_c"]["mean"]                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

from hfrisk.training.data.cohort import PAPER_CV_SEEDS, Cohort
from hfrisk.training.metrics.results import MethodResult, harrell_c_or_nan
from hfrisk.training.metrics.summary import summarize

__all__ = [
    "Split",
    "Method",
    "ProtocolResult",
    "paper_splits",
    "fixed_split",
    "run_protocol",
    "cross_validate",
    "evaluate_fixed_split",
    "METRICS",
    "RUNS_FILENAME",
    "SUMMARY_FILENAME",
]

log = get_logger(__name__)

METRICS: tuple[str, ...] = ("harrell_c", "uno_c", "mean_auc", "ibs")
RUNS_FILENAME = "runs.csv"
SUMMARY_FILENAME = "summary.json"
PREDICTIONS_FILENAME = "predictions.csv"


@dataclass(frozen=True)
class Split:
    """One run: the training fold (with its inner fit/validation split) and the test fold.

    ``fit_index`` and ``val_index`` are positions in ``train``; ``train_index`` and ``test_index``
    positions in the cohort the split was made from.
    """

    seed: int
    fold: int
    train: Cohort
    test: Cohort
    fit_index: np.ndarray
    val_index: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray

    @property
    def fit(self) -> Cohort:
        return self.train.subset(self.fit_index)

    @property
    def val(self) -> Cohort:
        return self.train.subset(self.val_index)

    @property
    def name(self) -> str:
        return f"seed{self.seed}-fold{self.fold}"

    def test_fingerprint(self) -> str:
        """A short hash of the test records: equal for equal test folds."""
        joined = "\n".join(sorted(self.test.records)).encode()
        return hashlib.sha1(joined).hexdigest()[:12]


Method = Callable[[Split, Path], MethodResult]


def paper_splits(
    cohort: Cohort,
    seeds: Sequence[int] = PAPER_CV_SEEDS,
    n_folds: int = 2,
    val_frac: float = 0.2,
    by: str = "patient",
) -> list[Split]:
    """The ``len(seeds) × n_folds`` splits of the paper, grouped by ``by`` (:data:`~hfrisk.training.data.cohort.FOLD_SCHEMES`);
    the inner split uses the same seed and grouping."""
    splits = []
    for seed in seeds:
        for fold, (train_index, test_index) in enumerate(cohort.stratified_folds(n_folds, seed, by=by)):
            train = cohort.subset(train_index)
            fit_index, val_index = train.inner_split(val_frac, seed, by=by)
            splits.append(Split(seed, fold, train, cohort.subset(test_index), fit_index, val_index, train_index, test_index))
    return splits


def fixed_split(train: Cohort, test: Cohort, seed: int = 42, val_frac: float = 0.2) -> Split:
    """One run on a given train/test partition (e.g. PTB-XL folds 1–8 vs 10), inner split as usual."""
    fit_index, val_index = train.inner_split(val_frac, seed)
    return Split(seed, 0, train, test, fit_index, val_index, np.arange(len(train)), np.arange(len(test)))


def _evaluate(split: Split, result: MethodResult, n_boot: int) -> dict[str, Any]:
    train, test = split.train, split.test
    train_risk = np.asarray(result.train_risk, dtype=np.float64).reshape(-1)
    test_risk = np.asarray(result.test_risk, dtype=np.float64).reshape(-1)
    if len(train_risk) != len(train) or len(test_risk) != len(test):
        raise ValueError(
            f"{split.name}: the method returned {len(train_risk)} train and {len(test_risk)} test risks "
            f"for folds of {len(train)} and {len(test)}"
        )
    try:
        metrics = summarize(train_risk, train.event, train.time, test_risk, test.event, test.time, n_boot=n_boot,
                            seed=split.seed)
    except ValueError as error:
        # Tiny or event-poor test folds leave the time-dependent metrics undefined; C still is.
        log.warning("protocol.metrics_partial", run=split.name, reason=str(error))
        metrics = {name: float("nan") for name in METRICS}
        metrics["harrell_c"] = harrell_c_or_nan(test_risk, test.event, test.time)
        metrics.update(n_test=len(test), n_test_events=test.n_events)
    return metrics


def _t_quantile(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2.0, dof))


def _aggregate(runs: pd.DataFrame, level: float) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        values = runs[metric].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        n = len(values)
        if n == 0:
            continue
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if n > 1 else float("nan")
        half = _t_quantile(level, n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
        entry = {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n_runs": n,
                 "min": float(values.min()), "max": float(values.max())}
        if n > 1 and {"n_test", "n_train"} <= set(runs.columns):
            # The runs share subjects: Nadeau-Bengio's variance sd^2 (1/n + n_test/n_train) is the one
            # that matched the spread over new cohorts in docs/training/evidence.md ("Power").
            ratio = float((runs["n_test"] / runs["n_train"]).mean())
            corrected = _t_quantile(level, n - 1) * sd * math.sqrt(1.0 / n + ratio)
            entry.update(corrected_ci_low=mean - corrected, corrected_ci_high=mean + corrected)
        per_seed = runs.groupby("seed")[metric].std(ddof=0)
        if len(per_seed) and runs.groupby("seed").size().min() > 1:
            # The paper's code prints this as "std": within-seed SD over folds, averaged over seeds.
            entry["paper_std"] = float(per_seed.mean())
        summary[metric] = entry
    return summary


@dataclass
class ProtocolResult:
    """Per-run metrics (``runs``, tidy) and their aggregate (``summary``), for one method."""

    method: str
    runs: pd.DataFrame
    summary: dict[str, Any]
    info: list[dict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "summary": self.summary,
            "runs": json.loads(self.runs.to_json(orient="records")),
            "info": self.info,
        }

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.runs.to_csv(out / RUNS_FILENAME, index=False)
        (out / SUMMARY_FILENAME).write_text(json.dumps(self.to_json(), indent=2, default=_json_default) + "\n")
        return out

    def describe(self, metric: str = "harrell_c") -> str:
        s = self.summary["metrics"].get(metric)
        if s is None:
            return f"{self.method}: {metric} undefined"
        return (f"{self.method}: {metric} {s['mean']:.4f} ± {s['sd']:.4f} (SD over {s['n_runs']} runs; "
                f"{int(100 * self.summary['ci_level'])}% CI {s['ci_low']:.4f}–{s['ci_high']:.4f})")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def run_protocol(
    splits: Sequence[Split],
    method: Method,
    out_dir: str | Path,
    *,
    method_name: str | None = None,
    n_boot: int = 0,
    ci_level: float = 0.95,
    progress: bool = True,
    folds: str | None = None,
) -> ProtocolResult:
    """Run ``method`` on every split, evaluate each test fold with :func:`summarize`, aggregate.

    Each run gets ``out_dir/<seed>-<fold>/`` for its artefacts and a ``predictions.csv`` (record,
    time, event, log_risk, part). ``runs.csv`` and ``summary.json`` land in ``out_dir``; ``folds``
    (how the splits were grouped) is recorded in the summary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = method_name or getattr(method, "name", getattr(method, "__name__", "method"))
    rows, infos = [], []
    iterator: Sequence[Split] = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc=f"{name} runs", unit="run")
    for split in iterator:
        run_dir = out / split.name
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        result = method(split, run_dir)
        seconds = time.perf_counter() - started
        metrics = _evaluate(split, result, n_boot)
        _write_predictions(run_dir / PREDICTIONS_FILENAME, split, result)
        rows.append({
            "method": name, "seed": split.seed, "fold": split.fold,
            **{m: metrics.get(m, float("nan")) for m in METRICS},
            "n_train": len(split.train), "n_train_events": split.train.n_events,
            "n_fit": len(split.fit_index), "n_val": len(split.val_index),
            "n_val_events": int(split.train.event[split.val_index].sum()),
            "n_test": len(split.test), "n_test_events": split.test.n_events,
            "val_harrell_c": result.info.get("val_harrell_c", float("nan")),
            "test_fingerprint": split.test_fingerprint(), "seconds": seconds, "run_dir": str(run_dir),
        })
        infos.append({"run": split.name, **result.info, "metrics": metrics})
        log.info("protocol.run_done", method=name, run=split.name, harrell_c=round(metrics["harrell_c"], 4),
                 seconds=round(seconds, 1))
    runs = pd.DataFrame(rows)
    summary = {"ci_level": ci_level, "n_runs": len(runs), "metrics": _aggregate(runs, ci_level)}
    if folds is not None:
        summary["folds"] = folds
    result = ProtocolResult(name, runs, summary, infos)
    result.save(out)
    log.info("protocol.done", method=name, summary=result.describe())
    return result


def _write_predictions(path: Path, split: Split, result: MethodResult) -> None:
    parts = []
    for part, cohort, risk in (("train", split.train, result.train_risk), ("test", split.test, result.test_risk)):
        frame = pd.DataFrame({"record": cohort.records, "time": cohort.time, "event": cohort.event,
                              "log_risk": np.asarray(risk, dtype=np.float64).reshape(-1), "part": part})
        if part == "train":
            frame.loc[split.val_index, "part"] = "val"
        parts.append(frame)
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)


def cross_validate(
    cohort: Cohort,
    method: Method,
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = PAPER_CV_SEEDS,
    n_folds: int = 2,
    val_frac: float = 0.2,
    by: str = "patient",
    **kwargs,
) -> ProtocolResult:
    """The paper's protocol: ``len(seeds) × n_folds`` runs of :func:`paper_splits`, then :func:`run_protocol`."""
    splits = paper_splits(cohort, seeds, n_folds, val_frac, by=by)
    return run_protocol(splits, method, out_dir, folds=cohort.fold_description(by), **kwargs)


def evaluate_fixed_split(
    train: Cohort, test: Cohort, method: Method, out_dir: str | Path, *, seed: int = 42, val_frac: float = 0.2,
    **kwargs,
) -> ProtocolResult:
    """One run on a fixed train/test partition, with the same inner selection and evaluation."""
    return run_protocol([fixed_split(train, test, seed, val_frac)], method, out_dir, **kwargs)
