"""Per-patient windowing: a stream of short chunks in, fixed-grid ECG windows out.

A patient's feed arrives as chunks (``sequence`` numbered, ``acquired_at_us`` of the first sample,
``fs_hz``, ``lead_names``, samples). :class:`PatientBuffer` cuts it into windows of ``window_s``
every ``hop_s`` on a grid anchored at the feed's first chunk::

    window k of a segment = samples [round(k·hop_s·fs), round(k·hop_s·fs) + round(window_s·fs))
                            starting at origin_us + round(k·hop_s·1e6)

Every window the grid defines comes out exactly once, either as a :class:`Window` (a complete
``window_s`` :class:`~hfrisk.model.contract.ecg.ECG` in mV) or inside a :class:`SkippedWindows` range with a
:class:`SkipReason`; outcomes are returned in grid order. What the buffer tolerates:

* **duplicates** (a sequence already placed or waiting): ignored and counted.
* **reordering**: a chunk that arrives early waits until the chunks before it arrive. A missing
  chunk is declared lost once the waiting chunks reach more than ``reorder_s`` of signal past the
  hole; a lost chunk that turns up afterwards is dropped and counted as ``late``. The anchor is
  chosen the same way: the buffer waits for ``reorder_s`` of signal before it takes the lowest
  sequence as the first chunk, so a feed whose first chunks were shuffled gets the same grid.
* **gaps**: a chunk is placed by its timestamp. A hole in time (missing chunks, or a pause in the
  feed) skips exactly the windows that overlap it (``missing_chunks`` or ``time_gap``); the grid
  goes on after the hole, so window ``k`` keeps meaning the same stretch of time. Timestamps within
  ``time_tolerance_s`` of where the previous chunk ended count as contiguous (clock jitter); missing
  sequence numbers without a hole in time lose nothing.
* **new segments**: a change of sampling rate or lead set, a sequence counter that restarts (a
  monitor rebooted: lower sequence, later time) or time running backwards ends the segment. The
  windows it had started are skipped with that reason, and a new grid starts at the chunk that
  changed things (``segment`` + 1, index 0).

**Window ids** are ``"<segment origin µs>-<k>"`` (:func:`window_id`): the same chunks always give
the same ids, a new segment's ids differ from every earlier segment's (its origin lies after
them), and a worker that lost its state and re-anchors on a later chunk gets new ids rather than
colliding with windows it wrote before.

**Memory** is bounded: samples before the start of the oldest window still to be emitted are
dropped as soon as that window's predecessor is out, so a buffer holds at most one window plus
one chunk of signal, plus the chunks waiting within the reorder horizon.

**Restarts.** :meth:`PatientBuffer.to_dict` / :meth:`PatientBuffer.to_bytes` hold the complete
state (grid, samples, waiting chunks, counters), bit for bit. A worker saves it *after* the
windows a chunk produced have been written to the sink (Faust: set the table entry at the end of
the agent's loop body). On a restart it restores the state and Kafka redelivers the chunks after
the last committed offset: those already in the saved state are duplicates (ignored), the rest
continue the same grid, so the windows that come out are identical to those the first run made or
would have made, with identical ids; the sink's per-window idempotency absorbs any that were
written twice.

Example::

    assembler = WindowAssembler(window_s=10.0, hop_s=5.0)
    for chunk in chunks:                              # EcgChunk or anything ChunkLike
        for outcome in assembler.feed(chunk):
            if isinstance(outcome, Window):
                score(outcome.ecg)                    # exactly 10 s, mV
            else:
                record(outcome)                       # SkippedWindows: which ids, and why
"""

from __future__ import annotations

import base64
import json
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hfrisk.model.contract.ecg import ECG

__all__ = [
    "ChunkLike",
    "Window",
    "SkippedWindows",
    "SkipReason",
    "Outcome",
    "BufferStats",
    "PatientBuffer",
    "WindowAssembler",
    "window_id",
    "parse_window_id",
    "us_to_datetime",
    "STATE_VERSION",
]

STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Lost sequence ranges remembered to tell a late chunk from a duplicate; older ones count as duplicates.
_LOST_MEMORY = 64


@runtime_checkable
class ChunkLike(Protocol):
    """What the buffer needs of a chunk. :class:`~hfrisk.stream.messages.chunk.EcgChunk` is one.

    If the chunk has ``to_ecg()`` its samples are taken from there (physical mV); otherwise
    ``samples`` must already be ``(n_leads, n)`` in mV.
    """

    patient_id: str
    sequence: int
    acquired_at_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    samples: np.ndarray


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


@dataclass
class BufferStats:
    """Counters of one patient's feed (kept in the state, so they survive restarts)."""

    chunks: int = 0  # placed on the grid
    duplicates: int = 0
    late: int = 0  # arrived after being declared lost
    lost_chunks: int = 0  # sequence numbers declared lost
    windows: int = 0
    windows_skipped: int = 0
    segments: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Chunk:
    """A chunk as the buffer keeps it: samples already in float32 mV."""

    sequence: int
    start_us: int
    fs_hz: float
    lead_names: tuple[str, ...]
    samples: np.ndarray
    device_id: str = ""

    @property
    def n_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def end_us(self) -> int:
        return self.start_us + round(self.n_samples * 1e6 / self.fs_hz)

    def to_dict(self) -> dict:
        return {
            "sequence": self.sequence,
            "start_us": self.start_us,
            "fs_hz": self.fs_hz,
            "lead_names": list(self.lead_names),
            "device_id": self.device_id,
            "samples": _encode_array(self.samples),
        }

    @classmethod
    def from_dict(cls, data: dict) -> _Chunk:
        return cls(
            sequence=int(data["sequence"]),
            start_us=int(data["start_us"]),
            fs_hz=float(data["fs_hz"]),
            lead_names=tuple(data["lead_names"]),
            samples=_decode_array(data["samples"]),
            device_id=data.get("device_id", ""),
        )


