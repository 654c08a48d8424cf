"""Survival metrics for risk scores, each a callable class that keeps its inputs (torchsurv's style).

Sign convention (shared by all of ``hfrisk.training``): a score is a log-hazard, HIGHER = RISKIER;
no metric needs a sign flip from the caller. ``metric = HarrellC(); metric(risk, event, time)``
returns the value and keeps the inputs, so ``metric.confidence_interval()`` can bootstrap them.

* :mod:`~hfrisk.training.evaluation.metrics.cindex`: :class:`HarrellC` (the paper's), :class:`UnoC`
* :mod:`~hfrisk.training.evaluation.metrics.auc`: :class:`TimeDependentAUC`
* :mod:`~hfrisk.training.evaluation.metrics.brier_score`: :class:`IntegratedBrier`
* :mod:`~hfrisk.training.evaluation.metrics.breslow`: :class:`BreslowBaseline` (survival curves)
* :mod:`~hfrisk.training.evaluation.metrics.summary`: :func:`summarize` (all of them for one split)
* :mod:`~hfrisk.training.evaluation.metrics.inputs`: :func:`survival_arrays`, where inputs are checked
"""

from hfrisk.training.evaluation.metrics.auc import TimeDependentAUC
from hfrisk.training.evaluation.metrics.breslow import BreslowBaseline
from hfrisk.training.evaluation.metrics.brier_score import IntegratedBrier
from hfrisk.training.evaluation.metrics.cindex import HarrellC, UnoC
from hfrisk.training.evaluation.metrics.inputs import ArrayLike, survival_arrays
from hfrisk.training.evaluation.metrics.summary import evaluation_times, summarize

__all__ = [
    "ArrayLike",
    "BreslowBaseline",
    "HarrellC",
    "IntegratedBrier",
    "TimeDependentAUC",
    "UnoC",
    "evaluation_times",
    "summarize",
    "survival_arrays",
]
