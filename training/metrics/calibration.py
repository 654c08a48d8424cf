"""Calibration of predicted event probabilities, and Kaplan-Meier curves of high- vs low-risk groups.

Sign convention (shared by all of ``hfrisk.training``): a risk score is a log-hazard, HIGHER = RISKIER;
a *predicted event probability* by time ``t`` is :math:`1 - \\hat S(t)` (e.g. from
``metrics.BreslowBaseline().fit(...).survival(risk, [t])``).

Observed rates come from Kaplan-Meier fits (lifelines) rather than raw event fractions, so subjects
censored before ``t`` are not counted as event-free. Plots use matplotlib's object API with the Agg
canvas, so importing this module never changes the process-wide matplotlib backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hfrisk.training.metrics.inputs import ArrayLike, survival_arrays

__all__ = [
    "RiskGroups",
    "calibration_summary",
    "calibration_table",
    "km_by_risk_group",
    "plot_calibration",
    "plot_km_by_risk_group",
]


def _km_event_rate_at(kmf: KaplanMeierFitter, t: float) -> tuple[float, float, float]:
    """Observed event rate 1 - S(t) with its (lower, upper) bounds from lifelines' KM interval."""
    survival = float(kmf.survival_function_at_times(t).iloc[0])
    bounds = kmf.confidence_interval_survival_function_
    row = bounds[bounds.index <= t]
    # Before the first observed time S = 1 exactly, and lifelines has no interval row there.
    lower_s, upper_s = (1.0, 1.0) if row.empty else (float(row.iloc[-1, 0]), float(row.iloc[-1, 1]))
    return 1.0 - survival, 1.0 - upper_s, 1.0 - lower_s


