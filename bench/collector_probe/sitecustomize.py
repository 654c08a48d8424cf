"""The garbage collector's CPU in every stream worker a benchmark starts (not a module to import).

    PYTHONPATH=bench/collector_probe BENCH_GC_PROBE_DIR=/tmp/gc .venv/bin/python -m bench.bench_stream ...

Python imports ``sitecustomize`` from its path at start-up, so every ``hfrisk.stream.worker.command``
process started with this folder on ``PYTHONPATH`` times its collections (``gc.callbacks``, thread
CPU of each) and appends, every 2 s, a line to ``$BENCH_GC_PROBE_DIR/gc-<pid>.txt``: wall time, the
collections so far per generation, their CPU seconds per generation, and the process's CPU seconds.
The difference between two lines is the collector's share of the worker's CPU between them
(docs/bench/stream-tuning.md, "2026-12-06 night"). Other processes are left alone, unless
``BENCH_GC_PROBE_MATCH`` names another part of their command line (``multiprocessing-fork``: the
workers' spawned preprocessing processes).
"""

import gc
import os
import threading
import time

with open("/proc/self/cmdline", "rb") as _f:
    _COMMAND = _f.read().replace(b"\0", b" ").decode(errors="replace")

if os.environ.get("BENCH_GC_PROBE_DIR") and os.environ.get("BENCH_GC_PROBE_MATCH", "hfrisk.stream.worker.command") in _COMMAND:
    _counts, _cpu_s, _started = [0, 0, 0], [0.0, 0.0, 0.0], {}

    def _timed(phase, info):
        generation = info["generation"]
        if phase == "start":
            _started[generation] = time.thread_time()
        else:
            _counts[generation] += 1
            _cpu_s[generation] += time.thread_time() - _started.pop(generation, time.thread_time())

    def _write():
        path = os.path.join(os.environ["BENCH_GC_PROBE_DIR"], f"gc-{os.getpid()}.txt")
        while True:
            time.sleep(2.0)
            with open(path, "a") as out:
                out.write(f"{time.time():.1f} {_counts} {[round(s, 4) for s in _cpu_s]} {time.process_time():.3f}\n")

    gc.callbacks.append(_timed)
    threading.Thread(target=_write, name="gc-probe", daemon=True).start()
