r"""Cox models on the real MUSIC heart-failure cohort: discrimination, calibration, and the fit that is exported.

For each cause-specific endpoint (pump-failure death, cardiac death; competing causes censored) and each
feature set (the ECG measurements + age and sex; age and sex alone; the MUSIC risk score's predictors as
:func:`~hfrisk.training.data.music.music_score_predictors` rebuilds them) an unpenalised lifelines Cox model is
scored by repeated stratified K-fold cross-validation. Every patient's out-of-fold log-risk and predicted
probability of the event by ``horizon_days`` are averaged over the repeats (each comes from models that never
saw that patient), then:

* Harrell's C of those scores, with a percentile bootstrap over patients (one row per patient, so the
  resampling is patient-level); paired bootstrap differences between feature sets on the same resamples;
* calibration by risk deciles: mean predicted :math:`1-\hat S(h)` against Kaplan-Meier :math:`1-S(h)`.
  With competing causes censored both are the cause-specific ("net") risk, so they are comparable; neither
  is the real-world cumulative incidence, which is lower.

:func:`music_cox_coefficients` fits on everyone in natural units and gives what
``training/data/music_cox.json`` holds. Method and results: docs/training/music.md.

>>> result = evaluate_music(load_music(path), n_repeats=10)   # doctest: +SKIP
>>> result.summary["pump_failure"]["ecg"]["harrell_c"]         # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

from hfrisk.training.data.music import ECG_COVARIATES, MUSIC_SCORE_PREDICTORS, endpoint, music_score_predictors
from hfrisk.training.evaluation.cox_baseline import Standardiser

__all__ = [
    "FEATURE_SETS",
    "MusicEvaluation",
    "evaluate_music",
    "cross_validated_scores",
    "fit_cox",
    "music_cox_coefficients",
    "write_music_cox",
    "DEFAULT_HORIZON_DAYS",
]

log = get_logger(__name__)

DAYS_PER_YEAR = 365.25
DEFAULT_HORIZON_DAYS = 3 * DAYS_PER_YEAR
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "ecg": ECG_COVARIATES,
    "age_sex": ("age_years", "male"),
    "music_score_predictors": MUSIC_SCORE_PREDICTORS,
}


def fit_cox(covariates: pd.DataFrame, event: np.ndarray, time: np.ndarray, penalizer: float = 0.0):
    """lifelines' ``CoxPHFitter`` (Efron ties) on these columns; ``penalizer`` 0 is the plain partial likelihood."""
    from lifelines import CoxPHFitter

    frame = covariates.astype(float).copy()
    frame["_time"], frame["_event"] = np.asarray(time, float), np.asarray(event, int)
    fitter = CoxPHFitter(penalizer=penalizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' convergence chatter; a failure raises
        fitter.fit(frame, duration_col="_time", event_col="_event")
    return fitter


def _features(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    frame = table.join(music_score_predictors(table)) if set(columns) & set(MUSIC_SCORE_PREDICTORS) else table
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(f"the table has no columns {missing}")
    return frame[list(columns)].astype(float).reset_index(drop=True)


def cross_validated_scores(
    features: pd.DataFrame,
    event: np.ndarray,
    time: np.ndarray,
    *,
    n_folds: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    penalizer: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold ``(log_risk, probability_by_horizon)`` per row, each averaged over the repeats, and the C of each repeat.

    Folds are stratified on ``event``; missing values take the training folds' medians (the scaler of the
    measurement baseline), so a test fold never informs its own imputation.
    """
    from sklearn.model_selection import StratifiedKFold

    from hfrisk.training.metrics.cindex import HarrellC

    event, time = np.asarray(event, int), np.asarray(time, float)
    n = len(features)
    risk_sum, prob_sum, repeat_c = np.zeros(n), np.zeros(n), []
    for repeat in range(n_repeats):
        risk, prob = np.empty(n), np.empty(n)
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + repeat)
        for train, test in folds.split(np.zeros(n), event):
            scaler = Standardiser().fit(features.iloc[train])
            fitter = fit_cox(scaler.transform(features.iloc[train]), event[train], time[train], penalizer)
            x_test = scaler.transform(features.iloc[test])
            risk[test] = np.asarray(fitter.predict_log_partial_hazard(x_test), dtype=float)
            survival = fitter.predict_survival_function(x_test, times=[horizon_days])
            prob[test] = 1.0 - survival.to_numpy()[0]
        repeat_c.append(HarrellC()(risk, event, time))
        risk_sum += risk
        prob_sum += prob
    return risk_sum / n_repeats, prob_sum / n_repeats, np.asarray(repeat_c)


def _paired_bootstrap(risks: Mapping[str, np.ndarray], event: np.ndarray, time: np.ndarray, n_boot: int, seed: int):
    """Harrell C of every score on the same patient resamples: per-score values and the resample matrix."""
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(seed)
    names = list(risks)
    values = np.full((n_boot, len(names)), np.nan)
    for b in range(n_boot):
        rows = rng.integers(0, len(time), size=len(time))
        if not event[rows].any():
            continue
        for j, name in enumerate(names):
            values[b, j] = concordance_index(time[rows], -risks[name][rows], event[rows])
    return names, values[np.isfinite(values).all(axis=1)]


def _interval(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


@dataclass
class MusicEvaluation:
    """What :func:`evaluate_music` measured: ``summary`` (JSON-ready), calibration tables and out-of-fold scores."""

    summary: dict
    calibration: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    scores: pd.DataFrame | None = None

    def write(self, out_dir: str | Path, *, plots: bool = True) -> Path:
        """``summary.json``, ``calibration_<endpoint>_<features>.csv`` (+ ``.png``) and ``scores.csv`` in ``out_dir``."""
        from hfrisk.training.metrics.calibration import plot_calibration

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        for (name, features), table in self.calibration.items():
            table.to_csv(out / f"calibration_{name}_{features}.csv", index=False)
            if plots:
                plot_calibration(table, out / f"calibration_{name}_{features}.png")
        if self.scores is not None:
            self.scores.to_csv(out / "scores.csv", index=False)
        return out / "summary.json"


def evaluate_music(
    table: pd.DataFrame,
    endpoints: Sequence[str] = ("pump_failure", "cardiac"),
    feature_sets: Mapping[str, Sequence[str]] | None = None,
    *,
    n_folds: int = 5,
    n_repeats: int = 10,
    n_boot: int = 1000,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    n_bins: int = 10,
    seed: int = 0,
) -> MusicEvaluation:
    """Cross-validated discrimination and calibration of Cox models on a tidy MUSIC table (module docstring)."""
    from hfrisk.training.metrics.calibration import calibration_summary, calibration_table
    from hfrisk.training.metrics.cindex import HarrellC

    feature_sets = dict(feature_sets or FEATURE_SETS)
    summary: dict = {
        "protocol": {
            "cv": f"{n_repeats} x stratified {n_folds}-fold, out-of-fold scores averaged over repeats",
            "ci": f"percentile bootstrap over patients, {n_boot} resamples, on the out-of-fold scores",
            "model": "lifelines CoxPHFitter, unpenalised, fold-median imputation then z-scoring",
            "competing_causes": "censored at their time (cause-specific hazards)",
            "horizon_days": horizon_days,
            "seed": seed,
        },
        "n_patients": len(table),
    }
    calibration: dict[tuple[str, str], pd.DataFrame] = {}
    score_columns: dict[str, np.ndarray] = {"patient_id": table["patient_id"].to_numpy()}
    for name in endpoints:
        event, time = endpoint(table, name)
        result: dict = {"n_events": int(event.sum())}
        risks = {}
        for features, columns in feature_sets.items():
            x = _features(table, columns)
            risk, prob, repeat_c = cross_validated_scores(
                x, event, time, n_folds=n_folds, n_repeats=n_repeats, seed=seed, horizon_days=horizon_days)
            risks[features] = risk
            score_columns[f"{name}_{features}_log_risk"] = risk
            score_columns[f"{name}_{features}_prob_by_horizon"] = prob
            calib = calibration_table(prob, event, time, horizon_days, n_bins=n_bins)
            calibration[(name, features)] = calib
            apparent = fit_cox(Standardiser().fit(x).transform(x), event, time)
            result[features] = {
                "features": list(columns),
                "harrell_c": HarrellC()(risk, event, time),
                "repeat_c_mean": float(repeat_c.mean()),
                "repeat_c_sd": float(repeat_c.std(ddof=1)) if len(repeat_c) > 1 else 0.0,
                "apparent_harrell_c": float(apparent.concordance_index_),
                "calibration": calibration_summary(calib),
                "predicted_by_horizon_mean": float(prob.mean()),
            }
            log.info("music.evaluated", endpoint=name, features=features, c=round(result[features]["harrell_c"], 4))
        if n_boot:
            names, boot = _paired_bootstrap(risks, event, time, n_boot, seed)
            for j, features in enumerate(names):
                result[features]["harrell_c_ci95"] = _interval(boot[:, j])
            if "ecg" in names:
                ecg = names.index("ecg")
                result["difference_vs_ecg"] = {
                    other: {"delta_c": result["ecg"]["harrell_c"] - result[other]["harrell_c"],
                            "ci95": _interval(boot[:, ecg] - boot[:, j])}
                    for j, other in enumerate(names) if other != "ecg"
                }
            result["n_boot_used"] = len(boot)
        summary[name] = result
    return MusicEvaluation(summary, calibration, pd.DataFrame(score_columns))


def music_cox_coefficients(
    table: pd.DataFrame,
    endpoints: Sequence[str] = ("pump_failure", "cardiac"),
    covariates: Sequence[str] = ECG_COVARIATES,
    *,
    baseline_years: Sequence[float] = (0.5, 1, 2, 3, 4, 5),
) -> dict:
    r"""Unpenalised Cox fits on everyone, in natural units: what ``training/data/music_cox.json`` holds.

    Per endpoint: :math:`\beta` per unit of each covariate with its standard error, the covariate means the
    linear predictor is centred on, the Breslow baseline cumulative hazard :math:`H_0(t)` of a patient at
    those means, and a Weibull :math:`H_0(t) = (t/\lambda)^k` fitted to it by least squares on
    :math:`\log H_0` vs :math:`\log t` at the event times (the simulation's baseline shape).
    """
    from hfrisk.training.metrics.breslow import BreslowBaseline

    x = table[list(covariates)].astype(float).reset_index(drop=True)
    if x.isna().any().any():
        raise ValueError(f"covariates with missing values: {x.columns[x.isna().any()].tolist()}")
    centre = x.mean()
    out: dict = {}
    for name in endpoints:
        event, time = endpoint(table, name)
        fitter = fit_cox(x, event, time)
        beta = fitter.params_[list(covariates)]
        eta = (x - centre).to_numpy() @ beta.to_numpy()
        breslow = BreslowBaseline().fit(eta, event, time)
        event_times = breslow.event_times
        cumulative = breslow.cumulative_hazard(event_times)
        keep = cumulative > 0
        shape, intercept = np.polyfit(np.log(event_times[keep]), np.log(cumulative[keep]), 1)
        years = np.asarray(baseline_years, dtype=float)
        out[name] = {
            "n_patients": len(x),
            "n_events": int(event.sum()),
            "coefficients_per_unit": {c: float(beta[c]) for c in covariates},
            "standard_errors": {c: float(fitter.standard_errors_[c]) for c in covariates},
            "hazard_ratio_ci95": {
                c: [float(np.exp(beta[c] - 1.96 * fitter.standard_errors_[c])),
                    float(np.exp(beta[c] + 1.96 * fitter.standard_errors_[c]))] for c in covariates},
            "apparent_harrell_c": float(fitter.concordance_index_),
            "baseline_cumulative_hazard_at_centre": {
                f"{y:g}y": float(h) for y, h in zip(years, breslow.cumulative_hazard(years * DAYS_PER_YEAR))},
            "weibull_baseline": {"shape": float(shape), "scale_days": float(np.exp(-intercept / shape))},
        }
    return {"centre": {c: float(centre[c]) for c in covariates}, "endpoints": out}


def write_music_cox(fit: dict, path: str | Path, *, provenance: Mapping[str, str]) -> Path:
    """Write :func:`music_cox_coefficients`' result with its provenance (command, date, data) as JSON."""
    from hfrisk.training.data.music import UNITS

    path = Path(path)
    document = {
        "what": "Cause-specific Cox models of the MUSIC chronic heart-failure cohort on 12-lead ECG covariates, "
                "age and sex (competing deaths, transplant and loss to follow-up censored); log-hazard = "
                "sum(coefficient * (value - centre)). docs/training/music.md",
        "units": {c: UNITS[c] for c in fit["centre"]},
        "provenance": dict(provenance),
        **fit,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
