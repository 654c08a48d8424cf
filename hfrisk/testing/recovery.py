"""How a real-time stream got over a fault, from when each window was due and when it was written.

Pure arithmetic on two times per window (seconds, one clock): *due* when the window's last sample
was acquired (a live feed sends it then), *written* when the window reached Redis; latency =
written - due. :func:`recovery_times` turns them and the fault's start and end into the figures of
``docs/bench/faults-at-load-<beds>.md``.

Example::

    >>> t = recovery_times(due_s=[0, 1, 2, 3, 4, 5, 6], written_s=[0.5, 1.5, 5.5, 5.6, 5.7, 5.8, 6.5],
    ...                    fault_start_s=2.0, fault_end_s=5.0, span_s=1.0)
    >>> t.as_dict(1)  # doctest: +NORMALIZE_WHITESPACE
    {'first_s': 0.5, 'drained_s': 0.7, 'back_s': 0.8, 'peak_latency_s': 3.5, 'peak_backlog': 4, 'before_p95_s': 0.5,
     'after_p95_s': 0.8}
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["RecoveryTimes", "recovery_times", "backlog_at"]


@dataclass(frozen=True)
class RecoveryTimes:
    """Seconds from the end of the fault (None: did not happen before the windows ran out).

    ``first_s``: to the first window written after it. ``drained_s``: to the last window due
    before it being written (0: none was still waiting). ``back_s``: to *back in real time*, the
    first moment from which no window due more than ``real_time_s`` earlier is still unwritten
    and the windows written over the next ``span_s`` have latency p95 <= ``real_time_s``.
    ``peak_latency_s``: the longest latency of a window written after the fault's start and due
    before ``span_s`` after back in real time (before the last window when never back);
    ``peak_backlog``: the most windows due and not yet written at one moment from the fault's start
    to that same end. ``before_p95_s`` / ``after_p95_s``: latency p95 of
    the windows written before the fault / from back in real time on.
    """

    first_s: float | None
    drained_s: float | None
    back_s: float | None
    peak_latency_s: float | None
    peak_backlog: int
    before_p95_s: float | None
    after_p95_s: float | None

    def as_dict(self, digits: int = 2) -> dict:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _p95(values) -> float | None:
    return float(np.percentile(values, 95)) if len(values) else None


def backlog_at(t: float, due_sorted: list[float], written_sorted: list[float]) -> int:
    """Windows due by ``t`` and not yet written at ``t`` (each window is written after it is due)."""
    return bisect.bisect_right(due_sorted, t) - bisect.bisect_right(written_sorted, t)


def recovery_times(due_s, written_s, fault_start_s: float, fault_end_s: float, *, real_time_s: float = 1.0,
                   span_s: float = 10.0) -> RecoveryTimes:
    """The recovery of a stream from a fault lasting ``[fault_start_s, fault_end_s]``; ``due_s`` and
    ``written_s`` are per window, in the same order (see :class:`RecoveryTimes`)."""
    due, written = np.asarray(due_s, dtype=np.float64), np.asarray(written_s, dtype=np.float64)
    if due.shape != written.shape:
        raise ValueError(f"due_s and written_s differ in length: {due.shape} vs {written.shape}")
    written = np.maximum(written, due)  # a window can't be written before it is due (clock jitter)
    latency = written - due
    by_write = np.argsort(written, kind="stable")
    writes = written[by_write]
    lat_by_write = latency[by_write]
    by_due = np.argsort(due, kind="stable")
    dues = due[by_due]
    # Latest write among the windows due up to a point: a window older than the real-time bound is
    # still waiting at t exactly when this exceeds t.
    latest_write_by_due = np.maximum.accumulate(written[by_due]) if len(due) else written

    after = writes[writes > fault_end_s]
    first = float(after[0] - fault_end_s) if len(after) else None
    waiting = written[due < fault_end_s]
    drained = max(0.0, float(waiting.max() - fault_end_s)) if len(waiting) else 0.0

    def in_real_time(t: float) -> bool:
        old = bisect.bisect_right(dues, t - real_time_s)
        if old and latest_write_by_due[old - 1] > t:
            return False
        lo, hi = np.searchsorted(writes, [t, t + span_s], side="left")
        return hi > lo and _p95(lat_by_write[lo:hi]) <= real_time_s

    back_at = next((t for t in [fault_end_s, *after] if in_real_time(float(t))), None)
    # Peaks over the fault and its recovery, up to the end of the span that found it back.
    until = back_at + span_s if back_at is not None else (float(dues[-1]) if len(dues) else fault_end_s)
    hit = (written >= fault_start_s) & (due <= until)  # held by the fault, or due during it or its recovery
    moments = np.concatenate([dues[(dues >= fault_start_s) & (dues <= until)],
                              writes[(writes >= fault_start_s) & (writes <= until)]])
    due_list, write_list = dues.tolist(), writes.tolist()
    peak_backlog = max((backlog_at(float(t), due_list, write_list) for t in moments), default=0)
    return RecoveryTimes(
        first_s=first,
        drained_s=drained,
        back_s=None if back_at is None else float(back_at - fault_end_s),
        peak_latency_s=float(latency[hit].max()) if hit.any() else None,
        peak_backlog=int(peak_backlog),
        before_p95_s=_p95(latency[written < fault_start_s]),
        after_p95_s=None if back_at is None else _p95(lat_by_write[writes >= back_at]),
    )
