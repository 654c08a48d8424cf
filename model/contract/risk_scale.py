r"""What a log-risk means to a reader: its percentile in a reference cohort and an absolute risk.

The network gives a Cox log-hazard :math:`\eta` (higher = riskier), which on its own says nothing a
ward or a screening programme can act on. The model card's ``risk_scale`` (written at export from
the training cohort's log-risks and outcomes, ``hfrisk.training.export``) turns it into two numbers:

* **percentile** (0-100): where :math:`\eta` falls among the reference cohort's log-risks, as a
  mid-rank, :math:`100\,(\#\{\eta_j < \eta\} + \tfrac12 \#\{\eta_j = \eta\}) / n` (scipy's
  ``percentileofscore(kind="mean")``). The card keeps the cohort's quantiles on a grid of
  percentiles (Hazen's plotting positions, under which a sorted value sits exactly at its
  mid-rank; the smallest and largest values are off by at most 50/n points, the quantile
  function being flat outside the first and last position); between grid points the percentile
  is interpolated linearly. A tie of many
  reference subjects (a saturated score) gets the middle of the band it spans.
* **absolute risk** by ``horizon_days``:
  :math:`1 - S_0(h)^{\exp(\eta)}`, with :math:`S_0(h) = \exp(-\hat H_0(h))` Breslow's baseline
  survival for :math:`\eta = 0` (the uncentred log-risk the network outputs), fitted on the
  reference cohort's outcomes.

Both are monotone in :math:`\eta`, so a flag on either is a log-risk threshold
(:meth:`RiskScale.log_risk_threshold`): the alert hysteresis and the ward ranking keep working on
log-risk. docs/score-scale.md says where the numbers come from and what they do not mean.

Example:
    >>> scale = RiskScale(
    ...     reference=ReferenceDistribution(cohort="toy", n=5, percentiles=(0.0, 50.0, 100.0),
    ...                                     log_risk=(-1.0, 0.0, 1.0)),
    ...     absolute_risk=AbsoluteRisk(cohort="toy", n=5, n_events=2, horizon_days=1826.25,
    ...                                baseline_survival=0.9))
    >>> scale.percentile([0.0, 0.5]).tolist()
    [50.0, 75.0]
    >>> round(float(scale.absolute_risk_at_horizon(0.0)), 6)
    0.1
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ReferenceDistribution",
    "AbsoluteRisk",
    "RiskScale",
    "DEFAULT_PERCENTILE_GRID",
    "DAYS_PER_YEAR",
]

DAYS_PER_YEAR = 365.25
# Half a percentile point: fine enough for "top 5 %", and 201 numbers in the card.
DEFAULT_PERCENTILE_GRID: tuple[float, ...] = tuple(float(p) for p in np.linspace(0.0, 100.0, 201))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReferenceDistribution(_Frozen):
    """A reference cohort's log-risks as quantiles: ``log_risk[i]`` at ``percentiles[i]``."""

    cohort: str
    n: int = Field(gt=0)
    percentiles: tuple[float, ...]
    log_risk: tuple[float, ...]
    method: Literal["hazen_midrank"] = "hazen_midrank"

    @model_validator(mode="after")
    def _check(self) -> "ReferenceDistribution":
        p, q = np.asarray(self.percentiles), np.asarray(self.log_risk)
        if len(p) != len(q) or len(p) < 2:
            raise ValueError("percentiles and log_risk need the same length, at least 2")
        if p[0] != 0.0 or p[-1] != 100.0 or np.any(np.diff(p) <= 0):
            raise ValueError("percentiles must rise strictly from 0 to 100")
        if not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("log_risk quantiles must be finite and non-decreasing")
        return self

    @cached_property
    def _steps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct quantiles and the first and last percentile each spans (computed once:
        every scored window asks)."""
        p, q = np.asarray(self.percentiles), np.asarray(self.log_risk)
        # A run of equal quantiles is a tie: it spans [first, last] of its percentiles.
        values, first = np.unique(q, return_index=True)
        last = len(q) - 1 - np.unique(q[::-1], return_index=True)[1]
        return values, p[first], p[last]

    def percentile(self, log_risk) -> np.ndarray:
        """Mid-rank percentile (0-100) of each log-risk in the reference cohort (module docstring)."""
        s = np.asarray(log_risk, dtype=np.float64)
        values, p_first, p_last = self._steps
        k = np.clip(np.searchsorted(values, s, side="right") - 1, 0, len(values) - 1)
        nxt = np.minimum(k + 1, len(values) - 1)
        span = values[nxt] - values[k]
        fraction = np.where(span > 0, (s - values[k]) / np.where(span > 0, span, 1.0), 0.0)
        between = p_last[k] + fraction * (p_first[nxt] - p_last[k])
        out = np.where(s == values[k], (p_first[k] + p_last[k]) / 2, between)
        out = np.where(s < values[0], 0.0, out)
        out = np.where(s > values[-1], 100.0, out)
        return np.where(np.isnan(s), np.nan, out)

    def log_risk_at(self, percentile: float) -> float:
        """The least log-risk whose percentile is at least ``percentile``: ``percentile(x) >= p``
        exactly when ``x >= log_risk_at(p)`` (to 1e-12)."""
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        lo, hi = self.log_risk[0], self.log_risk[-1]
        if float(self.percentile(lo)) >= percentile:
            return float(lo)
        if float(self.percentile(hi)) < percentile:
            # Above the largest reference value everything is the 100th percentile.
            return float(np.nextafter(hi, np.inf))
        # percentile() is non-decreasing with jumps at ties: bisect for the jump or crossing.
        for _ in range(200):
            mid = (lo + hi) / 2
            if mid in (lo, hi) or hi - lo <= 1e-12:
                break
            if float(self.percentile(mid)) >= percentile:
                hi = mid
            else:
                lo = mid
        return float(hi)


class AbsoluteRisk(_Frozen):
    """Breslow's baseline survival at one horizon: ``1 - baseline_survival ** exp(log_risk)``."""

    cohort: str
    n: int = Field(gt=0)
    n_events: int = Field(gt=0)
    horizon_days: float = Field(gt=0)
    # S0(horizon) of a subject whose (uncentred) log-risk is 0.
    baseline_survival: float = Field(gt=0.0, le=1.0)
    method: Literal["breslow"] = "breslow"
    outcome: str = "incident heart failure"

    @property
    def horizon_years(self) -> float:
        return self.horizon_days / DAYS_PER_YEAR

    def absolute_risk(self, log_risk) -> np.ndarray:
        """Probability of the outcome by the horizon for each log-risk."""
        s = np.asarray(log_risk, dtype=np.float64)
        # -expm1(e^eta log S0) = 1 - S0^(e^eta), without losing small risks to rounding.
        return -np.expm1(np.exp(s) * math.log(self.baseline_survival))

    def log_risk_at(self, risk: float) -> float:
        """The log-risk whose absolute risk is ``risk`` (the inverse of :meth:`absolute_risk`)."""
        if not 0.0 < risk < 1.0:
            raise ValueError(f"absolute risk must be in (0, 1), got {risk}")
        if self.baseline_survival >= 1.0:
            return math.inf
        return math.log(math.log1p(-risk) / math.log(self.baseline_survival))


