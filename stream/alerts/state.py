"""What alerting keeps and sends: a patient's :class:`AlertState` and the :class:`AlertEvent` a window triggers.

Both are pydantic models, so reading them back (from a Redis hash, a stream entry, the alerts topic's
JSON, strings or not) is validated in one place. Their wire forms are fixed by docs/redis-keys.md
(the ``alert`` hash, the ``alerts`` stream) and the ``ecg.alerts`` topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

from hfrisk.stream.windowing import us_to_datetime

__all__ = ["AlertKind", "AlertEvent", "AlertState"]


class AlertKind(str, Enum):
    RAISED = "raised"
    CLEARED = "cleared"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class AlertEvent(BaseModel):
    """A flag raised or cleared by one window; what goes to the alerts topic and Redis stream.

    ``threshold`` is the one crossed (``threshold`` for raised, ``clear_threshold`` for cleared);
    ``windows`` the run length that triggered it.
    """

    # Stream entries come back as strings: numbers are parsed, and ids that look like numbers stay text.
    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

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
    def at(self) -> datetime:
        """When it happened: the start of the window that triggered it (UTC)."""
        return us_to_datetime(self.window_start_us)

    def to_dict(self) -> dict:
        """The fields, then ``event_id`` and ``at`` (ISO): the stream entry and the topic's JSON."""
        return self.model_dump(mode="json") | {"event_id": self.event_id, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping) -> AlertEvent:
        """From :meth:`to_dict` (values may be strings or bytes; ``event_id`` and ``at`` are derived)."""
        return cls.model_validate({_text(k): _text(v) for k, v in data.items()})

    def to_json(self) -> bytes:
        """Message value for the alerts topic (key: the patient id)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


class AlertState(BaseModel):
    """One patient's alert state.

    ``run``: consecutive counted windows towards the next transition (raise when not flagged,
    clear when flagged). ``last_window_*``: the newest window counted; older ones are ignored.
    ``since_*``: the window that raised the current flag.
    """

    model_config = ConfigDict(frozen=True)

    flagged: bool = False
    run: int = 0
    last_window_id: str = ""
    last_window_start_us: int | None = None
    since_window_id: str = ""
    since_us: int | None = None

    def to_fields(self) -> dict[str, str]:
        """As flat strings for a Redis hash: flags ``1``/``0``, ``None`` as the empty string."""
        return {name: _hash_value(value) for name, value in self.model_dump().items()}

    @classmethod
    def from_fields(cls, fields: Mapping) -> AlertState:
        """From :meth:`to_fields` (str or bytes keys and values); empty: the initial state."""
        present = {_text(k): _text(v) for k, v in fields.items()}
        return cls.model_validate({k: v for k, v in present.items() if v != ""})


def _hash_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)