def _millivolts(chunk: Any) -> np.ndarray:
    """The chunk's samples in mV; raises ``ValueError`` for a wrong shape or NaN/inf samples."""
    if hasattr(chunk, "to_ecg"):
        return chunk.to_ecg().samples  # an ECG refuses NaN/inf when it is built
    samples = np.asarray(chunk.samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[0] != len(chunk.lead_names) or samples.shape[1] == 0:
        raise ValueError(f"chunk samples must be (n_leads={len(chunk.lead_names)}, n>0), got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError(f"chunk {chunk.sequence} of {chunk.patient_id!r} has NaN/inf samples")
    return samples


def _normalise(chunk: Any) -> _Chunk:
    fs_hz = float(chunk.fs_hz)
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise ValueError(f"chunk sampling rate must be > 0 Hz, got {chunk.fs_hz}")
    # Refused before any state changes: a NaN would otherwise surface only when a window is cut.
    samples = _millivolts(chunk)
    return _Chunk(
        sequence=int(chunk.sequence),
        start_us=int(chunk.acquired_at_us),
        fs_hz=fs_hz,
        lead_names=tuple(str(n) for n in chunk.lead_names),
        samples=samples,
        device_id=str(getattr(chunk, "device_id", "") or ""),
    )


def _encode_array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "f4le": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode_array(data: dict) -> np.ndarray:
    raw = base64.b64decode(data["f4le"])
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(data["shape"])


class PatientBuffer:
    """One patient's windowing state; :meth:`feed` it that patient's chunks in any order.

    ``reorder_s``: how far (seconds of signal) chunks may overtake a missing one before it is
    declared lost. ``time_tolerance_s``: timestamp jitter still taken as contiguous.
    ``max_pending``: waiting chunks beyond which the oldest hole is declared lost regardless.
    """

    def __init__(
        self,
        patient_id: str,
        window_s: float,
        hop_s: float,
        *,
        reorder_s: float = 5.0,
        time_tolerance_s: float = 0.02,
        max_pending: int = 1024,
    ):
        if not window_s > 0 or not hop_s > 0:
            raise ValueError(f"window_s and hop_s must be > 0, got {window_s}, {hop_s}")
        if reorder_s < 0 or time_tolerance_s < 0 or max_pending < 1:
            raise ValueError("reorder_s and time_tolerance_s must be >= 0 and max_pending >= 1")
        self.patient_id = patient_id
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.reorder_s = float(reorder_s)
        self.time_tolerance_s = float(time_tolerance_s)
        self.max_pending = int(max_pending)
        self.stats = BufferStats()
        # Grid of the current segment; segment -1: nothing placed yet (or closed).
        self.segment = -1
        self.origin_us = 0
        self.fs_hz = 0.0
        self.lead_names: tuple[str, ...] = ()
        self.device_id = ""
        self.next_index = 0
        # Sample positions are counted from the segment origin. _buf holds [_buf_start, _filled_end).
        self._filled_end = 0
        self._buf_start = 0
        self._buf = np.zeros((0, 0), np.float32)
        # _buf is a view ending at column _block_end of _block when _append made it: the next
        # chunk is written after it in place instead of copying the whole buffer per chunk.
        self._block: np.ndarray | None = None
        self._block_end = 0
        # (sequence, start position, end position) of the chunks whose samples are still in _buf.
        self._spans: list[tuple[int, int, int]] = []
        self._last_start_us = 0
        self.next_sequence: int | None = None
        self._pending: dict[int, _Chunk] = {}
        self._lost: deque[tuple[int, int]] = deque(maxlen=_LOST_MEMORY)
        # close() ended the segment: the next chunk starts a new one, whatever its sequence.
        self._closed = False

    # -- the grid ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.segment >= 0 and not self._closed

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.fs_hz)

    def window_start_sample(self, index: int) -> int:
        return round(index * self.hop_s * self.fs_hz)

    def window_start_us(self, index: int) -> int:
        return self.origin_us + round(index * self.hop_s * 1e6)

    def _time_at(self, position: int) -> int:
        return self.origin_us + round(position * 1e6 / self.fs_hz)

    def _position_of(self, at_us: int) -> int:
        return round((at_us - self.origin_us) * self.fs_hz / 1e6)

    def _first_index_from(self, position: int) -> int:
        """The first window whose start sample is at or after ``position``."""
        k = max(0, math.floor(position / (self.hop_s * self.fs_hz)) - 1)
        while self.window_start_sample(k) < position:
            k += 1
        return k

    @property
    def buffered_samples(self) -> int:
        """Samples held for windows still to come (bounded by one window plus one chunk)."""
        return self._buf.shape[1]

    @property
    def pending(self) -> int:
        """Chunks waiting for an earlier one."""
        return len(self._pending)

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, chunk: ChunkLike) -> list[Outcome]:
        """Take one chunk; return the windows (and skipped ranges) it completed, in grid order."""
        if chunk.patient_id != self.patient_id:
            raise ValueError(f"chunk of patient {chunk.patient_id!r} fed to the buffer of {self.patient_id!r}")
        c = _normalise(chunk)
        out: list[Outcome] = []
        if self._closed:
            if c.sequence < self.next_sequence and not self._is_sequence_reset(c):
                self._count_old(c)  # a redelivery of the closed feed, not a new one
                return out
            self._reopen()
        if self.next_sequence is None:
            if c.sequence in self._pending:
                self.stats.duplicates += 1
                return out
            self._pending[c.sequence] = c
            self._maybe_anchor(out, force=False)
            return out
        if c.sequence < self.next_sequence:
            if self._is_sequence_reset(c):
                self._drain(out, force=True)
                detail = f"sequence {c.sequence} after {self.next_sequence - 1}"
                self._new_segment(c, SkipReason.SEQUENCE_RESET, detail, out)
                # Lost ranges of the old numbering say nothing about the new one.
                self._lost.clear()
                self.next_sequence = c.sequence
                self._pending[c.sequence] = c
                self._drain(out, force=False)
            else:
                self._count_old(c)
            return out
        if c.sequence in self._pending:
            self.stats.duplicates += 1
            return out
        self._pending[c.sequence] = c
        self._drain(out, force=False)
        return out

    def flush(self) -> list[Outcome]:
        """Stop waiting: declare every hole still open lost now (a feed that went quiet)."""
        out: list[Outcome] = []
        if self.next_sequence is None:
            self._maybe_anchor(out, force=True)
        else:
            self._drain(out, force=True)
        return out

    def close(self) -> list[Outcome]:
        """:meth:`flush`, then report the windows started but never completed (``stream_end``).

        Afterwards every window the grid defined has been emitted or skipped; a chunk fed after
        this starts a new segment.
        """
        out = self.flush()
        if self.segment >= 0 and not self._closed:
            self._skip_started(SkipReason.STREAM_END, "stream closed", out)
            self._closed = True
        return out

    def _count_old(self, c: _Chunk) -> None:
        if any(first <= c.sequence < stop for first, stop in self._lost):
            self.stats.late += 1
        else:
            self.stats.duplicates += 1

    def _reopen(self) -> None:
        # After close() the next new chunk anchors a new segment like a first chunk would.
        self._closed = False
        self.next_sequence = None
        self._pending.clear()

    def _is_sequence_reset(self, c: _Chunk) -> bool:
        tolerance_us = self.time_tolerance_s * 1e6
        return c.start_us > self._last_start_us and c.start_us >= self._time_at(self._filled_end) - tolerance_us

    def _maybe_anchor(self, out: list[Outcome], *, force: bool) -> None:
        """Before the first chunk is placed: wait for ``reorder_s`` of signal, then anchor on the
        lowest sequence so that a shuffled start gives the same grid."""
        if not self._pending:
            return
        span_us = max(c.end_us for c in self._pending.values()) - min(c.start_us for c in self._pending.values())
        if not force and span_us <= self.reorder_s * 1e6 and len(self._pending) <= self.max_pending:
            return
        first = self._pending[min(self._pending)]
        if self.segment < 0:
            self._begin_segment(first)
        else:
            self._new_segment(first, None, "", out)
        self.next_sequence = first.sequence
        self._drain(out, force=force)

    def _drain(self, out: list[Outcome], *, force: bool) -> None:
        """Place waiting chunks in sequence order; declare holes lost past the horizon (or if forced)."""
        while self._pending:
            if self.next_sequence in self._pending:
                c = self._pending.pop(self.next_sequence)
                self._place(c, None, out)
                continue
            reach_us = max(c.end_us for c in self._pending.values()) - self._time_at(self._filled_end)
            if not (force or reach_us > self.reorder_s * 1e6 or len(self._pending) > self.max_pending):
                return
            first = min(self._pending)
            missing = (self.next_sequence, first)
            self._lost.append(missing)
            self.stats.lost_chunks += first - self.next_sequence
            self._place(self._pending.pop(first), missing, out)

    def _place(self, c: _Chunk, missing: tuple[int, int] | None, out: list[Outcome]) -> None:
        """Put the next chunk (in sequence order) on the grid."""
        self.next_sequence = c.sequence + 1
        if c.fs_hz != self.fs_hz:
            self._new_segment(c, SkipReason.RATE_CHANGE, f"{self.fs_hz:g} Hz -> {c.fs_hz:g} Hz", out)
        elif c.lead_names != self.lead_names:
            self._new_segment(
                c, SkipReason.LEAD_CHANGE, f"{list(self.lead_names)} -> {list(c.lead_names)}", out
            )
        else:
            drift = self._position_of(c.start_us) - self._filled_end
            tolerance = max(0, round(self.time_tolerance_s * self.fs_hz))
            if drift > tolerance:
                reason = SkipReason.MISSING_CHUNKS if missing else SkipReason.TIME_GAP
                self._hole(self._filled_end + drift, reason, missing, out)
            elif drift < -tolerance:
                self._new_segment(
                    c, SkipReason.TIME_DISCONTINUITY,
                    f"sequence {c.sequence} starts {-drift / self.fs_hz:.3f} s before the previous chunk ended", out,
                )
        self._append(c)
        self._emit_ready(out)

    def _hole(self, resume: int, reason: SkipReason, missing: tuple[int, int] | None, out: list[Outcome]) -> None:
        """No signal in [_filled_end, resume): skip every window overlapping it, resume the grid after it."""
        hole_start = self._filled_end
        stop = self._first_index_from(resume)
        hole_us = (self._time_at(hole_start), self._time_at(resume))
        detail = f"{(resume - hole_start) / self.fs_hz:.3f} s without signal"
        if missing is not None:
            detail = f"sequences {missing[0]}..{missing[1] - 1} lost, {detail}"
        self._skip(stop, reason, detail, out, hole_us=hole_us, missing=missing)
        self._filled_end = self._buf_start = resume
        self._buf = np.zeros((len(self.lead_names), 0), np.float32)
        self._spans = []

    def _new_segment(self, c: _Chunk, reason: SkipReason | None, detail: str, out: list[Outcome]) -> None:
        if reason is not None and self.segment >= 0:
            self._skip_started(reason, detail, out)
        self._begin_segment(c)

    def _begin_segment(self, c: _Chunk) -> None:
        self.segment += 1
        self.stats.segments += 1
        self.origin_us = c.start_us
        self.fs_hz = c.fs_hz
        self.lead_names = c.lead_names
        self.next_index = 0
        self._filled_end = self._buf_start = 0
        self._buf = np.zeros((len(c.lead_names), 0), np.float32)
        self._spans = []

    def _skip_started(self, reason: SkipReason, detail: str, out: list[Outcome]) -> None:
        """Skip the windows of this segment that have started but cannot complete."""
        stop = self._first_index_from(self._filled_end)
        self._skip(stop, reason, detail, out)

    def _skip(
        self,
        stop: int,
        reason: SkipReason,
        detail: str,
        out: list[Outcome],
        *,
        hole_us: tuple[int, int] | None = None,
        missing: tuple[int, int] | None = None,
    ) -> None:
        if stop > self.next_index:
            out.append(
                SkippedWindows(
                    patient_id=self.patient_id,
                    segment=self.segment,
                    origin_us=self.origin_us,
                    first_index=self.next_index,
                    stop_index=stop,
                    first_start_us=self.window_start_us(self.next_index),
                    reason=reason,
                    detail=detail,
                    hole_us=hole_us,
                    missing_sequences=missing,
                )
            )
            self.stats.windows_skipped += stop - self.next_index
            self.next_index = stop

    def _append(self, c: _Chunk) -> None:
        start = self._filled_end
        self._buf = self._extended(c.samples)
        self._filled_end += c.n_samples
        self._spans.append((c.sequence, start, self._filled_end))
        self._last_start_us = c.start_us
        self.device_id = c.device_id or self.device_id
        self.stats.chunks += 1
        self._trim()

    def _extended(self, samples: np.ndarray) -> np.ndarray:
        """``_buf`` followed by ``samples``: written into the free end of ``_block`` when ``_buf``
        still ends there (a trim keeps the end), else into a new block with room to spare, so a
        sample is copied O(1) times on average instead of once per chunk while it is buffered."""
        have, more = self._buf.shape[1], samples.shape[1]
        block = self._block
        if (
            block is not None
            and self._buf.base is block
            and block.shape[0] == samples.shape[0]
            and self._block_end + more <= block.shape[1]
        ):
            block[:, self._block_end : self._block_end + more] = samples
            self._block_end += more
            return block[:, self._block_end - have - more : self._block_end]
        # Room for a window's worth of chunks after this one: each sample is then copied about
        # (held / window) + 1 times, and a patient costs at most held + one window of memory.
        block = np.empty((samples.shape[0], have + more + self.window_samples), np.float32)
        block[:, :have] = self._buf
        block[:, have : have + more] = samples
        self._block, self._block_end = block, have + more
        return block[:, : have + more]

    def _trim(self) -> None:
        """Drop samples before the start of the oldest window still to be emitted."""
        keep_from = min(self.window_start_sample(self.next_index), self._filled_end)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[:, drop:]
            self._buf_start = keep_from
        self._spans = [span for span in self._spans if span[2] > keep_from]

    def _emit_ready(self, out: list[Outcome]) -> None:
        n = self.window_samples
        while True:
            start = self.window_start_sample(self.next_index)
            if start + n > self._filled_end:
                break
            offset = start - self._buf_start
            samples = self._buf[:, offset : offset + n].copy()
            k = self.next_index
            start_us = self.window_start_us(k)
            wid = window_id(self.origin_us, k)
            ecg = ECG(
                samples=samples,
                fs_hz=self.fs_hz,
                lead_names=self.lead_names,
                units="mV",
                patient_id=self.patient_id,
                device_id=self.device_id,
                acquired_at=us_to_datetime(start_us),
                source="stream",
                metadata={"window_id": wid, "segment": self.segment, "index": k},
            )
            out.append(
                Window(
                    patient_id=self.patient_id,
                    segment=self.segment,
                    index=k,
                    origin_us=self.origin_us,
                    start_us=start_us,
                    end_us=start_us + round(n * 1e6 / self.fs_hz),
                    ecg=ecg,
                    sequences=tuple(seq for seq, a, b in self._spans if a < start + n and b > start),
                )
            )
            self.stats.windows += 1
            self.next_index += 1
        self._trim()

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The complete state as JSON-safe data; samples as base64 little-endian float32."""
        return {
            "state_version": STATE_VERSION,
            "patient_id": self.patient_id,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "reorder_s": self.reorder_s,
            "time_tolerance_s": self.time_tolerance_s,
            "max_pending": self.max_pending,
            "segment": self.segment,
            "origin_us": self.origin_us,
            "fs_hz": self.fs_hz,
            "lead_names": list(self.lead_names),
            "device_id": self.device_id,
            "next_index": self.next_index,
            "next_sequence": self.next_sequence,
            "filled_end": self._filled_end,
            "buf_start": self._buf_start,
            "buf": _encode_array(self._buf),
            "spans": [list(span) for span in self._spans],
            "last_start_us": self._last_start_us,
            "pending": [self._pending[seq].to_dict() for seq in sorted(self._pending)],
            "lost": [list(r) for r in self._lost],
            "closed": self._closed,
            "stats": self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PatientBuffer:
        if data.get("state_version") != STATE_VERSION:
            raise ValueError(f"window buffer state version {data.get('state_version')!r}, expected {STATE_VERSION}")
        buffer = cls(
            data["patient_id"],
            data["window_s"],
            data["hop_s"],
            reorder_s=data["reorder_s"],
            time_tolerance_s=data["time_tolerance_s"],
            max_pending=data["max_pending"],
        )
        buffer.segment = int(data["segment"])
        buffer.origin_us = int(data["origin_us"])
        buffer.fs_hz = float(data["fs_hz"])
        buffer.lead_names = tuple(data["lead_names"])
        buffer.device_id = data["device_id"]
        buffer.next_index = int(data["next_index"])
        buffer.next_sequence = None if data["next_sequence"] is None else int(data["next_sequence"])
        buffer._filled_end = int(data["filled_end"])
        buffer._buf_start = int(data["buf_start"])
        buffer._buf = _decode_array(data["buf"])
        buffer._spans = [tuple(int(v) for v in span) for span in data["spans"]]
        buffer._last_start_us = int(data["last_start_us"])
        buffer._pending = {c.sequence: c for c in map(_Chunk.from_dict, data["pending"])}
        buffer._lost = deque((tuple(r) for r in data["lost"]), maxlen=_LOST_MEMORY)
        buffer._closed = bool(data["closed"])
        buffer.stats = BufferStats(**data["stats"])
        return buffer

    def to_bytes(self) -> bytes:
        """:meth:`to_dict` as compact UTF-8 JSON: a Faust table value or a Redis string."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PatientBuffer:
        return cls.from_dict(json.loads(data))

    def __repr__(self) -> str:
        return (
            f"PatientBuffer({self.patient_id!r}, segment={self.segment}, next={self.next_index}, "
            f"buffered={self.buffered_samples}, pending={self.pending})"
        )


