"""What windowing puts out: a :class:`Window` of signal, or a :class:`SkippedWindows` range with a
:class:`SkipReason`, and the window ids both carry. The grid and its rules: docs/windowing.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

import numpy as np

from hfrisk.model.contract.ecg import ECG

__all__ = [
    "Window",
    "SkippedWindows",
    "SkipReason",
    "Outcome",
    "window_id",
    "parse_window_id",
    "us_to_datetime",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SkipReason(str, Enum):
    """Why windows of the grid were not emitted. Stable strings: stored in Redis, counted."""

    MISSING_CHUNKS = "missing_chunks"  # sequence numbers never arrived within the reorder horizon
    TIME_GAP = "time_gap"  # contiguous sequence numbers, but a hole in acquisition time
    RATE_CHANGE = "rate_change"
    LEAD_CHANGE = "lead_change"
    SEQUENCE_RESET = "sequence_reset"  # the device's counter restarted (lower sequence, later time)
    TIME_DISCONTINUITY = "time_discontinuity"  # a chunk timestamped before the end of the previous one
    STREAM_END = "stream_end"  # close(): windows started but never completed


def us_to_datetime(us: int) -> datetime:
    """UTC datetime of ``us`` microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=int(us))


def window_id(origin_us: int, index: int) -> str:
    """The id of window ``index`` of the segment anchored at ``origin_us``: ``"<origin_us>-<index>"``."""
    return f"{int(origin_us)}-{int(index)}"


def parse_window_id(wid: str) -> tuple[int, int]:
    """``(origin_us, index)`` back from :func:`window_id` (origins may be negative: pre-1970 clocks)."""
    origin, _, index = wid.rpartition("-")
    return int(origin), int(index)


@dataclass(frozen=True, eq=False)
class Window:
    """One complete window: ``ecg`` holds exactly ``window_s`` of signal in mV.

    ``sequences`` are the chunks it was cut from; ``ecg.acquired_at`` is the window start and
    ``ecg.metadata`` carries ``window_id``, ``segment`` and ``index``.
    """

    patient_id: str
    segment: int
    index: int
    origin_us: int
    start_us: int
    end_us: int
    ecg: ECG
    sequences: tuple[int, ...]

    @property
    def window_id(self) -> str:
        return window_id(self.origin_us, self.index)

    @property
    def start(self) -> datetime:
        return us_to_datetime(self.start_us)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Window):
            return NotImplemented
        return (
            (self.patient_id, self.segment, self.index, self.origin_us, self.start_us, self.end_us, self.sequences)
            == (other.patient_id, other.segment, other.index, other.origin_us, other.start_us, other.end_us,
                other.sequences)
            and self.ecg.fs_hz == other.ecg.fs_hz
            and self.ecg.lead_names == other.ecg.lead_names
            and np.array_equal(self.ecg.samples, other.ecg.samples)
        )

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"Window({self.patient_id!r}, {self.window_id}, start={self.start.isoformat()}, "
            f"{self.ecg.n_leads}x{self.ecg.n_samples} @ {self.ecg.fs_hz:g} Hz, seq {self.sequences})"
        )


@dataclass(frozen=True)
class SkippedWindows:
    """Windows ``first_index`` .. ``stop_index - 1`` of one segment that will never be emitted.

    ``hole_us`` is the stretch of time without signal (gaps); ``missing_sequences`` the
    ``[first, stop)`` range of sequence numbers declared lost, if any.
    """

    patient_id: str
    segment: int
    origin_us: int
    first_index: int
    stop_index: int
    first_start_us: int
    reason: SkipReason
    detail: str = ""
    hole_us: tuple[int, int] | None = None
    missing_sequences: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.stop_index - self.first_index

    @property
    def indices(self) -> range:
        return range(self.first_index, self.stop_index)

    @property
    def window_ids(self) -> list[str]:
        return [window_id(self.origin_us, k) for k in self.indices]

    @property
    def first_window_id(self) -> str:
        return window_id(self.origin_us, self.first_index)


Outcome = Window | SkippedWindows
