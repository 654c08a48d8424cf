"""Windows handed to the preprocessing processes through shared memory instead of pickles, and
their model inputs handed back the same way.

A 10-s, 12-lead, 500-Hz window is 240 kB. Pickled into the process pool's pipe, the pool's feeder
thread copies it into a pickle and pushes it through a 64-kB pipe in pieces, and the pool process
reads it and copies it back out. Here the worker copies each window once into a block of POSIX
shared memory and sends only where it lies (:class:`WindowRef`); the pool process maps the block
once and reads the samples in place. The prepared windows' large arrays (the model input and the
median beat, ~58 kB a window) come back in the same block, behind the windows, in room the worker
reserved for them (:func:`put_arrays`, :func:`take_arrays`): the pickle that comes back through the
pipe carries only where they lie. What that saves: docs/bench/pool-handoff.md.

:class:`WindowBlocks` owns the blocks: created on first need up to a budget of bytes, reused once
the part that used one is done, unlinked on :meth:`WindowBlocks.close`. A part that finds no free
block within the budget is pickled as before, so the budget bounds memory, never correctness.
Blocks are registered with multiprocessing's resource tracker, which unlinks them if the worker
dies without closing them (the pool's processes share the worker's tracker). Killed together with
the tracker (a container killed whole), they are removed by the next worker that starts on the same
``/dev/shm`` (:func:`hfrisk.core.shared_memory.sweep_abandoned`).
"""

from __future__ import annotations

import dataclasses
import errno
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.core.shared_memory import aligned, reserved, segment_names, sweep_abandoned
from hfrisk.model.contract.ecg import ECG

__all__ = [
    "WindowRef",
    "ArrayRef",
    "SharedBlock",
    "WindowBlocks",
    "BLOCK_PREFIX",
    "attached",
    "block_size_for",
    "windows_bytes",
    "windows_from",
    "put_arrays",
    "take_arrays",
]

log = get_logger(__name__)

# Blocks come in whole MiB: a part of 8 windows of 240 kB and their model inputs takes 3 MiB.
_MIN_BLOCK = 1 << 20
# Names of the pool's blocks in /dev/shm (hfrisk.core.shared_memory.segment_names).
BLOCK_PREFIX = "hfrisk_prep_"


