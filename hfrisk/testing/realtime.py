"""Real time for stream benchmarks: window latencies and a paced feed of known chunks.

* :func:`window_latencies_s`: latency of each window Redis holds, the definition of
  ``hfrisk_end_to_end_latency_seconds`` (Redis write - acquisition of the window's last sample);
  ``bench_stream``'s real-time section and ``bench_faults --real-time`` share it, with
  :func:`percentiles`.
* :class:`PacedFeed`: sends a :class:`~hfrisk.testing.reference.Reference`'s chunks to Kafka each
  at its due time, the pacing of ``replay(realtime=True)`` (same producer settings), in a thread,
  so that a fault can be injected while it runs. Its chunks are the reference's (so the run can be
  checked window by window), acquired once in the past: each is sent ``shift_us`` after its
  acquisition, and latencies are taken on that schedule.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from kafka import KafkaProducer

from hfrisk.stream.messages import encode_chunk

__all__ = ["percentiles", "window_latencies_s", "window_due_us", "PacedFeed"]


def percentiles(values_s) -> dict[str, float]:
    """p50 / p95 / p99 / max, rounded to 0.1 ms."""
    a = np.asarray(values_s, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 95, 99)} | {"max": round(float(a.max()), 4)}


def window_due_us(window_start_us: int, window_s: float, fs_hz: float = 500.0, shift_us: int = 0) -> int:
    """When a window's last sample was acquired (``shift_us`` later on a replayed schedule)."""
    return window_start_us + round(window_s * 1e6) - round(1e6 / fs_hz) + shift_us


def window_latencies_s(records, window_s: float, fs_hz: float = 500.0, shift_us: int = 0) -> list[float]:
    """Redis write - :func:`window_due_us` of each idempotency record (``hfrisk.testing.window_records``)."""
    return [(r["written_at_us"] - window_due_us(r["window_start_us"], window_s, fs_hz, shift_us)) / 1e6
            for r in records]


class PacedFeed:
    """Sends ``chunks`` (``EcgChunk``, sorted by acquisition) to ``topic``, each when its last
    sample is due on a schedule starting at :meth:`start`; in a thread.

    ``shift_us`` (set by :meth:`start`): wall-clock µs minus acquisition µs, the same for every
    chunk. ``max_lag_s``: how late the latest-sent chunk left after its due time, as
    ``ReplayStats.max_lag_s``. A send the producer cannot complete (broker down longer than its
    delivery timeout) is kept in ``errors``.
    """

    def __init__(self, chunks, bootstrap: str, topic: str, max_bytes: int, linger_ms: int = 20):
        self.topic = topic
        # Encoded up front: the feed thread only waits and sends, like a monitor.
        self.items = [(c.acquired_at_us + round(c.duration_s * 1e6), c.key, encode_chunk(c, max_bytes=max_bytes))
                      for c in chunks]
        self.items.sort(key=lambda item: item[0])
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="hfrisk-paced-feed", acks="all",
                                      enable_idempotence=True, linger_ms=linger_ms, batch_size=256 * 1024,
                                      max_request_size=max_bytes)
        self.shift_us = 0
        self.started_mono = 0.0
        self.max_lag_s = 0.0
        self.sent = 0
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="paced-feed", daemon=True)
        self._stop = threading.Event()

    @property
    def first_due_us(self) -> int:
        return self.items[0][0] if self.items else 0

    @property
    def last_due_us(self) -> int:
        return self.items[-1][0] if self.items else 0

    def start(self, lead_s: float = 0.0) -> PacedFeed:
        """Start the schedule: the first chunk is due ``lead_s`` from now."""
        self.started_mono = time.monotonic() + lead_s
        self.shift_us = time.time_ns() // 1000 + round(lead_s * 1e6) - self.first_due_us
        self._thread.start()
        return self

    def at(self, stream_s: float) -> float:
        """The monotonic time ``stream_s`` seconds into the schedule."""
        return self.started_mono + stream_s

    def wall_s(self, monotonic_s: float) -> float:
        """A ``time.monotonic`` reading on the wall clock the workers stamp writes with."""
        return time.time() - (time.monotonic() - monotonic_s)

    def _run(self) -> None:
        for due_us, key, data in self.items:
            if self._stop.is_set():
                break
            wait_s = self.started_mono + (due_us - self.first_due_us) / 1e6 - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            else:
                self.max_lag_s = max(self.max_lag_s, -wait_s)
            self.producer.send(self.topic, key=key, value=data).add_errback(self.errors.append)
            self.sent += 1
        self.producer.flush()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.producer.close(timeout=10)
