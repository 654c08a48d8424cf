"""POSIX shared memory this process creates, with its pages reserved up front, and the cache-line
alignment of arrays laid out in it.

Two users: the preprocessing pool's blocks (``hfrisk.stream.scoring.shared_windows``) and the Triton
client's request regions (``hfrisk.serving.shared_memory``). ``SharedMemory(create=True)`` only sizes
the file; on a full ``/dev/shm`` the first write into a page that cannot be allocated is a SIGBUS
that kills the process. :func:`reserved` allocates every page when the segment is made, so a full
``/dev/shm`` is an ``OSError`` there instead.
"""

from __future__ import annotations

import os
from multiprocessing.shared_memory import SharedMemory

__all__ = ["ALIGN", "aligned", "reserved"]

ALIGN = 64  # each array starts on a cache line


def aligned(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def reserved(size: int, name: str | None = None) -> SharedMemory:
    """A new segment of ``size`` bytes (named ``name``, or a name of Python's), its pages allocated;
    ``OSError`` (and nothing left behind) if ``/dev/shm`` has no room."""
    shm = SharedMemory(name=name, create=True, size=size)
    fd = getattr(shm, "_fd", -1)
    try:
        if fd >= 0 and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
    except OSError:
        shm.close()
        shm.unlink()
        raise
    return shm
