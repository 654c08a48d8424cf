"""One patient's windowing state: :class:`PatientBuffer` places that patient's chunks on a fixed
grid and cuts ``window_s`` windows every ``hop_s``, coping with duplicates, reordering, gaps and
new segments. The rules it follows are in docs/windowing.md."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace

import numpy as np

from hfrisk.model.contract.ecg import ECG
from hfrisk.stream.windowing.held_signal import HeldSignal
from hfrisk.stream.windowing.state import STATE_VERSION, BufferedChunk, BufferState, BufferStats, ChunkLike, HeldCounts
from hfrisk.stream.windowing.stored import decode_state, encode_state, state_from_dict
from hfrisk.stream.windowing.windows import Outcome, SkippedWindows, SkipReason, Window, us_to_datetime, window_id

__all__ = ["PatientBuffer"]

# Lost sequence ranges remembered to tell a late chunk from a duplicate; older ones count as duplicates.
_LOST_MEMORY = 64


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
        # Sample positions are counted from the segment origin; _held.end is where signal stops.
        self._held = HeldSignal()
        self._last_start_us = 0
        self.next_sequence: int | None = None
        self._pending: dict[int, BufferedChunk] = {}
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
        return self._held.samples.shape[1]

    @property
    def pending(self) -> int:
        """Chunks waiting for an earlier one."""
        return len(self._pending)

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, chunk: ChunkLike) -> list[Outcome]:
        """Take one chunk; return the windows (and skipped ranges) it completed, in grid order."""
        if chunk.patient_id != self.patient_id:
            raise ValueError(f"chunk of patient {chunk.patient_id!r} fed to the buffer of {self.patient_id!r}")
        c = BufferedChunk.from_chunk(chunk)
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

    def _count_old(self, c: BufferedChunk) -> None:
        if any(first <= c.sequence < stop for first, stop in self._lost):
            self.stats.late += 1
        else:
            self.stats.duplicates += 1

    def _reopen(self) -> None:
        # After close() the next new chunk anchors a new segment like a first chunk would.
        self._closed = False
        self.next_sequence = None
        self._pending.clear()

    def _is_sequence_reset(self, c: BufferedChunk) -> bool:
        tolerance_us = self.time_tolerance_s * 1e6
        return c.start_us > self._last_start_us and c.start_us >= self._time_at(self._held.end) - tolerance_us

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
            reach_us = max(c.end_us for c in self._pending.values()) - self._time_at(self._held.end)
            if not (force or reach_us > self.reorder_s * 1e6 or len(self._pending) > self.max_pending):
                return
            first = min(self._pending)
            missing = (self.next_sequence, first)
            self._lost.append(missing)
            self.stats.lost_chunks += first - self.next_sequence
            self._place(self._pending.pop(first), missing, out)

    def _place(self, c: BufferedChunk, missing: tuple[int, int] | None, out: list[Outcome]) -> None:
        """Put the next chunk (in sequence order) on the grid."""
        self.next_sequence = c.sequence + 1
        if c.fs_hz != self.fs_hz:
            self._new_segment(c, SkipReason.RATE_CHANGE, f"{self.fs_hz:g} Hz -> {c.fs_hz:g} Hz", out)
        elif c.lead_names != self.lead_names:
            self._new_segment(
                c, SkipReason.LEAD_CHANGE, f"{list(self.lead_names)} -> {list(c.lead_names)}", out
            )
        else:
            drift = self._position_of(c.start_us) - self._held.end
            tolerance = max(0, round(self.time_tolerance_s * self.fs_hz))
            if drift > tolerance:
                reason = SkipReason.MISSING_CHUNKS if missing else SkipReason.TIME_GAP
                self._hole(self._held.end + drift, reason, missing, out)
            elif drift < -tolerance:
                self._new_segment(
                    c, SkipReason.TIME_DISCONTINUITY,
                    f"sequence {c.sequence} starts {-drift / self.fs_hz:.3f} s before the previous chunk ended", out,
                )
        self._append(c)
        self._emit_ready(out)

    def _hole(self, resume: int, reason: SkipReason, missing: tuple[int, int] | None, out: list[Outcome]) -> None:
        """No signal in [_held.end, resume): skip every window overlapping it, resume the grid after it."""
        hole_start = self._held.end
        stop = self._first_index_from(resume)
        hole_us = (self._time_at(hole_start), self._time_at(resume))
        detail = f"{(resume - hole_start) / self.fs_hz:.3f} s without signal"
        if missing is not None:
            detail = f"sequences {missing[0]}..{missing[1] - 1} lost, {detail}"
        self._skip(stop, reason, detail, out, hole_us=hole_us, missing=missing)
        self._held = HeldSignal(len(self.lead_names), resume)

    def _new_segment(self, c: BufferedChunk, reason: SkipReason | None, detail: str, out: list[Outcome]) -> None:
        if reason is not None and self.segment >= 0:
            self._skip_started(reason, detail, out)
        self._begin_segment(c)

    def _begin_segment(self, c: BufferedChunk) -> None:
        self.segment += 1
        self.stats.segments += 1
        self.origin_us = c.start_us
        self.fs_hz = c.fs_hz
        self.lead_names = c.lead_names
        self.next_index = 0
        self._held = HeldSignal(len(c.lead_names), 0)

    def _skip_started(self, reason: SkipReason, detail: str, out: list[Outcome]) -> None:
        """Skip the windows of this segment that have started but cannot complete."""
        stop = self._first_index_from(self._held.end)
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

    def _append(self, c: BufferedChunk) -> None:
        self._held.append(c.sequence, c.samples, spare=self.window_samples, counts=c.counts, calibration=c.calibration)
        self._last_start_us = c.start_us
        self.device_id = c.device_id or self.device_id
        self.stats.chunks += 1
        self._trim()

    def _trim(self) -> None:
        """Drop samples before the start of the oldest window still to be emitted."""
        self._held.drop_before(self.window_start_sample(self.next_index))

    def _emit_ready(self, out: list[Outcome]) -> None:
        n = self.window_samples
        while True:
            start = self.window_start_sample(self.next_index)
            if start + n > self._held.end:
                break
            samples, sequences = self._held.cut(start, n)
            k = self.next_index
            start_us = self.window_start_us(k)
            wid = window_id(self.origin_us, k)
            # Every held sample was checked finite when its chunk came in (BufferedChunk.from_chunk)
            # or when a saved state was restored (from_state).
            ecg = ECG.from_checked(
                samples,
                self.fs_hz,
                self.lead_names,
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
                    sequences=sequences,
                )
            )
            self.stats.windows += 1
            self.next_index += 1
        self._trim()

    # -- persistence ------------------------------------------------------------------------

    def to_state(self) -> BufferState:
        """A snapshot of the complete state, bit for bit (docs/windowing.md, "Restarts and the saved state")."""
        return BufferState(
            state_version=STATE_VERSION,
            patient_id=self.patient_id,
            window_s=self.window_s,
            hop_s=self.hop_s,
            reorder_s=self.reorder_s,
            time_tolerance_s=self.time_tolerance_s,
            max_pending=self.max_pending,
            segment=self.segment,
            origin_us=self.origin_us,
            fs_hz=self.fs_hz,
            lead_names=self.lead_names,
            device_id=self.device_id,
            next_index=self.next_index,
            next_sequence=self.next_sequence,
            filled_end=self._held.end,
            buf_start=self._held.start,
            buf=self._held.samples,
            buf_counts=self._held_counts(),
            spans=self._held.spans,
            last_start_us=self._last_start_us,
            pending=[self._pending[seq] for seq in sorted(self._pending)],
            lost=list(self._lost),
            closed=self._closed,
            stats=replace(self.stats),
        )

    def _held_counts(self) -> HeldCounts | None:
        counts = self._held.held_counts()
        if counts is None:
            return None
        gains, baselines = self._held.calibration
        return HeldCounts(counts=counts, gains=gains, baselines=baselines)

    @classmethod
    def from_state(cls, state: BufferState) -> PatientBuffer:
        """The buffer ``state`` was taken of, as it stood then: feeding it continues the same grid."""
        _check_held(state)
        buffer = cls(
            state.patient_id,
            state.window_s,
            state.hop_s,
            reorder_s=state.reorder_s,
            time_tolerance_s=state.time_tolerance_s,
            max_pending=state.max_pending,
        )
        buffer.segment = state.segment
        buffer.origin_us = state.origin_us
        buffer.fs_hz = state.fs_hz
        buffer.lead_names = state.lead_names
        buffer.device_id = state.device_id
        buffer.next_index = state.next_index
        buffer.next_sequence = state.next_sequence
        held_counts = state.buf_counts
        buffer._held = HeldSignal(
            at=state.buf_start, samples=state.buf, end=state.filled_end, spans=list(state.spans),
            counts=None if held_counts is None else held_counts.counts,
            calibration=None if held_counts is None else (held_counts.gains, held_counts.baselines),
        )
        buffer._last_start_us = state.last_start_us
        buffer._pending = {c.sequence: c for c in state.pending}
        buffer._lost = deque(state.lost, maxlen=_LOST_MEMORY)
        buffer._closed = state.closed
        buffer.stats = replace(state.stats)
        return buffer

    def to_dict(self) -> dict:
        """The complete state in the JSON form (version 1): JSON-safe data, samples as base64
        little-endian float32 (held counts, when saved, int16). For reading and tests; the worker
        saves :meth:`to_bytes`."""
        return self.to_state().to_dict()

    @classmethod
    def from_dict(cls, data: dict) -> PatientBuffer:
        return cls.from_state(state_from_dict(data))

    def to_bytes(self) -> bytes:
        """The complete state in the binary form (``STATE_VERSION``): a Redis string (stored.py)."""
        return encode_state(self.to_state())

    @classmethod
    def from_bytes(cls, data: bytes) -> PatientBuffer:
        """A buffer from either stored form: the binary one, or the JSON one older workers saved."""
        return cls.from_state(decode_state(data))

    def __repr__(self) -> str:
        return (
            f"PatientBuffer({self.patient_id!r}, segment={self.segment}, next={self.next_index}, "
            f"buffered={self.buffered_samples}, pending={self.pending})"
        )


def _check_held(state: BufferState) -> None:
    """Refuse a saved state whose samples a live buffer could not hold: windows are cut from them
    without scanning them again (``ECG.from_checked``)."""
    arrays = [("held samples", state.buf, len(state.lead_names) if state.buf.size else state.buf.shape[0])]
    arrays += [(f"waiting chunk {c.sequence}", c.samples, len(c.lead_names)) for c in state.pending]
    for what, samples, rows in arrays:
        if samples.dtype != np.float32 or samples.ndim != 2 or samples.shape[0] != rows:
            raise ValueError(f"saved window buffer: {what} are {samples.dtype} {samples.shape}, "
                             f"expected float32 with {rows} leads")
        if not np.isfinite(samples).all():
            raise ValueError(f"saved window buffer: {what} have NaN/inf values")
