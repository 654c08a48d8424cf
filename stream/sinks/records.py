"""What the Redis sink stores and gives back, as Python values.

:class:`WindowResult` is one window's result as the worker hands it to the sink (built from the
scoring outputs by :meth:`WindowResult.from_scoring`); :class:`WriteOutcome` says what a write did;
:class:`PatientView` and :class:`TrendPoint` are what :meth:`RedisSink.read_patient` reads back.
How each is laid out in Redis is ``hfrisk.stream.sinks.encoding``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.model.contract.risk_scale import RiskScale
from hfrisk.stream.alerts.policy import AlertEvent, AlertState
from hfrisk.stream.windowing import Window

__all__ = ["WindowResult", "WriteOutcome", "TrendPoint", "PatientView", "temporal_summary", "risk_terms"]


def temporal_summary(temporal_attention: np.ndarray) -> list[float]:
    """The (n_leads, n_steps) temporal attention averaged over leads: one weight per step, sum 1.

    Where in the beat the network looked, for a dashboard sparkline; per-lead detail stays on the
    scores topic.
    """
    a = np.asarray(temporal_attention, dtype=np.float64)
    a = a.reshape(-1, a.shape[-1])
    return [float(v) for v in a.mean(axis=0)]


@dataclass(frozen=True)
class WindowResult:
    """What the sink stores about one window.

    A window is *scored* when ``fit_to_score`` and it has a ``log_risk``; otherwise it is a
    low-quality record (a score computed anyway is kept with it, but ranks and alerts nothing).
    ``lead_attention`` is in ``lead_names`` order; ``temporal_attention`` is the per-step summary
    of :func:`temporal_summary`. ``n_beats_detected``: R peaks found in the window (the heart
    rate's beats); ``n_beats_used``: those that formed the median beat. ``risk_percentile`` (0-100,
    in the card's reference cohort) and ``absolute_risk`` (probability of the outcome within
    ``absolute_risk_horizon_days``) come from the model card's risk scale; None when the window has
    no score or the card no scale (docs/score-scale.md).
    """

    patient_id: str
    window_id: str
    window_start_us: int
    window_end_us: int
    fit_to_score: bool
    quality_score: float
    quality_reasons: tuple[str, ...] = ()
    log_risk: float | None = None
    n_beats_detected: int = 0
    n_beats_used: int = 0
    heart_rate_bpm: float | None = None
    lead_attention: tuple[float, ...] | None = None
    lead_names: tuple[str, ...] = CANONICAL_LEADS
    temporal_attention: tuple[float, ...] | None = None
    model_version: str = ""
    scored_at_us: int | None = None
    device_id: str = ""
    bed: str = ""
    risk_percentile: float | None = None
    absolute_risk: float | None = None
    absolute_risk_horizon_days: float | None = None

    @property
    def scored(self) -> bool:
        return self.fit_to_score and self.log_risk is not None

    @property
    def hazard_ratio(self) -> float | None:
        return None if self.log_risk is None else math.exp(self.log_risk)

    @classmethod
    def from_scoring(
        cls,
        window: Window,
        prepared: Any,
        outputs: Mapping[str, np.ndarray] | None = None,
        *,
        model_version: str = "",
        lead_names: tuple[str, ...] = CANONICAL_LEADS,
        scored_at_us: int | None = None,
        bed: str = "",
        risk_scale: RiskScale | None = None,
    ) -> WindowResult:
        """From a :class:`Window`, its ``prepare()`` result and the model's outputs for this one
        window (``log_risk``, ``lead_attention``, ``temporal_attention``; a leading batch axis of 1
        is fine). ``outputs=None``: the window was not scored. ``risk_scale``: the served card's,
        which gives the percentile and absolute risk."""
        quality = prepared.quality
        log_risk = lead_attention = temporal = None
        if outputs is not None:
            log_risk = float(np.asarray(outputs["log_risk"]).reshape(-1)[0])
            if "lead_attention" in outputs:
                lead_attention = tuple(float(v) for v in np.asarray(outputs["lead_attention"]).reshape(-1))
            if "temporal_attention" in outputs:
                temporal = tuple(temporal_summary(outputs["temporal_attention"]))
        hr = prepared.heart_rate_bpm
        return cls(
            patient_id=window.patient_id,
            window_id=window.window_id,
            window_start_us=window.start_us,
            window_end_us=window.end_us,
            fit_to_score=bool(quality.fit_to_score),
            quality_score=float(quality.score),
            quality_reasons=tuple(_code(r) for r in quality.reasons),
            log_risk=log_risk,
            n_beats_detected=int(prepared.n_beats_detected),
            n_beats_used=int(prepared.n_beats_used),
            heart_rate_bpm=None if hr is None else float(hr),
            lead_attention=lead_attention,
            lead_names=tuple(lead_names),
            temporal_attention=temporal,
            model_version=str(model_version),
            scored_at_us=scored_at_us,
            device_id=window.ecg.device_id,
            bed=bed,
            **risk_terms(log_risk, risk_scale),
        )


@dataclass(frozen=True)
class WriteOutcome:
    """What one write did. ``duplicate``: the window had been written before and nothing changed;
    ``events`` are then the ones its first write produced (to re-send)."""

    window_id: str
    duplicate: bool
    latest_updated: bool = False
    events: tuple[AlertEvent, ...] = ()
    alert_state: AlertState | None = None


@dataclass(frozen=True)
class TrendPoint:
    window_start_us: int
    window_id: str
    log_risk: float


@dataclass
class PatientView:
    """Everything the sink holds about one patient (as :meth:`RedisSink.read_patient` reads it)."""

    patient_id: str
    latest: dict[str, Any] | None
    trend: list[TrendPoint]
    alert: AlertState
    flagged: bool
    info: dict[str, str]
    low_quality: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)


def risk_terms(log_risk: float | None, risk_scale: RiskScale | None) -> dict[str, float | None]:
    """``risk_percentile``, ``absolute_risk`` and ``absolute_risk_horizon_days`` of a log-risk
    under a card's risk scale (all None without a score or a scale)."""
    if log_risk is None or risk_scale is None or not math.isfinite(log_risk):
        return {"risk_percentile": None, "absolute_risk": None, "absolute_risk_horizon_days": None}
    return {
        "risk_percentile": float(risk_scale.percentile(float(log_risk))),
        "absolute_risk": float(risk_scale.absolute_risk_at_horizon(float(log_risk))),
        "absolute_risk_horizon_days": risk_scale.absolute_risk.horizon_days,
    }


def _code(reason: Any) -> str:
    # A str-Enum member's str() is "QualityReason.NOISY" on Python 3.11; the stored code is its value.
    return reason.value if isinstance(reason, Enum) else str(reason)
