"""The conventional baseline: a penalised Cox proportional-hazards model on standard ECG measurements.

As the paper's (§3.2), lifelines' ``CoxPHFitter`` with an L2 penalty, here on the measurements of
:mod:`hfrisk.training.data.measurements`; imputation and scaling are fitted on the inner-train
part, the penalty is chosen on a log grid by validation C, then refitted on the whole training
fold (docs/training/evaluation.md). The log-risk ``x·β`` has the network's sign: higher = riskier.

>>> base = CoxBaseline().fit(train_features, train_event, train_time,                     # doctest: +SKIP
...                          val_features, val_event, val_time)
>>> base.log_risk(test_features)                                                         # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from hfrisk.core.logs import get_logger

from hfrisk.training.data.cohort import Cohort
from hfrisk.training.data.measurements import MEASUREMENTS, measure_records
from hfrisk.training.metrics.results import harrell_c_or_nan

__all__ = ["CoxBaselineConfig", "Standardiser", "CoxBaseline", "cohort_measurements", "cox_method"]

log = get_logger(__name__)


def _log_grid() -> tuple[float, ...]:
    return tuple(float(10.0**e) for e in np.arange(-3.0, 3.01, 0.5))


class CoxBaselineConfig(BaseModel):
    """Settings of the Cox baseline; defaults follow the paper's L2-penalised fit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: tuple[str, ...] = MEASUREMENTS
    penalizers: tuple[float, ...] = Field(default_factory=_log_grid)
    # 0 = pure L2 (the paper's ridge penalty); lifelines' elastic net otherwise.
    l1_ratio: float = 0.0
    refit: bool = True


@dataclass
class Standardiser:
    """Median imputation then z-scoring, fitted on one frame and applied to others."""

    columns: list[str] = field(default_factory=list)
    median: pd.Series | None = None
    mean: pd.Series | None = None
    std: pd.Series | None = None

    def fit(self, frame: pd.DataFrame) -> Standardiser:
        median = frame.median(skipna=True)
        filled = frame.fillna(median)
        std = filled.std(ddof=0)
        keep = [c for c in frame.columns if np.isfinite(median[c]) and std[c] > 1e-12]
        if not keep:
            raise ValueError("no feature has values with some spread on the training part")
        self.columns = keep
        self.median, self.mean, self.std = median[keep], filled[keep].mean(), std[keep]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.median is None:
            raise RuntimeError("call fit() first")
        values = frame[self.columns].astype(float).fillna(self.median)
        return (values - self.mean) / self.std


def _fit_cox(x: pd.DataFrame, event: np.ndarray, time: np.ndarray, penalizer: float, l1_ratio: float):
    from lifelines import CoxPHFitter

    frame = x.copy()
    frame["_time"], frame["_event"] = np.asarray(time, float), np.asarray(event, int)
    fitter = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds; failures raise below
        fitter.fit(frame, duration_col="_time", event_col="_event")
    return fitter


def _partial_log_likelihood(risk: np.ndarray, event: np.ndarray, time: np.ndarray) -> float:
    """Breslow partial log-likelihood per event of ``risk`` on (event, time); NaN without events."""
    import torch

    from hfrisk.training.finetune.survival_loss import cox_loss

    if not np.any(event):
        return float("nan")
    return -float(cox_loss(torch.as_tensor(risk, dtype=torch.float64), torch.as_tensor(event), torch.as_tensor(time)))


