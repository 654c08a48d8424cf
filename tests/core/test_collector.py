"""The worker's garbage-collector setting (hfrisk/core/collector.py), each case in a process of its
own: start-up objects leave every generation the collector walks, garbage is not frozen with them,
and cycles made later are still freed."""

from __future__ import annotations

import json
import subprocess
import sys

from hfrisk.core.config import StreamSettings

CASE = """
import gc, json, sys, weakref
from hfrisk.core.collector import tune_collector

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

freeze, threshold = sys.argv[1] == "1", None if sys.argv[2] == "none" else int(sys.argv[2])
startup = [[i] for i in range(50_000)]  # long-lived start-up objects
garbage_before = cycle()  # unreachable already: must be freed, not frozen
before = {"thresholds": gc.get_threshold(), "walked": len(gc.get_objects())}
tune_collector(freeze=freeze, young_threshold=threshold)
later = cycle()
print(json.dumps({
    "before": before,
    "thresholds": gc.get_threshold(),
    "frozen": gc.get_freeze_count(),
    "walked": len(gc.get_objects()),
    "garbage_before_freed": garbage_before() is None,
    "later_cycle_collected": gc.collect() >= 2 and later() is None,
    "startup_alive": len(startup),
}))
"""


def _run(freeze: bool, threshold: int | None) -> dict:
    done = subprocess.run([sys.executable, "-c", CASE, "1" if freeze else "0", str(threshold).lower()],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout.splitlines()[-1])


def test_frozen_startup_objects_are_no_longer_walked():
    out = _run(True, 10_000)
    assert out["before"]["walked"] > 50_000
    assert out["frozen"] > 50_000
    # Only what was made after the freeze is left for the collector to walk.
    assert out["walked"] < 1_000
    assert out["thresholds"][0] == 10_000 and out["thresholds"][1:] == out["before"]["thresholds"][1:]
    assert out["garbage_before_freed"] and out["later_cycle_collected"]
    assert out["startup_alive"] == 50_000


def test_off_leaves_python_collector_as_it_comes():
    out = _run(False, None)
    assert out["frozen"] == 0
    assert out["thresholds"] == out["before"]["thresholds"]
    assert out["walked"] > 50_000
    assert out["later_cycle_collected"]


def test_the_worker_tunes_the_collector_by_default():
    settings = StreamSettings()
    assert settings.gc_freeze is True and settings.gc_young_threshold == 10_000
