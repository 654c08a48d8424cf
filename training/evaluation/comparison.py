r"""Paired differences between two methods run on the same folds: the mean, a t-interval, a corrected one.

Runs are matched by ``(seed, fold)`` and must have tested the same records (``test_fingerprint``).
The t-interval treats the :math:`n` paired differences as independent; they are not (every seed
tests the same subjects, training sets overlap), so the interval is also given with Nadeau and
Bengio's corrected variance :math:`s_d^2 (1/n + n_\text{test}/n_\text{train})` (Machine Learning 52,
2003), which for 2-fold cross-validation is at least :math:`s_d^2` however many seeds run
(docs/training/evidence.md, "Power: how many runs").

>>> paired_difference(result_a.runs, result_b.runs)["mean"]  # doctest: +SKIP
0.031
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["paired_difference"]


def paired_difference(
    runs_a: pd.DataFrame, runs_b: pd.DataFrame, metric: str = "harrell_c", level: float = 0.95
) -> dict[str, Any]:
    """``A - B`` of ``metric`` over the runs both tables hold (``runs.csv`` of the protocol).

    Returns ``n``, ``mean``, ``sd`` (per-run SD of the differences), ``ci_low``/``ci_high`` (t),
    ``corrected_ci_low``/``corrected_ci_high`` (Nadeau-Bengio), ``p_value`` (paired t), ``wins``
    (runs where A is higher) and ``test_train_ratio``.
    """
    keys = ["seed", "fold"]
    merged = runs_a.merge(runs_b, on=keys, suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError("the two methods share no (seed, fold) run")
    if "test_fingerprint_a" in merged and not (merged["test_fingerprint_a"] == merged["test_fingerprint_b"]).all():
        raise ValueError("the two methods tested different records on the same (seed, fold): not the same folds")
    diff = (merged[f"{metric}_a"] - merged[f"{metric}_b"]).to_numpy(dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    mean = float(diff.mean()) if n else float("nan")
    sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
    ratio = float((merged["n_test_a"] / merged["n_train_a"]).mean()) if "n_test_a" in merged else float("nan")
    out: dict[str, Any] = {"n": n, "mean": mean, "sd": sd, "wins": int((diff > 0).sum()), "test_train_ratio": ratio,
                           "level": level}
    if n > 1:
        quantile = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
        half = quantile * sd / math.sqrt(n)
        corrected = quantile * sd * math.sqrt(1.0 / n + (ratio if np.isfinite(ratio) else 0.0))
        out.update(ci_low=mean - half, ci_high=mean + half, corrected_ci_low=mean - corrected,
                   corrected_ci_high=mean + corrected,
                   p_value=float(stats.ttest_1samp(diff, 0.0).pvalue) if sd > 0 else float("nan"))
    return out
