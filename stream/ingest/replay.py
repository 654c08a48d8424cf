"""``hfrisk replay``: stream ECG recordings into Kafka the way bedside monitors would, one
continuous feed per simulated bed, in real time or as fast as possible. How beds take recordings
and when chunks are due: docs/replay.md.

Example::

    stats = replay(["tests/data/ecg/ptbxl/records500"], "127.0.0.1:9092", "ecg.chunks",
                   beds=2, realtime=False, max_records=3)
    print(stats.summary())
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from tqdm import tqdm

from hfrisk.core.config import get_settings
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.readers.dispatch import iter_records, read_ecg
from hfrisk.core.security import kafka_client_kwargs
from hfrisk.stream.messages import EcgChunk, WireSamples, encode_chunk, wire_samples

__all__ = ["replay", "feed", "ReplayStats", "ReplayError", "patient_id_for", "device_id_for"]

log = get_logger(__name__)

Paths = str | Path | Iterable[str | Path]

# Looped recordings kept in memory after their first read (int16: ~120 kB for 10 s of 12 leads at 500 Hz).
LOOP_CACHE_BYTES = 512 * 2**20


@dataclass
class ReplayStats:
    """What a replay sent. ``recordings`` maps each patient id to its recordings' sources, in order."""

    chunks: int = 0
    bytes: int = 0
    records: int = 0
    records_failed: int = 0
    beds: int = 0
    int16_chunks: int = 0
    float32_chunks: int = 0
    signal_s: float = 0.0
    wall_s: float = 0.0
    # Real time only: how late the latest-sent chunk left after its due time.
    max_lag_s: float = 0.0
    # The producer's linger this replay ran with (an argument, else the setting).
    linger_ms: int | None = None
    interrupted: bool = False
    chunks_per_bed: dict[str, int] = field(default_factory=dict)
    recordings: dict[str, list[str]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add_chunk(self, chunk: EcgChunk, n_bytes: int) -> None:
        self.chunks += 1
        self.bytes += n_bytes
        self.signal_s += chunk.duration_s
        self.chunks_per_bed[chunk.patient_id] = self.chunks_per_bed.get(chunk.patient_id, 0) + 1
        if chunk.sample_dtype == "INT16":
            self.int16_chunks += 1
        else:
            self.float32_chunks += 1

    def summary(self) -> str:
        rate = self.chunks / self.wall_s if self.wall_s > 0 else float("nan")
        lines = [
            f"chunks    {self.chunks} ({self.int16_chunks} int16, {self.float32_chunks} float32), "
            f"{self.bytes / 1e6:.2f} MB, {rate:.0f} chunks/s",
            f"records   {self.records} sent, {self.records_failed} skipped (unreadable)",
            f"beds      {self.beds}, {self.signal_s:.1f} s of signal in {self.wall_s:.1f} s",
        ]
        if self.max_lag_s > 0:
            lines.append(f"lag       at most {self.max_lag_s * 1000:.0f} ms behind real time")
        if self.interrupted:
            lines.append("stopped   interrupted before the end")
        lines += [f"skipped   {path}: {why}" for path, why in self.failures[:10]]
        if len(self.failures) > 10:
            lines.append(f"skipped   ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


class ReplayError(RuntimeError):
    """Kafka did not take a chunk (after the producer's own retries); ``stats`` says what went."""

    def __init__(self, message: str, stats: ReplayStats):
        super().__init__(message)
        self.stats = stats


def patient_id_for(bed: int, salt: str | None = None) -> str:
    """``bed-<i>``; with a ``salt``, a pseudonymous ``pt-<12 hex>`` stable for that salt."""
    if salt is None:
        return f"bed-{bed}"
    return "pt-" + hashlib.sha256(f"{salt}:bed-{bed}".encode()).hexdigest()[:12]


def device_id_for(bed: int) -> str:
    return f"monitor-{bed}"


@dataclass
class _Bed:
    """One simulated bed: the recording it plays and where it is in its feed."""

    index: int
    patient_id: str
    device_id: str
    start_us: int
    sequence: int = 0
    wire: WireSamples | None = None
    rec_start_us: int = 0
    pos: int = 0
    chunk_n: int = 0
    next_n: int = 0

    def time_at(self, pos: int) -> int:
        """Acquisition time (µs) of sample ``pos`` of the current recording."""
        # From the recording's start, not summed chunk by chunk: no rounding drift over hours.
        return self.rec_start_us + round(pos * 1e6 / self.wire.fs_hz)

    def load(self, wire: WireSamples, chunk_s: float) -> None:
        self.rec_start_us = self.time_at(self.pos) if self.wire is not None else self.start_us
        self.wire, self.pos = wire, 0
        self.chunk_n = max(1, round(chunk_s * wire.fs_hz))

    def plan(self, duration_us: int | None) -> int:
        """Samples in this bed's next chunk (0: its current recording or its time is up)."""
        n = min(self.chunk_n, self.wire.n_samples - self.pos)
        if duration_us is not None:
            left_us = self.start_us + duration_us - self.time_at(self.pos)
            n = min(n, max(0, math.ceil(left_us * self.wire.fs_hz / 1e6 - 1e-6)))
        self.next_n = n
        return n

    def due_us(self) -> int:
        return self.time_at(self.pos + self.next_n)

    def take(self) -> EcgChunk:
        chunk = EcgChunk.from_wire(
            self.wire,
            self.pos,
            self.pos + self.next_n,
            patient_id=self.patient_id,
            device_id=self.device_id,
            sequence=self.sequence,
            acquired_at_us=self.time_at(self.pos),
        )
        self.pos += self.next_n
        self.sequence += 1
        return chunk


def _readable(path: Path, *, chunk_s: float, max_bytes: int | None, stats: ReplayStats) -> WireSamples | None:
    """``path`` ready to chunk, or None (logged and counted) when it cannot be read or sent."""
    try:
        wire = wire_samples(read_ecg(path))
        # Encoding the first chunk checks leads, rate, units and size once per recording,
        # so a recording the decoder would refuse is skipped whole, not half-sent.
        probe_n = max(1, round(chunk_s * wire.fs_hz))
        encode_chunk(
            EcgChunk.from_wire(wire, 0, probe_n, patient_id="probe", sequence=0, acquired_at_us=0),
            max_bytes=max_bytes,
        )
    except Exception as exc:  # never stop the feed for one bad file
        reason = exc.reason.value if isinstance(exc, ECGInputError) else type(exc).__name__
        log.warning("recording skipped", path=str(path), reason=reason, error=str(exc))
        stats.records_failed += 1
        stats.failures.append((str(path), f"[{reason}] {exc}"))
        return None
    return wire


def _recordings(
    paths: Paths, *, loop: bool, max_records: int | None, chunk_s: float, max_bytes: int | None, stats: ReplayStats
) -> Iterator[WireSamples]:
    """Readable recordings in order, ready to chunk; unreadable ones are logged and counted.

    Looping, the recordings read on the first pass are kept (read-only) while they fit in
    ``LOOP_CACHE_BYTES``, and later passes send those again without reading their files: a few
    dozen looped records fed to a thousand beds were otherwise read ~100 times a second, half the
    replay's CPU (docs/replay.md)."""
    # Each path of the first pass with its recording where that is kept, else None (read again).
    seen: list[tuple[Path, WireSamples | None]] = []
    cached_bytes = 0
    first_pass = True
    while True:
        sent_this_pass = 0
        for path, kept in ((p, None) for p in iter_records(paths)) if first_pass else seen:
            if max_records is not None and stats.records >= max_records:
                return
            wire = kept if kept is not None else _readable(path, chunk_s=chunk_s, max_bytes=max_bytes, stats=stats)
            if first_pass:
                keep = loop and wire is not None and cached_bytes + wire.samples.nbytes <= LOOP_CACHE_BYTES
                if keep:
                    wire.samples.setflags(write=False)
                    cached_bytes += wire.samples.nbytes
                seen.append((path, wire if keep else None))
            if wire is None:
                continue
            stats.records += 1
            sent_this_pass += 1
            yield wire
        first_pass = False
        # A pass without one readable recording would loop forever.
        if not loop or sent_this_pass == 0:
            return


def feed(
    paths: Paths,
    *,
    beds: int = 1,
    chunk_s: float = 1.0,
    duration_s: float | None = None,
    max_records: int | None = None,
    loop: bool = False,
    start_us: int | None = None,
    salt: str | None = None,
    max_bytes: int | None = None,
    stats: ReplayStats | None = None,
    stagger_s: float | None = None,
) -> Iterator[tuple[float, EcgChunk]]:
    """The chunks of all beds in the order a live feed sends them, without Kafka.

    Yields ``(due_s, chunk)``: ``due_s`` is when the chunk is complete, in seconds from the
    feed's start. ``start_us`` (default now) is the acquisition time where bed 0 starts; bed ``i``
    starts ``i / beds`` of ``stagger_s`` later (default one chunk: every bed's windows then fall due
    within one chunk of each other, a burst; the worker's hop spreads them as monitors attached at
    arbitrary times would). ``duration_s`` limits each bed's signal time,
    ``max_records`` the recordings read, ``loop`` replays the list until one of them stops it.
    ``stats`` (if given) is updated with records, failures, beds and recordings per bed.
    """
    if beds < 1:
        raise ValueError(f"beds must be >= 1, got {beds}")
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if loop and duration_s is None and max_records is None:
        log.info("looping without a duration or record limit: stop with Ctrl-C")
    stats = stats if stats is not None else ReplayStats()
    start_us = time.time_ns() // 1000 if start_us is None else start_us
    duration_us = None if duration_s is None else round(duration_s * 1e6)
    recordings = _recordings(
        paths, loop=loop, max_records=max_records, chunk_s=chunk_s, max_bytes=max_bytes, stats=stats
    )
    if stagger_s is not None and not (math.isfinite(stagger_s) and stagger_s >= 0):
        raise ValueError(f"stagger_s must be >= 0, got {stagger_s}")
    stagger_us = round((chunk_s if stagger_s is None else stagger_s) * 1e6 / beds)

    def next_chunk_due(bed: _Bed) -> int | None:
        """Plan the bed's next chunk, taking its next recording when needed; None when it is done."""
        while True:
            if bed.wire is not None:
                if duration_us is not None and bed.time_at(bed.pos) >= bed.start_us + duration_us:
                    return None
                if bed.plan(duration_us) > 0:
                    return bed.due_us()
            wire = next(recordings, None)
            if wire is None:
                return None
            bed.load(wire, chunk_s)
            if bed.patient_id not in stats.recordings:
                stats.beds += 1
            stats.recordings.setdefault(bed.patient_id, []).append(wire.source)

    heap: list[tuple[int, int]] = []
    all_beds = []
    for i in range(beds):
        bed = _Bed(i, patient_id_for(i, salt), device_id_for(i), start_us=start_us + i * stagger_us)
        all_beds.append(bed)
        due = next_chunk_due(bed)
        if due is None:
            break  # fewer recordings than beds: the rest stay empty
        heapq.heappush(heap, (due, i))
    while heap:
        due, i = heapq.heappop(heap)
        bed = all_beds[i]
        yield (due - start_us) / 1e6, bed.take()
        due = next_chunk_due(bed)
        if due is not None:
            heapq.heappush(heap, (due, i))


def replay(
    paths: Paths,
    bootstrap: str | None = None,
    topic: str | None = None,
    *,
    beds: int = 1,
    chunk_s: float = 1.0,
    realtime: bool = True,
    duration_s: float | None = None,
    max_records: int | None = None,
    loop: bool = False,
    salt: str | None = None,
    start_us: int | None = None,
    linger_ms: int | None = None,
    max_message_bytes: int | None = None,
    progress: bool = True,
    producer_configs: dict | None = None,
    stagger_s: float | None = None,
) -> ReplayStats:
    """Stream the recordings under ``paths`` (files, folders, PTB-XL trees) to ``topic``.

    ``bootstrap``/``topic``/``max_message_bytes``/``linger_ms`` default to ``KafkaSettings``
    (``linger_ms``: its ``replay_linger_ms``). Messages are keyed
    by patient id, produced with ``acks=all`` and idempotence (no duplicates from retries, order
    kept per partition). Ctrl-C stops the feed cleanly: what was sent is flushed and counted
    (``stats.interrupted``). Raises :class:`ReplayError` if Kafka refuses a chunk.
    See :func:`feed` for ``beds``, ``chunk_s``, ``duration_s``, ``max_records``, ``loop``,
    ``salt``, ``start_us``, ``stagger_s``.
    """
    settings = get_settings().kafka
    bootstrap = bootstrap or settings.bootstrap_servers
    topic = topic or settings.ecg_topic
    max_bytes = max_message_bytes or settings.max_message_bytes
    linger_ms = settings.replay_linger_ms if linger_ms is None else linger_ms
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="hfrisk-replay",
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        # A 1-s chunk is ~12 kB: Kafka's 16 kB default batch would hold one message per request.
        batch_size=256 * 1024,
        max_request_size=max_bytes,
        **{**kafka_client_kwargs(settings), **(producer_configs or {})},
    )
    stats = ReplayStats(linger_ms=linger_ms)
    failed: list[BaseException] = []
    started = time.monotonic()
    bar = tqdm(desc="replay", unit=" chunks", disable=not progress, dynamic_ncols=True)
    last_postfix = 0.0
    try:
        try:
            for due_s, chunk in feed(
                paths, beds=beds, chunk_s=chunk_s, duration_s=duration_s, max_records=max_records,
                loop=loop, start_us=start_us, salt=salt, max_bytes=max_bytes, stats=stats, stagger_s=stagger_s,
            ):
                if realtime:
                    wait_s = started + due_s - time.monotonic()
                    if wait_s > 0:
                        time.sleep(wait_s)
                    else:
                        stats.max_lag_s = max(stats.max_lag_s, -wait_s)
                data = encode_chunk(chunk, max_bytes=max_bytes)
                producer.send(topic, key=chunk.key, value=data).add_errback(failed.append)
                if failed:
                    break
                stats.add_chunk(chunk, len(data))
                bar.update()
                now = time.monotonic()
                if now - last_postfix > 0.5:
                    bar.set_postfix(beds=stats.beds, records=stats.records, MB=f"{stats.bytes / 1e6:.1f}")
                    last_postfix = now
        except KeyboardInterrupt:
            stats.interrupted = True
            log.warning("replay interrupted; flushing what was sent")
        producer.flush()
    finally:
        producer.close(timeout=10)
        bar.close()
        stats.wall_s = time.monotonic() - started
    if failed:
        raise ReplayError(f"Kafka did not take a chunk on {topic} at {bootstrap}: {failed[0]!r}", stats)
    log.info(
        "replay done",
        topic=topic,
        chunks=stats.chunks,
        bytes=stats.bytes,
        records=stats.records,
        records_failed=stats.records_failed,
        beds=stats.beds,
        wall_s=round(stats.wall_s, 2),
    )
    return stats
