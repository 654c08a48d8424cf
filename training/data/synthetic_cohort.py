r"""A semi-synthetic heart-failure cohort on REAL PTB-XL ECGs, with a known true hazard.

PTB-XL has no follow-up, so every ECG stays real and only the outcome is simulated, from a Weibull
proportional-hazards model on each record's diagnostic superclasses, age and sex
(:class:`HazardSpec`). The true log-hazard being known, so is the best C-index any model could
reach (the *oracle* C). Formulas, censoring and measured results: docs/training/synthetic_cohort.md.

>>> from hfrisk.training.data.ptbxl import PTBXL
>>> synth = synthetic_hf_cohort(PTBXL("tests/data/ecg/ptbxl", 500), event_rate=0.25, seed=0)  # doctest: +SKIP
>>> synth.cohort.n_events, round(synth.oracle_c(), 2)                                         # doctest: +SKIP
(6, 0.7)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from hfrisk.core.logs import get_logger

from hfrisk.training.data.cohort import Cohort, cohort_from_ptbxl
from hfrisk.training.metrics import HarrellC

__all__ = [
    "HazardSpec",
    "SimulatedOutcomes",
    "SyntheticCohort",
    "log_hazard",
    "simulate_outcomes",
    "synthetic_hf_cohort",
    "build_synthetic_cohort",
    "write_synthetic_cohort",
    "read_oracle",
    "oracle_method",
    "COHORT_FILENAME",
    "ORACLE_FILENAME",
    "SPEC_FILENAME",
]

log = get_logger(__name__)

COHORT_FILENAME = "cohort.csv"
ORACLE_FILENAME = "oracle_log_hazard.csv"
SPEC_FILENAME = "synthetic_cohort.json"
_DAYS_PER_YEAR = 365.25
# Bisection bracket for log(lambda): event probabilities from ~0 to ~1 over follow-ups of days to years.
_LOG_SCALE_BRACKET = (-60.0, 20.0)


class HazardSpec(BaseModel):
    """The stated hazard of the semi-synthetic cohort (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # log-hazard ratio per label; keys are PTB-XL superclasses (any of SUPERCLASSES).
    label_coefficients: dict[str, float] = Field(
        default_factory=lambda: {"MI": 0.9, "HYP": 0.7, "CD": 0.6, "STTC": 0.4}
    )
    age_per_decade: float = 0.5
    age_centre_years: float = 60.0
    male: float = 0.25
    weibull_shape: float = 1.3
    # Censoring: administrative end drawn uniformly in this range, plus exponential loss to follow-up.
    follow_up_years: tuple[float, float] = (3.0, 7.0)
    dropout_per_year: float = 0.02
    # A superclass counts when one of its codes has at least this PTB-XL likelihood (0: every listed code).
    min_likelihood: float = 0.0

    def log_hazard(self, covariates: pd.DataFrame) -> np.ndarray:
        """:func:`log_hazard` of ``covariates`` under this spec (the interface every scenario's hazard offers)."""
        return log_hazard(covariates, self)

    def describe(self) -> str:
        """The linear predictor as a formula, e.g. ``0.9·MI + … + 0.25·male``."""
        terms = [f"{b:g}·{name}" for name, b in self.label_coefficients.items()]
        terms.append(f"{self.age_per_decade:g}·(age−{self.age_centre_years:g})/10")
        terms.append(f"{self.male:g}·male")
        return " + ".join(terms)


def log_hazard(covariates: pd.DataFrame, spec: HazardSpec | None = None) -> np.ndarray:
    """The true log-hazard η(x) of each row: label columns (0/1), ``age`` (years), ``sex`` (1 = female).

    A missing age takes the median age of ``covariates``; a missing sex counts as female (male = 0).
    """
    spec = spec or HazardSpec()
    missing = [c for c in (*spec.label_coefficients, "age", "sex") if c not in covariates.columns]
    if missing:
        raise ValueError(f"covariates lack columns {missing}")
    eta = np.zeros(len(covariates))
    for label, beta in spec.label_coefficients.items():
        eta += beta * covariates[label].to_numpy(dtype=np.float64)
    age = covariates["age"].astype(float)
    age = age.fillna(age.median() if age.notna().any() else spec.age_centre_years).to_numpy()
    eta += spec.age_per_decade * (age - spec.age_centre_years) / 10.0
    male = (covariates["sex"].astype("Float64") == 0).fillna(False).to_numpy(dtype=np.float64)
    eta += spec.male * male
    return eta


@dataclass(frozen=True)
class SimulatedOutcomes:
    """Observed ``time`` (days) and ``event`` per row, the true ``log_hazard`` and the solved scale."""

    time: np.ndarray
    event: np.ndarray
    log_hazard: np.ndarray
    baseline_scale: float
    event_time: np.ndarray
    censor_time: np.ndarray

    @property
    def event_rate(self) -> float:
        return float(self.event.mean())


def _event_times(eta: np.ndarray, exp_draws: np.ndarray, log_scale: float, shape: float) -> np.ndarray:
    # Inverse of S(t) = exp(-lambda t^k e^eta) at S = exp(-E): computed in logs to avoid overflow.
    return np.exp((np.log(exp_draws) - log_scale - eta) / shape)


def simulate_outcomes(
    covariates: pd.DataFrame,
    event_rate: float = 0.03,
    seed: int = 0,
    spec: HazardSpec | None = None,
) -> SimulatedOutcomes:
    """Draw event and censoring times for each row of ``covariates`` (see the module docstring).

    ``spec`` is any hazard with ``log_hazard(covariates)``, ``weibull_shape``, ``follow_up_years`` and
    ``dropout_per_year``: the diagnosis-label :class:`HazardSpec` (default) or the MUSIC scenario's
    :class:`~hfrisk.training.data.music_hazard.MusicHazard`.

    The baseline scale is solved so that exactly ``round(event_rate · N)`` rows have an observed
    event; the same ``seed`` gives the same cohort.
    """
    spec = spec or HazardSpec()
    n = len(covariates)
    if not 0.0 < event_rate < 1.0:
        raise ValueError(f"event_rate must be in (0, 1), got {event_rate}")
    target = int(round(event_rate * n))
    if target < 1:
        raise ValueError(f"event_rate {event_rate} gives no event among {n} rows")
    if spec.weibull_shape <= 0:
        raise ValueError("weibull_shape must be positive")
    low_y, high_y = spec.follow_up_years
    if not 0 < low_y <= high_y:
        raise ValueError(f"follow_up_years must be increasing and positive, got {spec.follow_up_years}")
    eta = spec.log_hazard(covariates)
    rng = np.random.default_rng(seed)
    exp_draws = rng.exponential(size=n)
    administrative = rng.uniform(low_y, high_y, size=n) * _DAYS_PER_YEAR
    if spec.dropout_per_year > 0:
        dropout = rng.exponential(_DAYS_PER_YEAR / spec.dropout_per_year, size=n)
    else:
        dropout = np.full(n, np.inf)
    censor = np.minimum(administrative, dropout)

    def n_events(log_scale: float) -> int:
        return int((_event_times(eta, exp_draws, log_scale, spec.weibull_shape) <= censor).sum())

    # More events as the scale grows: bisect for the smallest log-scale reaching the target count.
    lo, hi = _LOG_SCALE_BRACKET
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if n_events(mid) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-10:
            break
    log_scale = hi
    event_time = _event_times(eta, exp_draws, log_scale, spec.weibull_shape)
    event = event_time <= censor
    time = np.maximum(1.0, np.ceil(np.minimum(event_time, censor)))
    return SimulatedOutcomes(time, event.astype(np.int64), eta, math.exp(log_scale), event_time, censor)


@dataclass(frozen=True)
class SyntheticCohort:
    """A :class:`Cohort` of real PTB-XL records with simulated outcomes, and the truth behind them.

    ``log_hazard`` is aligned with the cohort's rows (and indexed by ``ecg_id``).
    """

    cohort: Cohort
    log_hazard: pd.Series
    spec: HazardSpec  # or the MUSIC scenario's MusicHazard: anything with describe() and model_dump()
    seed: int
    event_rate: float
    baseline_scale: float

    def oracle_c(self) -> float:
        """Harrell's C of the true log-hazard: the ceiling for any model on this cohort."""
        return HarrellC()(self.log_hazard.to_numpy(), self.cohort.event, self.cohort.time)

    def oracle_c_of(self, cohort: Cohort) -> float:
        """Oracle C on a sub-cohort (e.g. a test fold), matched by ``ecg_id``."""
        eta = self.log_hazard.loc[cohort.table["ecg_id"].astype(int).to_numpy()].to_numpy()
        return HarrellC()(eta, cohort.event, cohort.time)

    def summary(self) -> dict:
        cohort = self.cohort
        return {
            "n": len(cohort),
            "n_events": cohort.n_events,
            "event_rate": cohort.n_events / len(cohort),
            "requested_event_rate": self.event_rate,
            "seed": self.seed,
            "hazard": self.spec.describe(),
            "spec": self.spec.model_dump(mode="json"),
            "baseline_scale_per_day_k": self.baseline_scale,
            "median_follow_up_days": float(np.median(cohort.time)),
            "oracle_harrell_c": self.oracle_c(),
            "records_root": str(Path(cohort.records_root).resolve()) if cohort.records_root else None,
        }


def synthetic_hf_cohort(
    ptbxl,
    event_rate: float = 0.03,
    seed: int = 0,
    spec: HazardSpec | None = None,
    *,
    with_demographics: bool = False,
) -> SyntheticCohort:
    """Simulated HF outcomes for every record of ``ptbxl`` (a :class:`~hfrisk.training.data.ptbxl.PTBXL` view).

    ``with_demographics`` keeps age and sex as cohort covariates (they are hazard inputs, so a
    model given them is given part of the answer; the ECG-only models never read covariates).
    """
    spec = spec or HazardSpec()
    labels = ptbxl.superclass_labels(min_likelihood=spec.min_likelihood)
    unknown = set(spec.label_coefficients) - set(labels.columns)
    if unknown:
        raise ValueError(f"hazard names labels {sorted(unknown)}; PTB-XL has {list(labels.columns)}")
    covariates = labels.join(ptbxl.demographics())
    return build_synthetic_cohort(ptbxl, covariates, spec, event_rate, seed, with_demographics=with_demographics)


def build_synthetic_cohort(
    ptbxl, covariates: pd.DataFrame, spec, event_rate: float, seed: int, *, with_demographics: bool = False
) -> SyntheticCohort:
    """Simulate outcomes from ``spec`` on ``covariates`` (indexed by ``ecg_id``) and wrap them as a cohort."""
    outcomes = simulate_outcomes(covariates, event_rate, seed, spec)
    ids = covariates.index.to_numpy(dtype=np.int64)
    cohort = cohort_from_ptbxl(
        ptbxl,
        pd.Series(outcomes.time, index=ids),
        pd.Series(outcomes.event, index=ids),
        time_unit="days",
        with_demographics=with_demographics,
    )
    eta = pd.Series(outcomes.log_hazard, index=pd.Index(ids, name="ecg_id"), name="true_log_hazard")
    eta = eta.loc[cohort.table["ecg_id"].to_numpy()]
    synth = SyntheticCohort(cohort, eta, spec, seed, event_rate, outcomes.baseline_scale)
    log.info("synthetic_cohort.built", n=len(cohort), events=cohort.n_events, oracle_c=round(synth.oracle_c(), 4))
    return synth


def write_synthetic_cohort(synth: SyntheticCohort, out_dir: str | Path) -> Path:
    """Write ``cohort.csv`` (load it with ``load_cohort(path, records_root=...)``), the true
    log-hazard in a separate ``oracle_log_hazard.csv`` (so no model reads it as a covariate), and
    ``synthetic_cohort.json`` (the spec, seed, event rate, oracle C). Returns the cohort file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / COHORT_FILENAME
    synth.cohort.table.to_csv(path, index=False)
    synth.log_hazard.to_frame().to_csv(out / ORACLE_FILENAME)
    (out / SPEC_FILENAME).write_text(json.dumps(synth.summary(), indent=2) + "\n")
    return path


def read_oracle(cohort_file: str | Path) -> pd.Series:
    """The true log-hazard written beside ``cohort_file`` by :func:`write_synthetic_cohort`, by ``ecg_id``."""
    path = Path(cohort_file).parent / ORACLE_FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no {ORACLE_FILENAME} beside {cohort_file}: not a synthetic cohort")
    return pd.read_csv(path, index_col="ecg_id")["true_log_hazard"]


def oracle_method(log_hazard_by_id: pd.Series):
    """A :mod:`~hfrisk.training.evaluation.protocol` method that scores with the TRUE log-hazard.

    Run through the same splits as a model, it gives the oracle C of every test fold: the
    ceiling that model is measured against.
    """
    from hfrisk.training.metrics.results import MethodResult, harrell_c_or_nan

    def method(split, run_dir: Path) -> MethodResult:
        def eta(cohort: Cohort) -> np.ndarray:
            return log_hazard_by_id.loc[cohort.table["ecg_id"].astype(int).to_numpy()].to_numpy()

        val_c = harrell_c_or_nan(eta(split.val), split.val.event, split.val.time)
        return MethodResult(eta(split.train), eta(split.test), {"val_harrell_c": val_c})

    method.name = "oracle_true_hazard"  # type: ignore[attr-defined]
    return method
