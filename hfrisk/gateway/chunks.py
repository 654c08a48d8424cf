"""Recordings that arrived through a gateway, cut into the chunks of the raw topic.

A gateway is one more feed of the ``ecg.chunks`` topic, beside the replay producer: chunks of
``chunk_s`` seconds, keyed by patient, numbered per patient stream from 0 (docs/message-schema.md).
A stream is one patient on one device: the next message of that stream continues its sequence,
so the worker's windows run across message boundaries. The counters live in memory: after a
gateway restart a stream starts again at 0, which the worker reads as a new segment (a monitor
restart), losing nothing but the partial window.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from hfrisk.model.contract.ecg import ECG
from hfrisk.stream.messages import EcgChunk, datetime_to_us, wire_samples

__all__ = ["Sequencer", "ecg_to_chunks"]


class Sequencer:
    """Next sequence number per ``(patient_id, device_id)`` stream, safe across threads."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def take(self, patient_id: str, device_id: str, n: int) -> int:
        """Reserve ``n`` consecutive numbers for the stream; returns the first."""
        with self._lock:
            first = self._next.get((patient_id, device_id), 0)
            self._next[(patient_id, device_id)] = first + n
            return first


def ecg_to_chunks(ecg: ECG, sequencer: Sequencer, *, chunk_s: float = 1.0, source: str = "") -> list[EcgChunk]:
    """``ecg`` as consecutive chunks of ``chunk_s`` seconds (the last may be shorter).

    The first sample's time is ``ecg.acquired_at`` (naive times are UTC); a message without one is
    placed to end now. Samples go as the reader gave them (float32 mV unless exact int16 counts).
    """
    wire = wire_samples(replace(ecg, source=source or ecg.source))
    if ecg.acquired_at is not None:
        start_us = datetime_to_us(ecg.acquired_at)
    else:
        start_us = time.time_ns() // 1000 - round(ecg.n_samples * 1e6 / ecg.fs_hz)
    step = max(1, round(chunk_s * ecg.fs_hz))
    bounds = list(range(0, ecg.n_samples, step))
    first = sequencer.take(ecg.patient_id, ecg.device_id, len(bounds))
    return [
        EcgChunk.from_wire(
            wire, lo, min(lo + step, ecg.n_samples),
            patient_id=ecg.patient_id, device_id=ecg.device_id, sequence=first + k,
            acquired_at_us=start_us + round(lo * 1e6 / ecg.fs_hz), source=source,
        )
        for k, lo in enumerate(bounds)
    ]
