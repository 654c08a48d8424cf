"""The allocator setting of workers and screening pools: memory a checkpoint frees is reused by the
next one instead of being faulted in again (counted in minor page faults, in a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hfrisk.core.allocator import keep_freed_memory

# Three "checkpoints" of 200 saved buffers of ~190 kB, made and freed; page faults of each.
CHECKPOINTS = """
import json, resource, sys
from hfrisk.core.allocator import keep_freed_memory
applied = keep_freed_memory(int(sys.argv[1]))
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    values = [b"%d" % i + b"x" * 190_000 for i in range(200)]
    del values
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _checkpoints(keep_mb: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHECKPOINTS, str(keep_mb)], capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_checkpoint_reuses_the_memory_the_last_one_freed():
    kept, default = _checkpoints(256), _checkpoints(0)
    assert kept["applied"] and not default["applied"]
    pages = 200 * 190_000 // 4096  # each checkpoint's bytes, in 4-kB pages
    # glibc's defaults hand the memory back: every checkpoint faults it all in again.
    assert all(f > 0.8 * pages for f in default["faults"])
    # Kept: the first checkpoint faults it in, the next ones reuse it.
    assert kept["faults"][0] > 0.8 * pages and max(kept["faults"][1:]) < 0.05 * pages


# Three rounds of a batch's arrays of 4-32 MB (the front end's beats of 32 windows are ~11 MB).
BATCH_ARRAYS = """
import json, resource, sys
import numpy as np
from hfrisk.core.allocator import keep_freed_memory
applied = keep_freed_memory(int(sys.argv[1]))
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(n, dtype=np.uint8) for n in (6_000_000, 11_000_000, 20_000_000)]
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_batch_reuses_arrays_of_up_to_32_mb():
    """Arrays above glibc's default mmap threshold, up to its cap, come back from the heap."""
    done = subprocess.run([sys.executable, "-c", BATCH_ARRAYS, "256"], capture_output=True, text=True,
                          check=True, timeout=60)
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["applied"]
    # numpy asks for huge pages for arrays this size, so a round faults in far fewer than its 4-kB
    # pages (~1,400 here for 37 MB); above the threshold, every round faults that in again.
    assert got["faults"][0] > 100 and max(got["faults"][1:]) < 0.05 * got["faults"][0]


def test_zero_leaves_the_defaults():
    assert keep_freed_memory(0) is False