class RiskScale(_Frozen):
    """The card's ``risk_scale``: a reference distribution and an absolute-risk baseline."""

    reference: ReferenceDistribution
    absolute_risk: AbsoluteRisk

    def percentile(self, log_risk) -> np.ndarray:
        return self.reference.percentile(log_risk)

    def absolute_risk_at_horizon(self, log_risk) -> np.ndarray:
        return self.absolute_risk.absolute_risk(log_risk)

    def log_risk_threshold(self, rule: str, value: float) -> float:
        """The log-risk at which ``rule`` (``percentile``, ``absolute_risk`` or ``log_risk``) reaches ``value``."""
        if rule == "percentile":
            return self.reference.log_risk_at(value)
        if rule == "absolute_risk":
            return self.absolute_risk.log_risk_at(value)
        if rule == "log_risk":
            return float(value)
        raise ValueError(f"unknown flag rule {rule!r}: percentile, absolute_risk or log_risk")

    def describe(self) -> str:
        a = self.absolute_risk
        among = "the same subjects" if (a.cohort, a.n) == (self.reference.cohort, self.reference.n) else \
            f"{a.n} subjects of {a.cohort}"
        return (f"percentile among {self.reference.n} subjects of {self.reference.cohort}; "
                f"{a.horizon_years:g}-year absolute risk of {a.outcome} (Breslow baseline, {a.n_events} events "
                f"among {among}; S0 = {a.baseline_survival:.4f})")
