"""Request tensors through system shared memory: regions of ``/dev/shm`` that the client writes and
Triton reads, so that a request carries the regions' names instead of the tensors' bytes.

A raw window is 240 kB of float32; through gRPC's protobuf the caller spent ~0.5 ms of CPU a window
serialising it, a quarter of the preprocessing that server mode moves off the worker
(docs/bench/serving.md). Through a region the caller copies the bytes once. This works only when
Triton runs on the same host and sees the same ``/dev/shm`` (a container shares the worker's IPC
namespace): ``HFRISK_TRITON__SHARED_MEMORY=system``, docs/serving.md "Shared memory".

:class:`RegionPool` holds one client's regions. A request takes a free region at least as large
as its tensors (or a new one), writes them, and gives the region back when its answer has come:
Triton may read a region until then. The pool knows which regions Triton has registered; when
Triton restarts it forgets them all, and the client registers them again. Region names carry
:data:`REGION_PREFIX`, so a client can unregister regions whose file is gone: a killed worker's,
whose file Python's resource tracker unlinked but which Triton still maps.

>>> import numpy as np
>>> pool = RegionPool()
>>> region = pool.take(16)
>>> region.write([np.arange(4, dtype=np.float32)])
[(0, 16)]
>>> region.read(0, 4, np.float32)
array([0., 1., 2., 3.], dtype=float32)
>>> pool.give_back(region); pool.close()
[]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.core.shared_memory import SHM_DIR, aligned, reserved, segment_names, sweep_abandoned

__all__ = ["Region", "RegionPool", "REGION_PREFIX", "MIN_SHARED_BYTES", "is_stale", "needed_bytes"]

REGION_PREFIX = "hfrisk_"
# Smaller tensors (lead presence, rates: a few bytes a window) stay in the request: a region saves
# nothing on them.
MIN_SHARED_BYTES = 64 * 1024
_MIN_REGION_BYTES = 1 << 20
log = get_logger(__name__)


def _region_bytes(nbytes: int) -> int:
    """A new region's size: the next power of two, so that a worker whose parts vary in size
    settles on a few regions instead of growing one region per new size."""
    return max(_MIN_REGION_BYTES, 1 << (max(nbytes, 1) - 1).bit_length())


class Region:
    """One ``/dev/shm`` file, mapped here, and whether Triton has it registered."""

    def __init__(self, name: str, size: int):
        self.shm = reserved(size, name)  # pages allocated: a full /dev/shm is an OSError, not a SIGBUS
        self.name = name
        self.size = size
        self.registered = False

    @property
    def key(self) -> str:
        """What Triton opens (``shm_open``'s name)."""
        return "/" + self.name

    def write(self, arrays: Sequence[np.ndarray]) -> list[tuple[int, int]]:
        """Copy ``arrays`` one after another, each on a cache line; their ``(offset, nbytes)``."""
        placed, offset = [], 0
        for array in arrays:
            nbytes = array.nbytes
            if offset + nbytes > self.size:
                raise ValueError(f"{sum(a.nbytes for a in arrays)} bytes do not fit region {self.name} of {self.size}")
            np.copyto(np.ndarray(array.shape, array.dtype, buffer=self.shm.buf, offset=offset), array, casting="no")
            placed.append((offset, nbytes))
            offset = aligned(offset + nbytes)
        return placed

    def read(self, offset: int, count: int, dtype) -> np.ndarray:
        """A copy of ``count`` items of ``dtype`` at ``offset`` (for tests and checks)."""
        return np.frombuffer(self.shm.buf, dtype=dtype, count=count, offset=offset).copy()

    def close(self) -> None:
        self.shm.close()
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


def needed_bytes(arrays: Sequence[np.ndarray]) -> int:
    """The region size ``arrays`` take, written by :meth:`Region.write`."""
    total = 0
    for array in arrays:
        total = aligned(total) + array.nbytes
    return total


class RegionPool:
    """The regions of one client: each serves one request at a time."""

    def __init__(self, prefix: str = REGION_PREFIX):
        self._names = segment_names(prefix)
        # The files of clients killed with their resource tracker (their registrations on Triton
        # are the client's to unregister: is_stale).
        swept = sweep_abandoned(prefix)
        if swept:
            log.info("removed shared-memory regions that a killed client left", regions=len(swept))
        self._free: list[Region] = []
        self._busy: set[Region] = set()
        self._retired: list[str] = []  # registered names of regions closed here, to unregister
        self.swept = False

    @property
    def regions(self) -> list[Region]:
        return [*self._free, *self._busy]

    def take(self, nbytes: int) -> Region:
        """A free region of at least ``nbytes`` (the smallest such), or a new one; a free region
        too small for what is asked now is retired, so the pool does not keep growing."""
        fitting = [r for r in self._free if r.size >= nbytes]
        if fitting:
            region = min(fitting, key=lambda r: r.size)
            self._free.remove(region)
        else:
            if self._free:
                self._retire(min(self._free, key=lambda r: r.size))
            region = Region(next(self._names), _region_bytes(nbytes))
        self._busy.add(region)
        return region

    def give_back(self, region: Region) -> None:
        self._busy.discard(region)
        self._free.append(region)

    def _retire(self, region: Region) -> None:
        self._free.remove(region)
        if region.registered:
            self._retired.append(region.name)
        region.close()

    def retired(self) -> list[str]:
        """Names of retired regions Triton still has registered (the caller unregisters them)."""
        names, self._retired = self._retired, []
        return names

    def forget_registrations(self) -> None:
        """Triton lost them all (it restarted): every region must be registered again."""
        for region in self.regions:
            region.registered = False
        self._retired.clear()

    def close(self) -> list[str]:
        """Unmap and unlink every region; the names Triton had registered, to unregister."""
        names = [r.name for r in self.regions if r.registered] + self.retired()
        for region in self.regions:
            region.close()
        self._free.clear()
        self._busy.clear()
        return names


def is_stale(name: str, key: str, prefix: str = REGION_PREFIX) -> bool:
    """A region registered on Triton by some hfrisk client of this host whose file is gone: its
    client closed without unregistering, or was killed and the resource tracker unlinked it.

    Checked on the file itself: attaching to it through ``SharedMemory`` would enrol it with
    this process's resource tracker, which unlinks it when this process ends.
    """
    return name.startswith(prefix) and SHM_DIR.is_dir() and not (SHM_DIR / key.lstrip("/")).exists()
