import os
import secrets
import subprocess
import sys
import time

import pytest

from hfrisk.core.shared_memory import SHM_DIR, reserved, sweep_abandoned

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="POSIX shared memory in /dev/shm")

# A creator killed together with its resource tracker: nothing unlinks what it made.
KILLED_CREATOR = """
import os, signal, sys
from multiprocessing import resource_tracker
from hfrisk.core.shared_memory import reserved

shm = reserved(1 << 16, sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
os.kill(os.getpid(), signal.SIGKILL)
"""


def left_by_a_killed_process(name: str, age_s: float = 3600.0):
    subprocess.run([sys.executable, "-c", KILLED_CREATOR, name], timeout=60)
    path = SHM_DIR / name
    assert path.exists()
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


def test_the_segments_of_a_dead_creator_are_swept_and_those_held_or_too_young_are_not():
    prefix = f"hfrisk_test_{secrets.token_hex(4)}_"
    dead = left_by_a_killed_process(f"{prefix}dead")
    held = reserved(1 << 16, f"{prefix}held")
    try:
        past = time.time() - 3600
        os.utime(SHM_DIR / held.name, (past, past))
        # Made a moment ago and not locked yet: its creator may be between the two steps.
        young = SHM_DIR / f"{prefix}young"
        young.write_bytes(b"\0" * 64)

        assert sweep_abandoned(prefix) == [dead.name]
        assert not dead.exists() and (SHM_DIR / held.name).exists() and young.exists()
        assert sweep_abandoned(prefix, settle_s=0) == [young.name]
    finally:
        held.close()
        held.unlink()
    assert sweep_abandoned(prefix, settle_s=0) == []


def test_a_starting_worker_and_client_remove_what_killed_ones_left():
    from hfrisk.serving.shared_memory import REGION_PREFIX, RegionPool
    from stream.scoring.shared_windows import BLOCK_PREFIX, WindowBlocks

    token = secrets.token_hex(4)
    block = left_by_a_killed_process(f"{BLOCK_PREFIX}999999_{token}_0")
    blocks = WindowBlocks(8 << 20)
    live = blocks.take(1 << 20)
    try:
        assert not block.exists()
        assert live.name.startswith(f"{BLOCK_PREFIX}{os.getpid()}_")
        region = left_by_a_killed_process(f"{REGION_PREFIX}999999_{token}_0")
        past = time.time() - 3600
        os.utime(SHM_DIR / live.name, (past, past))
        pool = RegionPool()  # sweeps every hfrisk segment: the pool's blocks too
        assert not region.exists()
        assert (SHM_DIR / live.name).exists()  # a live worker's block stays, however old
        pool.close()
    finally:
        blocks.close()
    assert not (SHM_DIR / live.name).exists()
