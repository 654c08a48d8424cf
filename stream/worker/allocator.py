"""glibc's allocator, told to keep what a checkpoint frees: the next checkpoint reuses it.

A checkpoint serialises every changed patient buffer (~190 kB each: ~50 MB for 250 patients) and
frees the bytes once Redis has them. With glibc's defaults that memory goes back to the kernel
after each checkpoint (buffers this size are mmapped, or trimmed off the top of the heap), and
the next checkpoint faults every page of it in again: most of the serialising CPU
(docs/bench/worker-chunk-notes.md). A fixed mmap threshold above one buffer and a trim threshold
above one checkpoint keep it in the heap: the worker's memory then stays at its checkpoint peak
instead of rising and falling with each one.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from hfrisk.core.logs import get_logger

__all__ = ["keep_freed_memory"]

log = get_logger(__name__)

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Above a patient's saved buffer with room to spare; glibc's cap for it is 32 MB on 64-bit.
_MMAP_THRESHOLD_BYTES = 4 * 2**20


def keep_freed_memory(keep_mb: int) -> bool:
    """Keep up to ``keep_mb`` of freed memory in this process's heap (0: glibc's defaults).

    Returns whether the setting took: not on a C library without ``mallopt`` (musl, macOS), where
    the worker runs as it would without it.
    """
    if keep_mb <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        log.info("allocator settings not available here; glibc's defaults stay", keep_mb=keep_mb)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
               and mallopt(_M_TRIM_THRESHOLD, keep_mb * 2**20) == 1)
    if not applied:
        log.warning("mallopt refused the allocator settings; glibc's defaults stay", keep_mb=keep_mb)
    return applied
