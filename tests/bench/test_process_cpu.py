"""bench/process_cpu.py: CPU per process tree, measured on real processes."""

import subprocess
import sys
import time

import psutil

from bench.process_cpu import MACHINE, MAIN_THREAD, OTHER_THREADS, CpuMeter, thread_cpu_s, tree_cpu_s

# Waits for the go file, then burns `s` seconds of CPU, then sleeps.
BUSY = """import os, time
while not os.path.exists({go!r}): time.sleep(0.01)
end = time.process_time() + {s}
while time.process_time() < end: pass
open({go!r} + ".done", "w").close()
time.sleep(60)"""


def _kill_tree(proc: subprocess.Popen) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()


def test_a_busy_child_is_counted_in_its_parents_tree_and_an_idle_process_is_not(tmp_path):
    go = str(tmp_path / "go")
    child = BUSY.format(go=go, s=0.5)
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
                               "time.sleep(60)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while len(psutil.Process(parent.pid).children()) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter = CpuMeter({"busy": parent.pid, "parent alone": parent.pid, "idle": idle.pid, "absent": None},
                         own=("parent alone",)).start()
        open(go, "w").close()
        while not (tmp_path / "go.done").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        meter.stop()
        cpu = meter.cpu_s()
        assert set(cpu) == {"busy", "parent alone", "idle", MACHINE}
        assert cpu["busy"] >= 0.45 and cpu["idle"] < 0.1 and cpu["parent alone"] < 0.1
        # The machine's busy time and a process's CPU time are counted in ticks (10 ms here) and read
        # a moment apart: the machine's read 0.50 s against the child's 0.51 once in CI.
        assert cpu[MACHINE] >= cpu["busy"] - 0.03
        assert meter.cores(2.0)["busy"] == round(cpu["busy"] / 2.0, 3)
    finally:
        _kill_tree(parent)
        _kill_tree(idle)


def test_a_process_that_is_gone_counts_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_cpu_s(proc.pid) == 0.0


def test_a_busy_thread_is_counted_apart_from_the_main_thread():
    import os
    import threading

    def burn(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    burned, release = threading.Event(), threading.Event()

    def busy_then_wait() -> None:  # a thread that has ended is no longer listed: it waits to be read
        burn(0.4)
        burned.set()
        release.wait(10)

    before = thread_cpu_s(os.getpid())
    worker = threading.Thread(target=busy_then_wait)
    worker.start()
    burned.wait(10)
    middle = thread_cpu_s(os.getpid())
    burn(0.4)
    after = thread_cpu_s(os.getpid())
    release.set()
    worker.join()
    assert middle[OTHER_THREADS] - before[OTHER_THREADS] >= 0.3 > middle[MAIN_THREAD] - before[MAIN_THREAD]
    assert after[MAIN_THREAD] - middle[MAIN_THREAD] >= 0.3 > after[OTHER_THREADS] - middle[OTHER_THREADS]


def test_only_the_threads_named_as_hotspots_jit_compilers_count_as_its_jit():
    import ctypes
    import os
    import threading

    from bench.process_cpu import jit_compiler_cpu_s

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_name = 15  # prctl(PR_SET_NAME): the name /proc/<pid>/task/<tid>/comm shows, as the JVM sets it
    burned, release = threading.Barrier(3), threading.Event()

    def named_burner(name: bytes, seconds: float) -> None:
        libc.prctl(pr_set_name, ctypes.c_char_p(name), 0, 0, 0)
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        burned.wait(10)
        release.wait(10)  # a thread that has ended is no longer listed

    before = jit_compiler_cpu_s(os.getpid())
    threads = [threading.Thread(target=named_burner, args=(b"C2 CompilerThread0", 0.4)),
               threading.Thread(target=named_burner, args=(b"data-plane-kafka", 0.4))]
    for thread in threads:
        thread.start()
    burned.wait(10)
    jit = jit_compiler_cpu_s(os.getpid()) - before
    release.set()
    for thread in threads:
        thread.join()
    assert 0.3 <= jit < 0.6  # the compiler thread, not the other one
    assert jit_compiler_cpu_s(None) == 0.0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert jit_compiler_cpu_s(gone.pid) == 0.0
