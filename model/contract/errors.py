"""The one exception type for input an ECG pipeline cannot use.

Readers, lead conforming, preprocessing and the stream decoder all raise :class:`ECGInputError`;
its ``reason`` is a stable machine-readable code (used as the dead-letter reason in streaming),
its message says what to do about it.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ECGInputError", "InputErrorReason"]


class InputErrorReason(str, Enum):
    NON_FINITE = "non_finite"
    BAD_SHAPE = "bad_shape"
    UNKNOWN_LEAD = "unknown_lead"
    DUPLICATE_LEAD = "duplicate_lead"
    MISSING_LEADS = "missing_leads"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LOW_SAMPLING_RATE = "low_sampling_rate"
    BAD_SAMPLING_RATE = "bad_sampling_rate"
    BAD_UNITS = "bad_units"
    UNREADABLE = "unreadable"
    BAD_MESSAGE = "bad_message"
    OVERSIZED = "oversized"


class ECGInputError(ValueError):
    """Input that cannot be turned into a model input; ``reason`` says which rule it broke."""

    def __init__(self, reason: InputErrorReason | str, message: str):
        self.reason = InputErrorReason(reason)
        super().__init__(f"[{self.reason.value}] {message}")
        self.detail = message
