"""POSIX shared memory this process creates, with its pages reserved up front, the cache-line
alignment of arrays laid out in it, and the removal of segments whose creator died.

Two users: the preprocessing pool's blocks (``hfrisk.stream.scoring.shared_windows``) and the Triton
client's request regions (``hfrisk.serving.shared_memory``). ``SharedMemory(create=True)`` only sizes
the file; on a full ``/dev/shm`` the first write into a page that cannot be allocated is a SIGBUS
that kills the process. :func:`reserved` allocates every page when the segment is made, so a full
``/dev/shm`` is an ``OSError`` there instead.

A segment outlives a creator that is killed together with Python's resource tracker, which would
have unlinked it: a container killed whole (the out-of-memory killer, ``docker kill``), whose
``/dev/shm`` survives the restart (a Kubernetes pod's memory-backed volume does). Each restart then
left its blocks behind (3 MiB and more each) until ``/dev/shm`` was full. So the creator holds a
shared ``flock`` on each segment it makes for as long as it has it open; the kernel drops the lock
when the process dies, however it dies. :func:`sweep_abandoned`, run when a worker or client starts,
unlinks the segments of its kind that nobody holds. It sees creators in other containers that share
the ``/dev/shm`` too, where their process ids would not be visible.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, and no /dev/shm to sweep
    fcntl = None  # type: ignore[assignment]

__all__ = ["ALIGN", "SHM_DIR", "aligned", "reserved", "segment_names", "sweep_abandoned"]

ALIGN = 64  # each array starts on a cache line
SHM_DIR = Path("/dev/shm")
# A segment is created and then locked: one younger than this may not be locked yet.
_SETTLE_S = 60.0


def aligned(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def segment_names(prefix: str) -> Iterator[str]:
    """``prefix``, this process's id, a random token and a number: names unique among every process
    of the host, across restarts, and recognisable to :func:`sweep_abandoned`."""
    stem = f"{prefix}{os.getpid()}_{secrets.token_hex(4)}_"
    return (f"{stem}{n}" for n in itertools.count())


def reserved(size: int, name: str | None = None) -> SharedMemory:
    """A new segment of ``size`` bytes (named ``name``, or a name of Python's), its pages allocated
    and a shared lock held on it while this process keeps it open; ``OSError`` (and nothing left
    behind) if ``/dev/shm`` has no room."""
    shm = SharedMemory(name=name, create=True, size=size)
    fd = getattr(shm, "_fd", -1)
    try:
        if fd >= 0 and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        if fd >= 0 and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        shm.close()
        shm.unlink()
        raise
    return shm


def sweep_abandoned(prefix: str, settle_s: float = _SETTLE_S) -> list[str]:
    """Unlink the segments named ``prefix*`` that no process holds (their creator died), older than
    ``settle_s``; their names. Nothing where there is no ``/dev/shm`` or no ``flock``."""
    if fcntl is None or not SHM_DIR.is_dir():
        return []
    removed = []
    now = time.time()
    for path in SHM_DIR.glob(f"{prefix}*"):
        try:
            if now - path.stat().st_mtime < settle_s:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its creator holds it
                continue
            path.unlink(missing_ok=True)
            removed.append(path.name)
        finally:
            os.close(fd)
    return removed
