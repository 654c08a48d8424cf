"""CPU seconds (and resident memory) per named process and everything it spawned, over a stretch of
a benchmark, so that a run can say where the machine's cores went: the Kafka broker, Redis, Triton, the worker and its
preprocessing pool, the replay in the benchmark's own process.

Children are counted while they run (psutil reads them at each snapshot); CPU of a child that exits
between snapshots is lost, which is why a meter is read around a steady stretch, not across start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["MACHINE", "MAIN_THREAD", "OTHER_THREADS", "CpuMeter", "jit_compiler_cpu_s", "machine_busy_s", "thread_cpu_s",
           "tree_cpu_s", "tree_rss_mb"]


def _tree_sum(pid: int | None, children: bool, measure) -> float:
    """``measure(process)`` summed over ``pid`` and (unless ``children`` is False) its live
    descendants; processes that are gone count 0."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)] if children else [root]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in members:
        try:
            total += measure(proc)
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_s(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of ``pid`` and (unless ``children`` is False) its live descendants;
    0 for a process that is gone."""
    return _tree_sum(pid, children, lambda proc: proc.cpu_times().user + proc.cpu_times().system)


def tree_rss_mb(pid: int | None, children: bool = True) -> float:
    """Resident memory of ``pid`` and (unless ``children`` is False) its live descendants, MB."""
    return _tree_sum(pid, children, lambda proc: proc.memory_info().rss) / 2**20


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (every process, every core), since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


MACHINE = "machine (all processes)"
MAIN_THREAD = "main thread"
OTHER_THREADS = "other threads"


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of one process's main thread (a worker's event loop) and of its other threads
    together (Faust's consumer thread, the thread the Redis writes run in, ...): where a process
    that cannot use more than about one core for Python, whatever its threads, spends it."""
    main = other = 0.0
    for thread in psutil.Process(pid).threads():
        if thread.id == pid:
            main += thread.user_time + thread.system_time
        else:
            other += thread.user_time + thread.system_time
    return {MAIN_THREAD: main, OTHER_THREADS: other}


# HotSpot names its JIT compiler threads "C1 CompilerThread0", "C2 CompilerThread0", ...; Linux keeps
# the first 15 characters of a thread's name.
_JIT_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


def jit_compiler_cpu_s(pid: int | None) -> float:
    """CPU seconds of a JVM's JIT compiler threads (the Kafka broker's): what it spends compiling its
    hot code in its first minutes under load, on top of serving. 0 for a process that is gone or
    where ``/proc`` has no thread names. A compiler thread that exits takes its CPU with it, so
    this is a floor; with ``-XX:CICompilerCount=2`` (the stack's broker) there is one of each kind,
    and HotSpot keeps the first of each kind alive."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        threads = psutil.Process(pid).threads()
    except psutil.NoSuchProcess:
        return 0.0
    for thread in threads:
        try:
            name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith(_JIT_THREAD_PREFIXES):
            total += thread.user_time + thread.system_time
    return total


@dataclass
class CpuMeter:
    """``start()`` and ``stop()`` around a stretch; ``cpu_s()`` gives each named process's CPU seconds
    over it and ``cores(wall_s)`` how many cores it kept busy, with the whole machine's as ``MACHINE``.
    ``pids`` maps a name to a process id (None: skipped); names in ``own`` count that process alone,
    not what it spawned (a benchmark process that started the servers it measures)."""

    pids: dict[str, int | None]
    own: tuple[str, ...] = ()
    _start: dict[str, float] = field(default_factory=dict)
    _stop: dict[str, float] = field(default_factory=dict)

    def _snapshot(self) -> dict[str, float]:
        snap = {name: tree_cpu_s(pid, children=name not in self.own) for name, pid in self.pids.items()
                if pid is not None}
        return snap | {MACHINE: machine_busy_s()}

    def start(self) -> "CpuMeter":
        self._start = self._snapshot()
        return self

    def stop(self) -> "CpuMeter":
        self._stop = self._snapshot()
        return self

    def cpu_s(self) -> dict[str, float]:
        return {name: round(max(0.0, self._stop.get(name, 0.0) - start), 3) for name, start in self._start.items()}

    def cores(self, wall_s: float) -> dict[str, float]:
        """Each process's CPU seconds over ``wall_s`` of wall time: how many cores it kept busy."""
        return {name: round(cpu / wall_s, 3) for name, cpu in self.cpu_s().items()} if wall_s > 0 else {}