def block_size_for(nbytes: int) -> int:
    """The size of block a part of ``nbytes`` (aligned windows and room for their results) is put in."""
    return max(_MIN_BLOCK, -(-nbytes // _MIN_BLOCK) * _MIN_BLOCK)


@dataclass(frozen=True)
class WindowRef:
    """Where one window's samples lie in a block, and the rest of its :class:`ECG` (the fields
    pickle would carry)."""

    offset: int
    shape: tuple[int, int]
    fields: dict[str, Any]

    def ecg(self, buf: Any) -> ECG:
        """The window again, its samples a read-only view of ``buf``. Built as unpickling builds
        it (no second validation: the worker's :class:`ECG` was validated when it was cut)."""
        samples = np.ndarray(self.shape, np.float32, buffer=buf, offset=self.offset)
        samples.flags.writeable = False
        ecg = ECG.__new__(ECG)
        ecg.__dict__.update(self.fields, samples=samples)
        return ecg


@dataclass(frozen=True)
class ArrayRef:
    """Where a pool process left one array of a result in the block it was sent."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


def arrays_bytes(shapes: Iterable[tuple[int, ...]], itemsize: int = 4) -> int:
    """The room arrays of these shapes take in a block, one after another, each aligned."""
    return sum(aligned(math.prod(shape) * itemsize) for shape in shapes)


def windows_bytes(ecgs: Sequence[ECG]) -> int:
    return arrays_bytes(ecg.samples.shape for ecg in ecgs)


class SharedBlock:
    """One shared-memory segment created by this process. Its pages are reserved when it is made,
    so a full ``/dev/shm`` is an ``OSError`` here rather than a SIGBUS when a window is copied in."""

    def __init__(self, size: int, name: str | None = None):
        self._shm = reserved(size, name)
        self.name = self._shm.name
        self.size = size

    def put(self, ecgs: Sequence[ECG]) -> list[WindowRef]:
        """Copy the windows' samples in, one after another; their references, in order."""
        refs, offset = [], 0
        for ecg in ecgs:
            samples = ecg.samples
            np.copyto(np.ndarray(samples.shape, np.float32, buffer=self._shm.buf, offset=offset), samples)
            fields = {k: v for k, v in ecg.__dict__.items() if k != "samples"}
            refs.append(WindowRef(offset, samples.shape, fields))
            offset += aligned(samples.size * 4)
        return refs

    @property
    def buf(self) -> memoryview:
        return self._shm.buf

    def unlink(self) -> None:
        self._shm.close()
        self._shm.unlink()


class WindowBlocks:
    """The blocks of one :class:`~hfrisk.stream.scoring.batch.Preprocessor`: at most
    ``budget_bytes`` of them, each lent to one part at a time, none smaller than ``block_bytes``
    (rounded up to whole MiB). Thread-safe: blocks come back from the pool's result thread.

    Blocks are never replaced (the pool processes keep them mapped), so their sizes decide what the
    budget can hold. Sized to each part, the budget filled with blocks that fit only the smaller
    parts, and a larger one went pickled with most of the budget free (a part of 19 windows, with
    80 MiB in blocks of 1-8 MiB). ``block_bytes`` of a full part makes every block fit every part."""

    def __init__(self, budget_bytes: int, block_bytes: int = 0):
        self.budget_bytes = budget_bytes
        self.block_bytes = block_size_for(block_bytes) if block_bytes > 0 else 0
        self._lock = threading.Lock()
        self._free: dict[int, list[SharedBlock]] = {}
        self._blocks: list[SharedBlock] = []
        self._bytes = 0
        self._closed = False
        # Parts that found no block (over the budget, or /dev/shm full) and went pickled.
        self.pickled_parts = 0
        self._warned = False
        self._names = segment_names(BLOCK_PREFIX)
        swept = sweep_abandoned(BLOCK_PREFIX)
        if swept:
            log.info("removed shared-memory blocks that a killed worker left", blocks=len(swept))

    @property
    def created(self) -> int:
        return len(self._blocks)

    def take(self, nbytes: int) -> SharedBlock | None:
        """The smallest free block that holds ``nbytes``, a new one if the budget allows, else None."""
        size = max(block_size_for(nbytes), self.block_bytes)
        with self._lock:
            if self._closed:
                return None
            # Parts differ in size by a window or so: a free block a little larger serves, where
            # insisting on the exact size would create blocks until the budget is spent.
            fits = [s for s, free in self._free.items() if s >= size and free]
            if fits:
                return self._free[min(fits)].pop()
            if self._bytes + size <= self.budget_bytes:
                try:
                    block = SharedBlock(size, next(self._names))
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EMFILE):
                        raise
                    self._note_pickled(f"shared memory refused a {size >> 20}-MiB block: {exc}")
                    return None
                self._blocks.append(block)
                self._bytes += size
                return block
            self._note_pickled(f"the {self.budget_bytes >> 20}-MiB budget of shared memory is in use")
            return None

    def _note_pickled(self, why: str) -> None:
        self.pickled_parts += 1
        if not self._warned:  # once: it repeats on every part while the condition lasts
            self._warned = True
            log.warning("windows go to the preprocessing pool pickled", reason=why,
                        setting="HFRISK_STREAM__PREP_SHARED_MB")

    def give_back(self, block: SharedBlock) -> None:
        with self._lock:
            if not self._closed:
                self._free.setdefault(block.size, []).append(block)

    def close(self) -> None:
        """Unlink every block (call after the pool has stopped: it may still read them)."""
        with self._lock:
            self._closed = True
            blocks, self._blocks, self._free = self._blocks, [], {}
        for block in blocks:
            block.unlink()


# -- in a pool process ----------------------------------------------------------------------------

_attached: dict[str, SharedMemory] = {}


def attached(name: str) -> Any:
    """The buffer of block ``name``, mapped into this process once (blocks are reused, never
    replaced). Mapping registers the block with the resource tracker again; the pool's processes
    share the worker's tracker, so that is the same registration, removed when the worker unlinks."""
    shm = _attached.get(name)
    if shm is None:
        shm = _attached[name] = SharedMemory(name)
    return shm.buf


def windows_from(name: str, refs: Sequence[WindowRef]) -> list[ECG]:
    """The part's windows, their samples read in place from block ``name``."""
    buf = attached(name)
    return [ref.ecg(buf) for ref in refs]


def put_arrays(name: str, results: Sequence[Any], fields: Sequence[str], start: int, end: int) -> list[Any]:
    """``results`` with the arrays in ``fields`` of each dataclass among them written to block
    ``name`` between ``start`` and ``end`` and replaced by their :class:`ArrayRef`. What does not
    fit in that room stays in the result as it is (pickled back)."""
    buf = attached(name)
    out, offset = [], start
    for result in results:
        if dataclasses.is_dataclass(result):
            moved = {}
            for field in fields:
                array = getattr(result, field, None)
                if not isinstance(array, np.ndarray):
                    continue
                room = aligned(array.nbytes)
                if offset + room > end:
                    continue
                np.copyto(np.ndarray(array.shape, array.dtype, buffer=buf, offset=offset), array)
                moved[field] = ArrayRef(offset, array.shape, array.dtype.str)
                offset += room
            if moved:
                result = dataclasses.replace(result, **moved)
        out.append(result)
    return out


# -- back in the worker ---------------------------------------------------------------------------


def take_arrays(block: SharedBlock, results: list[Any]) -> None:
    """Copy the arrays a pool process left in ``block`` (:func:`put_arrays`) back into ``results``,
    in place, so that the block can be lent again."""
    for i, result in enumerate(results):
        if not dataclasses.is_dataclass(result):
            continue
        moved = {
            field.name: np.array(np.ndarray(ref.shape, np.dtype(ref.dtype), buffer=block.buf, offset=ref.offset))
            for field in dataclasses.fields(result)
            if isinstance(ref := getattr(result, field.name), ArrayRef)
        }
        if moved:
            results[i] = dataclasses.replace(result, **moved)
