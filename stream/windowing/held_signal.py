"""The samples a :class:`~hfrisk.stream.windowing.buffer.PatientBuffer` holds for windows still to
come: :class:`HeldSignal`, one segment's columns ``[start, end)`` and the chunks they came from,
appended in place so that holding a window's worth of signal does not copy it once per chunk, and
the int16 counts those columns arrived as, which a saved state holds instead."""

from __future__ import annotations

import numpy as np

__all__ = ["HeldSignal"]


class HeldSignal:
    """Columns ``[start, end)`` of one segment's signal (positions in samples from its origin).

    ``spans`` are ``(sequence, start, end)`` of the chunks whose samples are still held.

    Counts: while every chunk appended since some column came as int16 counts of one
    ``calibration`` (``(gains, baselines)``), their counts arrays, kept by reference (a decoded
    message's counts are a read-only array of their own: no copy per chunk) and joined only by
    :meth:`held_counts`, which gives them once they cover every held column.
    """

    def __init__(
        self,
        n_leads: int = 0,
        at: int = 0,
        *,
        samples: np.ndarray | None = None,
        end: int | None = None,
        spans: list[tuple[int, int, int]] | None = None,
        counts: np.ndarray | None = None,
        calibration: tuple[tuple[float, ...], tuple[int, ...]] | None = None,
    ):
        self.start = at
        self.samples = np.zeros((n_leads, 0), np.float32) if samples is None else samples
        self.end = at if end is None else end
        self.spans: list[tuple[int, int, int]] = [] if spans is None else spans
        # (first column, counts) of each chunk since the counts began, in order; None: no counts.
        self._count_parts: list[tuple[int, np.ndarray]] | None = None if counts is None else [(at, counts)]
        self.calibration = calibration
        # samples is a view ending at column _block_end of _block when append made it: the next
        # chunk is written after it in place instead of copying everything held per chunk.
        self._block: np.ndarray | None = None
        self._block_end = 0

    def append(
        self,
        sequence: int,
        samples: np.ndarray,
        *,
        spare: int,
        counts: np.ndarray | None = None,
        calibration: tuple[tuple[float, ...], tuple[int, ...]] | None = None,
    ) -> None:
        """Hold ``samples`` (a chunk) after the last column; ``spare``: columns of room to allocate
        beyond them when a new block is needed (a window's worth). ``counts``: the read-only int16
        counts ``samples`` were computed from through ``calibration``, if they were."""
        start = self.end
        self.samples = self._extended(samples, spare)
        self.end += samples.shape[1]
        self.spans.append((sequence, start, self.end))
        parts = self._count_parts
        if counts is None:
            self._count_parts = None
        elif parts is not None and calibration == self.calibration:
            parts.append((start, counts))
        else:  # the first counts, or another calibration: counts from this chunk on
            self._count_parts, self.calibration = [(start, counts)], calibration

    def _extended(self, samples: np.ndarray, spare: int) -> np.ndarray:
        """``self.samples`` followed by ``samples``: written into the free end of ``_block`` when
        ``self.samples`` still ends there (dropping keeps the end), else into a new block with room
        to spare, so a sample is copied O(1) times on average instead of once per chunk while held."""
        have, more = self.samples.shape[1], samples.shape[1]
        block = self._block
        if (
            block is not None
            and self.samples.base is block
            and block.shape[0] == samples.shape[0]
            and self._block_end + more <= block.shape[1]
        ):
            block[:, self._block_end : self._block_end + more] = samples
            self._block_end += more
            return block[:, self._block_end - have - more : self._block_end]
        # Room for a window's worth of chunks after this one: each sample is then copied about
        # (held / window) + 1 times, and a patient costs at most held + one window of memory.
        block = np.empty((samples.shape[0], have + more + spare), np.float32)
        block[:, :have] = self.samples
        block[:, have : have + more] = samples
        self._block, self._block_end = block, have + more
        return block[:, : have + more]

    def drop_before(self, position: int) -> None:
        """Forget the samples before ``position`` (never past the end)."""
        keep_from = min(position, self.end)
        drop = keep_from - self.start
        if drop <= 0:
            # Every span held ends after start (the last drop removed the others): nothing to do.
            return
        self.samples = self.samples[:, drop:]
        self.start = keep_from
        self.spans = [span for span in self.spans if span[2] > keep_from]
        parts = self._count_parts
        if parts:
            first = 0  # the part holding column keep_from (or the last one)
            while first + 1 < len(parts) and parts[first + 1][0] <= keep_from:
                first += 1
            del parts[:first]

    def held_counts(self) -> np.ndarray | None:
        """The counts of every held column (of :attr:`calibration`), or ``None`` while some held
        column did not arrive as counts of it."""
        parts = self._count_parts
        if not parts or parts[0][0] > self.start:
            return None
        at, first = parts[0]
        first = first[:, self.start - at :]
        return first if len(parts) == 1 else np.concatenate([first, *(a for _, a in parts[1:])], axis=1)

    def cut(self, start: int, n: int) -> tuple[np.ndarray, tuple[int, ...]]:
        """Columns ``[start, start + n)``, read-only, and the sequences of the chunks they came from.

        A view, not a copy (a window is 240 kB): a column once held is never written again, since
        :meth:`append` writes only after the last one and a full block is replaced, not reused,
        so the window keeps the values it was cut with while the buffer moves on.
        """
        offset = start - self.start
        samples = self.samples[:, offset : offset + n]
        samples.flags.writeable = False
        return samples, tuple(seq for seq, a, b in self.spans if a < start + n and b > start)
