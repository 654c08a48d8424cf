"""Frozen-feature floors: a ridge Cox model on the principal components of fixed features.

A network fine-tuned for risk has to beat what a linear model gets from the same input without any
training of the features: the raw median beat (the model input, flattened) or the embedding of an
untrained (or pretrained, frozen) encoder. On each split the features are z-scored and reduced to
principal components on the *fit* part only; for each number of components a ridge Cox
(:class:`~hfrisk.training.evaluation.cox_baseline.CoxBaseline`, L2 penalty chosen on validation C)
is fitted, the component count with the best validation C is kept, and the chosen model is
refitted on the whole training fold as the Cox baseline is. Nothing of the test fold is seen.

>>> method = principal_components_method(beats, "ridge_cox_beat_pcs")   # doctest: +SKIP
>>> cross_validate(cohort, method, "runs/floor-beat")                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

from hfrisk.training.evaluation.cox_baseline import CoxBaseline, CoxBaselineConfig
from hfrisk.training.finetune.head_init import PC_COUNTS, better_validation_c
from hfrisk.training.metrics.results import MethodResult

__all__ = ["principal_components_method", "PC_COUNTS", "RIDGE_PENALIZERS"]

log = get_logger(__name__)

RIDGE_PENALIZERS: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-2.0, 2.01, 1.0))


def principal_components_method(
    features: pd.DataFrame | np.ndarray,
    name: str,
    *,
    records: Sequence[str] | None = None,
    n_components: Sequence[int] = PC_COUNTS,
    penalizers: Sequence[float] = RIDGE_PENALIZERS,
    key: str = "record",
):
    """A protocol method: ridge Cox on the top principal components of ``features``.

    ``features``: one row per record, indexed by the cohort's ``key`` column (or an array with
    ``records`` naming its rows). ``n_components``: the counts tried, each capped by the fit part.
    """
    if isinstance(features, np.ndarray):
        if records is None:
            raise ValueError("an array of features needs the records its rows belong to")
        features = pd.DataFrame(features.reshape(len(features), -1), index=pd.Index(list(records)))
    matrix = features.to_numpy(dtype=np.float64)
    position = pd.Series(np.arange(len(features)), index=features.index.astype(str))
    if position.index.duplicated().any():
        raise ValueError("features list a record twice")

    def rows_of(cohort) -> np.ndarray:
        keys = cohort.table[key].astype(str)
        missing = keys[~keys.isin(position.index)]
        if len(missing):
            raise KeyError(f"no features for {len(missing)} records, e.g. {missing.iloc[0]}")
        return matrix[position.loc[keys].to_numpy()]

    def method(split, run_dir: Path) -> MethodResult:
        fit_x = rows_of(split.fit)
        mean = fit_x.mean(axis=0)
        std = fit_x.std(axis=0)
        std[std < 1e-12] = 1.0
        # Principal axes of the fit part from its SVD (the sample count is far below the feature count).
        _, _, axes = np.linalg.svd((fit_x - mean) / std, full_matrices=False)

        def components(x: np.ndarray, k: int) -> pd.DataFrame:
            return pd.DataFrame(((x - mean) / std) @ axes[:k].T, columns=[f"pc{i + 1}" for i in range(k)])

        val_x, train_x, test_x = rows_of(split.val), rows_of(split.train), rows_of(split.test)
        best = None
        tried = {}
        for k in sorted({min(int(k), len(axes)) for k in n_components}):
            config = CoxBaselineConfig(features=tuple(f"pc{i + 1}" for i in range(k)), penalizers=tuple(penalizers))
            model = CoxBaseline(config).fit(components(fit_x, k), split.fit.event, split.fit.time,
                                            components(val_x, k), split.val.event, split.val.time)
            val_c = model.validation_c[model.penalizer]
            tried[k] = val_c
            # Ties go to the fewer components (tried first): the simpler model.
            if better_validation_c(val_c, None if best is None else best[0]):
                best = (val_c, k, model)
        val_c, k, model = best
        info = {"n_components": k, "penalizer": model.penalizer, "val_harrell_c": val_c,
                "validation_c_by_components": {str(key_): value for key_, value in tried.items()}}
        log.info("floors.split_done", method=name, run=split.name, n_components=k, penalizer=model.penalizer,
                 val_c=round(float(val_c), 4) if np.isfinite(val_c) else None)
        return MethodResult(model.log_risk(components(train_x, k)), model.log_risk(components(test_x, k)), info)

    method.name = name  # type: ignore[attr-defined]
    return method