class CoxBaseline:
    """Penalised Cox PH on measurements: :meth:`fit` tunes the penalizer, :meth:`log_risk` scores."""

    def __init__(self, config: CoxBaselineConfig | None = None):
        self.config = config or CoxBaselineConfig()
        self.standardiser: Standardiser | None = None
        self.fitter = None
        self.penalizer: float | None = None
        # Validation C of every penalizer tried (NaN where the fit failed).
        self.validation_c: dict[float, float] = {}

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.config.features if c not in frame.columns]
        if missing:
            raise ValueError(f"features {missing} are not in the frame")
        return frame[list(self.config.features)].astype(float)

    def fit(
        self,
        train: pd.DataFrame,
        train_event: Sequence[int],
        train_time: Sequence[float],
        val: pd.DataFrame,
        val_event: Sequence[int],
        val_time: Sequence[float],
    ) -> CoxBaseline:
        train, val = self._features(train), self._features(val)
        train_event, train_time = np.asarray(train_event, int), np.asarray(train_time, float)
        val_event, val_time = np.asarray(val_event, int), np.asarray(val_time, float)
        scaler = Standardiser().fit(train)
        x_train, x_val = scaler.transform(train), scaler.transform(val)
        self.validation_c, fits = {}, []
        for penalizer in sorted(self.config.penalizers):
            try:
                fitter = _fit_cox(x_train, train_event, train_time, penalizer, self.config.l1_ratio)
            except Exception as error:  # noqa: BLE001 - lifelines raises several types on non-convergence
                log.debug("cox_baseline.fit_failed", penalizer=penalizer, error=str(error))
                self.validation_c[penalizer] = float("nan")
                continue
            risk = np.asarray(fitter.predict_log_partial_hazard(x_val))
            c = harrell_c_or_nan(risk, val_event, val_time)
            self.validation_c[penalizer] = c
            fits.append((penalizer, c, _partial_log_likelihood(risk, val_event, val_time), fitter))
        if not fits:
            raise RuntimeError("the Cox model failed to fit at every penalizer")
        # Validation C decides; where it is undefined everywhere, the validation partial likelihood.
        # Ascending grid and ">=": a tie goes to the larger penalty.
        use_c = any(np.isfinite(f[1]) for f in fits)
        best = None
        for fit in fits:
            score = fit[1] if use_c else fit[2]
            if np.isfinite(score) and (best is None or score >= best[0]):
                best = (score, fit)
        if best is None:
            best = (float("nan"), fits[-1])
        self.penalizer, _, _, self.fitter = best[1]
        self.standardiser = scaler
        if self.config.refit:
            full = pd.concat([train, val], ignore_index=True)
            self.standardiser = Standardiser().fit(full)
            self.fitter = _fit_cox(
                self.standardiser.transform(full),
                np.concatenate([train_event, val_event]),
                np.concatenate([train_time, val_time]),
                self.penalizer,
                self.config.l1_ratio,
            )
        return self

    def log_risk(self, frame: pd.DataFrame) -> np.ndarray:
        """``x·β`` per row (lifelines centres it on the training means; the ranking is what counts)."""
        if self.fitter is None or self.standardiser is None:
            raise RuntimeError("call fit() first")
        x = self.standardiser.transform(self._features(frame))
        return np.asarray(self.fitter.predict_log_partial_hazard(x), dtype=np.float64)

    @property
    def coefficients(self) -> pd.Series:
        if self.fitter is None:
            raise RuntimeError("call fit() first")
        return self.fitter.params_.copy()

    def describe(self) -> dict:
        return {
            "penalizer": self.penalizer,
            "features": list(self.standardiser.columns) if self.standardiser else [],
            "coefficients": {k: float(v) for k, v in self.coefficients.items()},
            "validation_c": {f"{k:g}": v for k, v in self.validation_c.items()},
        }


def cohort_measurements(cohort: Cohort, *, cache: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """:data:`MEASUREMENTS` for every row of ``cohort``, in row order (index reset to positions)."""
    paths = [str(p) for p in cohort.record_paths()]
    frame = measure_records(paths, cache=cache, progress=progress)
    return frame.reset_index(drop=True)


def cox_method(
    measurements: pd.DataFrame | None = None,
    config: CoxBaselineConfig | None = None,
    *,
    key: str = "record",
    cache: str | Path | None = None,
):
    """The Cox baseline as a :mod:`~hfrisk.training.evaluation.protocol` method.

    ``measurements``: a frame of features indexed by the cohort's ``key`` column (default: the
    ``record`` strings), e.g. from :func:`cohort_measurements` on the whole cohort once; without
    it each split measures its records (``cache`` avoids doing that twice).
    """
    from hfrisk.training.metrics.results import MethodResult

    def features_of(cohort: Cohort) -> pd.DataFrame:
        if measurements is None:
            return cohort_measurements(cohort, cache=cache)
        keys = cohort.table[key].tolist()
        return measurements.loc[keys].reset_index(drop=True)

    def method(split, run_dir: Path) -> MethodResult:
        fit_part, val_part = split.fit, split.val
        model = CoxBaseline(config or CoxBaselineConfig()).fit(
            features_of(fit_part), fit_part.event, fit_part.time,
            features_of(val_part), val_part.event, val_part.time,
        )
        info = model.describe()
        info["val_harrell_c"] = model.validation_c[model.penalizer]
        return MethodResult(
            train_risk=model.log_risk(features_of(split.train)),
            test_risk=model.log_risk(features_of(split.test)),
            info=info,
        )

    method.name = "cox_measurements"  # type: ignore[attr-defined]
    return method
