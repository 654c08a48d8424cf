"""Windowing: per-patient buffers that turn a stream of chunks into fixed-grid ECG windows, with
duplicates, reordering, gaps and redelivery handled (docs/windowing.md)."""

from hfrisk.stream.windowing.assembler import WindowAssembler
from hfrisk.stream.windowing.buffer import PatientBuffer
from hfrisk.stream.windowing.state import STATE_VERSION, BufferState, BufferStats, ChunkLike
from hfrisk.stream.windowing.windows import (
    Outcome,
    SkippedWindows,
    SkipReason,
    Window,
    parse_window_id,
    us_to_datetime,
    window_id,
)

__all__ = [
    "ChunkLike",
    "Window",
    "SkippedWindows",
    "SkipReason",
    "Outcome",
    "BufferStats",
    "BufferState",
    "PatientBuffer",
    "WindowAssembler",
    "window_id",
    "parse_window_id",
    "us_to_datetime",
    "STATE_VERSION",
]
