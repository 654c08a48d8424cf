"""Alerting: hysteresis over a patient's scores that raises and clears high-risk flags.

* ``policy``: :class:`AlertPolicy`, a pure ``(state, window) -> (state, event)`` step;
* ``state``: :class:`AlertState` (kept per patient in Redis) and :class:`AlertEvent` (sent to the
  alerts topic and stream), pydantic models with fixed wire forms.
"""

from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.alerts.state import AlertEvent, AlertKind, AlertState

__all__ = ["AlertEvent", "AlertKind", "AlertPolicy", "AlertState"]