@dataclass
class WindowAssembler:
    """Windows for many patients: routes each chunk to its patient's :class:`PatientBuffer`.

    ``buffers`` maps patient id to buffer; a worker restores them from its table with
    :meth:`restore` when it is assigned a partition.
    """

    window_s: float
    hop_s: float
    reorder_s: float = 5.0
    time_tolerance_s: float = 0.02
    max_pending: int = 1024
    buffers: dict[str, PatientBuffer] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, card, stream_settings=None) -> WindowAssembler:
        """Window length from the model card, hop and reorder horizon from ``StreamSettings``."""
        from hfrisk.core.config import get_settings

        stream = stream_settings or get_settings().stream
        return cls(window_s=card.window.window_s, hop_s=stream.hop_s, reorder_s=stream.reorder_s)

    def buffer(self, patient_id: str) -> PatientBuffer:
        """The patient's buffer, created empty on first use."""
        buffer = self.buffers.get(patient_id)
        if buffer is None:
            buffer = self.buffers[patient_id] = PatientBuffer(
                patient_id,
                self.window_s,
                self.hop_s,
                reorder_s=self.reorder_s,
                time_tolerance_s=self.time_tolerance_s,
                max_pending=self.max_pending,
            )
        return buffer

    def feed(self, chunk: ChunkLike) -> list[Outcome]:
        return self.buffer(chunk.patient_id).feed(chunk)

    def feed_many(self, chunks: Iterable[ChunkLike]) -> Iterator[Outcome]:
        for chunk in chunks:
            yield from self.feed(chunk)

    def close(self, patient_id: str) -> list[Outcome]:
        return self.buffers[patient_id].close() if patient_id in self.buffers else []

    def state(self, patient_id: str) -> bytes:
        """The patient's buffer as bytes, to persist (after its windows reached the sink)."""
        return self.buffer(patient_id).to_bytes()

    def restore(self, patient_id: str, state: bytes | dict) -> PatientBuffer:
        """Replace the patient's buffer by a saved one; its grid must match this assembler's."""
        buffer = PatientBuffer.from_dict(state) if isinstance(state, dict) else PatientBuffer.from_bytes(state)
        if buffer.patient_id != patient_id:
            raise ValueError(f"saved state is of patient {buffer.patient_id!r}, not {patient_id!r}")
        if (buffer.window_s, buffer.hop_s) != (self.window_s, self.hop_s):
            raise ValueError(
                f"saved grid (window {buffer.window_s:g} s, hop {buffer.hop_s:g} s) differs from this assembler's "
                f"(window {self.window_s:g} s, hop {self.hop_s:g} s): window ids would change meaning"
            )
        self.buffers[patient_id] = buffer
        return buffer

    def drop(self, patient_id: str) -> None:
        """Forget a patient (partition revoked, or discharged)."""
        self.buffers.pop(patient_id, None)
