"""glibc's allocator, told to keep what a process frees for its next use instead of handing it
back to the kernel.

A stream worker's checkpoint serialises every changed patient buffer (~190 kB each: ~50 MB for
250 patients) and frees the bytes once Redis has them; a screening pool process reads and
preprocesses eight recordings (arrays of 120-240 kB each) and frees them before the next eight.
With glibc's defaults that memory goes back to the kernel each time (blocks this size are
mmapped, or trimmed off the top of the heap), and the next use faults every page of it in again:
most of a checkpoint's serialising CPU (docs/bench/worker-chunk-notes.md), and ~0.7 ms of a
screening pool's ~3.8 ms a recording (docs/bench/screening-allocator.md). A fixed mmap threshold
above one such block and a trim threshold above one round's total keep it in the heap: memory then
stays at its peak instead of rising and falling each round.
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
# glibc's cap (32 MB on 64-bit), above a patient's saved buffer, a recording's arrays and the front end's
# arrays of a batch of 32 windows (its beats: 32 x 12 leads x ~12 beats x 600 samples, ~11 MB). At 4 MB those
# went to mmap whenever the heap's free top was too small for them, and were faulted in again each batch:
# whether they did hung on what the rest of the batch had left on the heap (docs/bench/median-2026-12-08/).
_MMAP_THRESHOLD_BYTES = 32 * 2**20


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
