"""Survival metrics for risk scores, each a callable class that keeps its inputs (torchsurv's style).

Sign convention (shared by all of ``hfrisk.training``): a score is a log-hazard, HIGHER = RISKIER;
no metric needs a sign flip from the caller. ``metric = HarrellC(); metric(risk, event, time)``
returns the value and keeps the inputs, so ``metric.confidence_interval()`` can bootstrap them.

* ``cindex``: :class:`HarrellC` (the paper's), :class:`UnoC`; ``auc``: :class:`TimeDependentAUC`;
  ``brier_score``: :class:`IntegratedBrier`; ``breslow``: :class:`BreslowBaseline` (survival curves);
* ``summary``: :func:`summarize`, all of them for one split; ``calibration``: calibration tables,
  Kaplan-Meier curves by risk group;
* ``results``: :class:`MethodResult`, what an evaluated method hands back;
* ``inputs``: :func:`survival_arrays`, the one place where inputs are checked.

Conventions and the choices behind them: docs/training/evaluation.md.
"""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# lifelines, scikit-survival and matplotlib load only for the metric that needs them.
_EXPORTS = {
    "HarrellC": "cindex",
    "UnoC": "cindex",
    "TimeDependentAUC": "auc",
    "IntegratedBrier": "brier_score",
    "BreslowBaseline": "breslow",
    "evaluation_times": "summary",
    "summarize": "summary",
    "calibration_summary": "calibration",
    "calibration_table": "calibration",
    "km_by_risk_group": "calibration",
    "plot_calibration": "calibration",
    "plot_km_by_risk_group": "calibration",
    "MethodResult": "results",
    "harrell_c_or_nan": "results",
    "ArrayLike": "inputs",
    "survival_arrays": "inputs",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
