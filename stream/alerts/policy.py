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

import json
import math
from dataclasses import asdict, dataclass, replace
from enum import Enum

from hfrisk.stream.windowing import us_to_datetime

__all__ = ["AlertKind", "AlertEvent", "AlertState", "AlertPolicy"]


class AlertKind(str, Enum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True)
class AlertEvent:
    """A flag raised or cleared by one window; what goes to the alerts topic and Redis stream.

    ``threshold`` is the one crossed (``threshold`` for raised, ``clear_threshold`` for cleared);
    ``windows`` the run length that triggered it.
    """

    kind: AlertKind
    patient_id: str
    window_id: str
    window_start_us: int
    log_risk: float
    threshold: float
    windows: int

    @property
    def event_id(self) -> str:
        """Unique per (patient, window, kind): consumers deduplicate on it."""
        return f"{self.patient_id}/{self.window_id}/{self.kind.value}"

    @property
    def at(self):
        """When it happened: the start of the window that triggered it (UTC)."""
        return us_to_datetime(self.window_start_us)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["event_id"] = self.event_id
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AlertEvent:
        return cls(
            kind=AlertKind(data["kind"]),
            patient_id=str(data["patient_id"]),
            window_id=str(data["window_id"]),
            window_start_us=int(data["window_start_us"]),
            log_risk=float(data["log_risk"]),
            threshold=float(data["threshold"]),
            windows=int(data["windows"]),
        )

    def to_json(self) -> bytes:
        """Message value for the alerts topic (key: the patient id)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class AlertState:
    """One patient's alert state.

    ``run``: consecutive counted windows towards the next transition (raise when not flagged,
    clear when flagged). ``last_window_*``: the newest window counted; older ones are ignored.
    ``since_*``: the window that raised the current flag.
    """

    flagged: bool = False
    run: int = 0
    last_window_id: str = ""
    last_window_start_us: int | None = None
    since_window_id: str = ""
    since_us: int | None = None

    def to_fields(self) -> dict[str, str]:
        """As flat strings for a Redis hash (``None`` as empty string)."""
        return {
            "flagged": "1" if self.flagged else "0",
            "run": str(self.run),
            "last_window_id": self.last_window_id,
            "last_window_start_us": "" if self.last_window_start_us is None else str(self.last_window_start_us),
            "since_window_id": self.since_window_id,
            "since_us": "" if self.since_us is None else str(self.since_us),
        }

    @classmethod
    def from_fields(cls, fields: dict) -> AlertState:
        """From :meth:`to_fields` (str or bytes keys and values); empty: the initial state."""
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
        if not f:
            return cls()
        return cls(
            flagged=f.get("flagged") == "1",
            run=int(f.get("run") or 0),
            last_window_id=f.get("last_window_id", ""),
            last_window_start_us=int(f["last_window_start_us"]) if f.get("last_window_start_us") else None,
            since_window_id=f.get("since_window_id", ""),
            since_us=int(f["since_us"]) if f.get("since_us") else None,
        )


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
    def from_settings(cls, stream_settings=None) -> AlertPolicy:
        """From ``StreamSettings`` (risk_threshold, clear_threshold, min_windows_to_flag)."""
        from hfrisk.core.config import get_settings

        s = stream_settings or get_settings().stream
        return cls(threshold=s.risk_threshold, clear_threshold=s.clear_threshold, min_windows=s.min_windows_to_flag)

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
        counted = replace(state, last_window_id=window_id, last_window_start_us=int(window_start_us))
        if not state.flagged:
            run = state.run + 1 if log_risk >= self.threshold else 0
            if run < self.min_windows:
                return replace(counted, run=run), None
            event = AlertEvent(AlertKind.RAISED, patient_id, window_id, int(window_start_us), float(log_risk),
                               self.threshold, run)
            flagged = replace(counted, flagged=True, run=0, since_window_id=window_id, since_us=int(window_start_us))
            return flagged, event
        run = state.run + 1 if log_risk < self.clear_threshold else 0
        if run < self.min_windows:
            return replace(counted, run=run), None
        event = AlertEvent(AlertKind.CLEARED, patient_id, window_id, int(window_start_us), float(log_risk),
                           self.clear_threshold, run)
        return replace(counted, flagged=False, run=0, since_window_id="", since_us=None), event
