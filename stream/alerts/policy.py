"""Alerting with hysteresis: when a patient is flagged as high risk, and when the flag clears.

A patient is **raised** after ``min_windows`` consecutive scored windows with
``log_risk >= threshold`` and **cleared** after ``min_windows`` consecutive scored windows with
``log_risk < clear_threshold`` (``clear_threshold <= threshold``: between the two a flagged patient
stays flagged and an unflagged one stays unflagged, so a score hovering at the threshold does not
make the flag flicker). A window in the band breaks the run towards either transition.

Windows that are not fit to score (quality gate) or carry no finite score do not count at all:
they neither extend nor break a run, so a noisy stretch cannot clear an alert.

The policy is a pure function of ``(state, window) -> (state, event | None)`` over a small
:class:`AlertState` per patient. Windows count in order of their start time: a window that starts
at or before the last one counted (a redelivery, or an older window arriving late) changes
nothing, so re-processing is idempotent. :class:`~hfrisk.stream.sinks.redis_sink.RedisSink` keeps the
state in Redis and applies the policy inside the same transaction that writes the window and the
flagged set, so state and flag never disagree. Events are deterministic (no wall clock): the
event for a window is the same however often it is computed; ``event_id`` lets a consumer of the
alerts topic drop the copies that at-least-once delivery produces.

Example::

    policy = AlertPolicy(threshold=1.0, clear_threshold=0.8, min_windows=2)
    state = AlertState()
    for wid, start_us, risk in scores:
        state, event = policy.observe(state, patient_id="bed-3", window_id=wid,
                                      window_start_us=start_us, log_risk=risk, fit_to_score=True)
        if event:
            producer.send("ecg.alerts", key=b"bed-3", value=event.to_json())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hfrisk.stream.alerts.state import AlertEvent, AlertKind, AlertState

__all__ = ["AlertKind", "AlertEvent", "AlertState", "AlertPolicy"]


@dataclass(frozen=True)
class AlertPolicy:
    """Hysteresis on the log-risk: see the module docstring."""

    threshold: float
    clear_threshold: float
    min_windows: int = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and math.isfinite(self.clear_threshold)):
            raise ValueError("thresholds must be finite")
        if self.clear_threshold > self.threshold:
            raise ValueError(
                f"clear_threshold {self.clear_threshold} above threshold {self.threshold}: "
                "the flag would clear while the score is still high"
            )
        if self.min_windows < 1:
            raise ValueError(f"min_windows must be >= 1, got {self.min_windows}")

    @classmethod
    def from_settings(cls, stream_settings=None, *, risk_scale=None) -> AlertPolicy:
        """From ``StreamSettings``: its flag rule (``flag_on``: absolute risk, percentile or
        log-risk) turned into log-risk thresholds by the model card's ``risk_scale``
        (:meth:`StreamSettings.flag_thresholds`), and ``min_windows_to_flag``. Without a scale the
        log-risk thresholds apply, with a warning when another rule was asked for."""
        from hfrisk.core.config import get_settings

        from hfrisk.core.logs import get_logger

        s = stream_settings or get_settings().stream
        log = get_logger(__name__)
        if risk_scale is None and s.flag_on != "log_risk":
            log.warning("the model card has no risk scale: flagging on log-risk instead", flag_on=s.flag_on,
                        risk_threshold=s.risk_threshold, clear_threshold=s.clear_threshold)
        threshold, clear = s.flag_thresholds(risk_scale)
        if risk_scale is not None and s.flag_on != "log_risk":
            # Operators read the rule in its own unit; the policy compares log-risks.
            value = s.flag_absolute_risk if s.flag_on == "absolute_risk" else s.flag_percentile
            log.info("flag rule", flag_on=s.flag_on, value=value, log_risk_threshold=threshold,
                     log_risk_clear_threshold=clear)
        return cls(threshold=threshold, clear_threshold=clear, min_windows=s.min_windows_to_flag)

    def observe(
        self,
        state: AlertState,
        *,
        patient_id: str,
        window_id: str,
        window_start_us: int,
        log_risk: float | None,
        fit_to_score: bool,
    ) -> tuple[AlertState, AlertEvent | None]:
        """Count one scored window; returns the new state and the event it triggered, if any."""
        if not fit_to_score or log_risk is None or not math.isfinite(log_risk):
            return state, None
        if state.last_window_start_us is not None and window_start_us <= state.last_window_start_us:
            return state, None
        counted = state.model_copy(update={"last_window_id": window_id, "last_window_start_us": int(window_start_us)})
        if not state.flagged:
            run = state.run + 1 if log_risk >= self.threshold else 0
            if run < self.min_windows:
                return counted.model_copy(update={"run": run}), None
            event = _event(AlertKind.RAISED, patient_id, window_id, window_start_us, log_risk, self.threshold, run)
            flagged = counted.model_copy(update={"flagged": True, "run": 0, "since_window_id": window_id,
                                                 "since_us": int(window_start_us)})
            return flagged, event
        run = state.run + 1 if log_risk < self.clear_threshold else 0
        if run < self.min_windows:
            return counted.model_copy(update={"run": run}), None
        event = _event(AlertKind.CLEARED, patient_id, window_id, window_start_us, log_risk, self.clear_threshold, run)
        cleared = counted.model_copy(update={"flagged": False, "run": 0, "since_window_id": "", "since_us": None})
        return cleared, event


def _event(kind: AlertKind, patient_id: str, window_id: str, window_start_us: int, log_risk: float, threshold: float,
           run: int) -> AlertEvent:
    return AlertEvent(kind=kind, patient_id=patient_id, window_id=window_id, window_start_us=int(window_start_us),
                      log_risk=float(log_risk), threshold=threshold, windows=run)