def calibration_table(
    predicted_event_prob_at_t: ArrayLike, event: ArrayLike, time: ArrayLike, t: float, n_bins: int = 10
) -> pd.DataFrame:
    r"""Mean predicted vs Kaplan-Meier observed probability of an event by ``t``, per risk bin.

    Subjects are sorted by predicted probability and split into ``n_bins`` equal-count bins (deciles by
    default). For bin :math:`g`:

    .. math::

        \bar p_g = \frac{1}{n_g} \sum_{i \in g} \hat P(T_i \le t), \qquad
        o_g = 1 - \hat S^{KM}_g(t)

    with :math:`\hat S^{KM}_g` the Kaplan-Meier curve of the bin and a 95% interval from lifelines
    (exponential Greenwood). A well-calibrated model has :math:`o_g \approx \bar p_g`. If a bin's
    follow-up ends before ``t`` its KM value is carried forward; ``n_at_risk_at_t`` shows how many
    subjects each observed rate rests on.

    Columns: ``bin``, ``n``, ``n_events_by_t``, ``n_at_risk_at_t``, ``predicted_min``, ``predicted_max``,
    ``mean_predicted``, ``observed``, ``observed_lower``, ``observed_upper``; ``table.attrs["t"] = t``.

    Example:
        >>> table = calibration_table([0.1, 0.1, 0.9, 0.9], event=[0, 0, 1, 1], time=[5, 5, 1, 2], t=3.0, n_bins=2)
        >>> table[["n", "mean_predicted", "observed"]].to_numpy().tolist()
        [[2.0, 0.1, 0.0], [2.0, 0.9, 1.0]]
    """
    predicted, event_array, time_array = survival_arrays(predicted_event_prob_at_t, event, time)
    if np.any((predicted < 0) | (predicted > 1)):
        raise ValueError("predicted_event_prob_at_t must be probabilities in [0, 1]")
    if not 1 <= n_bins <= len(predicted):
        raise ValueError(f"n_bins must be between 1 and the number of subjects ({len(predicted)}), got {n_bins}")
    # Equal-count bins by rank (stable sort), so ties in the prediction cannot leave a bin empty.
    bins = np.array_split(np.argsort(predicted, kind="stable"), n_bins)
    rows = []
    for number, members in enumerate(bins):
        kmf = KaplanMeierFitter().fit(time_array[members], event_array[members])
        observed, lower, upper = _km_event_rate_at(kmf, t)
        rows.append(
            {
                "bin": number,
                "n": len(members),
                "n_events_by_t": int(np.sum(event_array[members] & (time_array[members] <= t))),
                "n_at_risk_at_t": int(np.sum(time_array[members] >= t)),
                "predicted_min": float(predicted[members].min()),
                "predicted_max": float(predicted[members].max()),
                "mean_predicted": float(predicted[members].mean()),
                "observed": observed,
                "observed_lower": lower,
                "observed_upper": upper,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["t"] = float(t)
    return table


def calibration_summary(table: pd.DataFrame) -> dict[str, float]:
    r"""Calibration slope and intercept of a :func:`calibration_table`, plus average miscalibration.

    ``slope`` and ``intercept`` come from the least-squares line :math:`o_g = a + b\,\bar p_g` weighted
    by bin size (perfect: :math:`b = 1, a = 0`; :math:`b < 1` means predictions too extreme).
    ``calibration_in_the_large`` is :math:`\sum_g n_g (o_g - \bar p_g) / n` (positive: risk
    under-predicted) and ``mean_absolute_error`` is :math:`\sum_g n_g |o_g - \bar p_g| / n`. The slope is
    NaN when all bins share one mean prediction.

    Example:
        >>> table = pd.DataFrame({"n": [10, 10, 10], "mean_predicted": [0.1, 0.2, 0.3], "observed": [0.1, 0.2, 0.3]})
        >>> {k: round(v, 6) for k, v in calibration_summary(table).items()}
        {'slope': 1.0, 'intercept': 0.0, 'calibration_in_the_large': 0.0, 'mean_absolute_error': 0.0}
    """
    weight = table["n"].to_numpy(dtype=float)
    predicted = table["mean_predicted"].to_numpy(dtype=float)
    observed = table["observed"].to_numpy(dtype=float)
    weight = weight / weight.sum()
    predicted_mean = np.sum(weight * predicted)
    observed_mean = np.sum(weight * observed)
    spread = np.sum(weight * (predicted - predicted_mean) ** 2)
    if spread > 0:
        slope = float(np.sum(weight * (predicted - predicted_mean) * (observed - observed_mean)) / spread)
        intercept = float(observed_mean - slope * predicted_mean)
    else:
        slope = intercept = float("nan")
    return {
        "slope": slope,
        "intercept": intercept,
        "calibration_in_the_large": float(observed_mean - predicted_mean),
        "mean_absolute_error": float(np.sum(weight * np.abs(observed - predicted))),
    }


def plot_calibration(table: pd.DataFrame, path: str | Path) -> Path:
    """Save a calibration plot (observed vs predicted per bin, KM intervals, identity line) to ``path``.

    The file type follows the suffix (``.png``, ``.pdf``, ``.svg``). Returns the path written.
    """
    path = Path(path)
    summary = calibration_summary(table)
    figure = Figure(figsize=(5, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    top = float(max(table["mean_predicted"].max(), table["observed_upper"].max(), 0.01)) * 1.05
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    axes.errorbar(
        table["mean_predicted"],
        table["observed"],
        yerr=[table["observed"] - table["observed_lower"], table["observed_upper"] - table["observed"]],
        fmt="o",
        capsize=3,
        label="risk bins (KM, 95% CI)",
    )
    t = table.attrs.get("t")
    axes.set_xlabel("mean predicted probability of HF" + (f" by t = {t:g}" if t is not None else ""))
    axes.set_ylabel("observed probability (1 - Kaplan-Meier)")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_title(f"calibration: slope {summary['slope']:.2f}, intercept {summary['intercept']:.3f}")
    axes.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


@dataclass
class RiskGroups:
    """High- vs low-risk split at a percentile of the risk score, with KM curves and a log-rank test."""

    percentile: float
    cutoff: float
    high: np.ndarray  # bool mask, True where risk >= cutoff
    km_high: KaplanMeierFitter
    km_low: KaplanMeierFitter
    logrank_statistic: float
    logrank_p: float

    @property
    def n_high(self) -> int:
        return int(self.high.sum())

    @property
    def n_low(self) -> int:
        return int((~self.high).sum())


def km_by_risk_group(risk: ArrayLike, event: ArrayLike, time: ArrayLike, percentile: float = 96.0) -> RiskGroups:
    """Split subjects at the ``percentile``-th percentile of risk; KM curve per group and log-rank p-value.

    High risk is ``risk >= np.percentile(risk, percentile)``, as in the paper (96th percentile for
    UKB-MI, 98th for UKB-HYP, on risk averaged over seeds): 800 subjects at the 96th give 32 high-risk.
    The log-rank test is lifelines' ``logrank_test`` (chi-square, 1 degree of freedom).

    Example:
        >>> groups = km_by_risk_group([0.0, 0.1, 0.2, 2.0], event=[0, 1, 0, 1], time=[9, 8, 9, 1], percentile=75)
        >>> groups.n_high, groups.n_low, groups.cutoff
        (1, 3, 0.65)
    """
    risk_array, event_array, time_array = survival_arrays(risk, event, time)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    cutoff = float(np.percentile(risk_array, percentile))
    high = risk_array >= cutoff
    if high.all() or not high.any():
        raise ValueError(f"the {percentile}th percentile leaves one group empty (ties in risk?)")
    km_high = KaplanMeierFitter(label=f"high risk (>= {percentile:g}th pct, n={high.sum()})")
    km_low = KaplanMeierFitter(label=f"low risk (n={(~high).sum()})")
    km_high.fit(time_array[high], event_array[high])
    km_low.fit(time_array[~high], event_array[~high])
    test = logrank_test(time_array[high], time_array[~high], event_array[high], event_array[~high])
    return RiskGroups(
        percentile=float(percentile),
        cutoff=cutoff,
        high=high,
        km_high=km_high,
        km_low=km_low,
        logrank_statistic=float(test.test_statistic),
        logrank_p=float(test.p_value),
    )


def plot_km_by_risk_group(groups: RiskGroups, path: str | Path, time_label: str = "time") -> Path:
    """Save the two Kaplan-Meier curves of :func:`km_by_risk_group` (with 95% bands) to ``path``."""
    path = Path(path)
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    groups.km_low.plot_survival_function(ax=axes, color="tab:blue")
    groups.km_high.plot_survival_function(ax=axes, color="tab:red")
    axes.set_xlabel(time_label)
    axes.set_ylabel("HF-free survival")
    axes.set_title(f"log-rank p = {groups.logrank_p:.2g}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
