"""What a checkpoint's buffer saves cost Redis, and how long they hold up everyone else's writes.

    .venv/bin/python -m bench.bench_checkpoint_store [--patients 250 500] [--state-kb 160]
        [--checkpoints 12] [--rounds 3] [--out docs/bench]

A real ``redis-server`` per persistence mode (``aof``: the stack's default, fsync every second;
``none`` for comparison) takes ``--checkpoints`` saves of ``--patients`` buffers of ``--state-kb``
each (what one worker saves at a checkpoint at real time: every patient's buffer has changed),
written two ways on the same server, alternating, ``--rounds`` times:

* ``BufferStore.save_many`` (the worker's): one round trip, each key on its own;
* one ``MULTI``/``EXEC`` around them all (the worker's before 2026-12-05 late night): the baseline.

Meanwhile a second client writes and reads one small key in a loop, as the sink's window writes
do: its longest wait is how long a checkpoint holds up the scores of every other patient. Redis's
CPU comes from its own ``INFO cpu`` (main thread, background threads and forked children). Written
to ``<out>/checkpoint-store.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from bench.record import command_line, load_average, machine, save, work_dir
from hfrisk.stack.redis_server import RedisServer
from hfrisk.stream.worker.buffer_store import BufferStore

VARIANTS = ("BufferStore.save_many", "one MULTI/EXEC (before)")


def multi_exec_save(store: BufferStore, states: dict[str, bytes]) -> None:
    """The baseline: the same SETs inside one transaction."""
    with store.client.pipeline(transaction=True) as pipe:
        for pid, state in states.items():
            pipe.set(store.key(pid), memoryview(state), ex=store.ttl_s)
        pipe.execute()


def redis_cpu_s(client) -> float:
    cpu = client.info("cpu")
    return sum(cpu[k] for k in ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"))


class SmallWrites:
    """Another client's small SET + GET, back to back, in a thread: the longest round trip it saw."""

    def __init__(self, server: RedisServer):
        self.client = server.client()
        self.stop = threading.Event()
        self.waits: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            self.client.set("bench:small", b"x" * 200)
            self.client.get("bench:small")
            self.waits.append(time.perf_counter() - t0)
            time.sleep(0.001)

    def __enter__(self) -> "SmallWrites":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def one_variant(server: RedisServer, variant: str, patients: int, state: bytes, checkpoints: int) -> dict:
    client = server.client()
    store = BufferStore(client, "bench", ttl_s=600)
    states = {f"bed-{i}": state for i in range(patients)}
    save = store.save_many if variant == VARIANTS[0] else (lambda s: multi_exec_save(store, s))
    walls = []
    cpu0 = redis_cpu_s(client)
    with SmallWrites(server) as small:
        for _ in range(checkpoints):
            t0 = time.perf_counter()
            save(states)
            walls.append(time.perf_counter() - t0)
            time.sleep(0.05)
    cpu_s = redis_cpu_s(client) - cpu0
    mb = checkpoints * patients * len(state) / 1e6
    waits = sorted(small.waits)
    return {
        "variant": variant,
        "mb_saved": round(mb, 1),
        "redis_cpu_s": round(cpu_s, 3),
        "redis_cpu_ns_per_byte": round(cpu_s / (mb * 1e6) * 1e9, 2),
        "save_ms_median": round(statistics.median(walls) * 1e3, 1),
        "small_write_ms_p99": round(waits[int(0.99 * (len(waits) - 1))] * 1e3, 1),
        "small_write_ms_max": round(waits[-1] * 1e3, 1),
    }


def run(args) -> list[dict]:
    state = np.random.default_rng(0).integers(0, 256, args.state_kb * 1000, dtype=np.uint8).tobytes()
    rows = []
    for persistence in args.persistence:
        with work_dir(f"ckstore-{persistence}") as work:
            server = RedisServer(work / "redis", persistence=persistence).start()
            try:
                for patients in args.patients:
                    for rnd in range(args.rounds):
                        for variant in VARIANTS:
                            row = one_variant(server, variant, patients, state, args.checkpoints)
                            row |= {"persistence": persistence, "patients": patients, "round": rnd}
                            print(row, flush=True)
                            rows.append(row)
            finally:
                server.stop()
    return rows


def medians(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["persistence"], r["patients"], r["variant"]) for r in rows},
                  key=lambda k: (k[0] != "aof", k[1], VARIANTS.index(k[2])))
    for persistence, patients, variant in keys:
        runs = [r for r in rows if (r["persistence"], r["patients"], r["variant"]) == (persistence, patients, variant)]
        med = {f: statistics.median(r[f] for r in runs) for f in
               ("redis_cpu_ns_per_byte", "save_ms_median", "small_write_ms_p99", "small_write_ms_max")}
        out.append({"persistence": persistence, "patients": patients, "variant": variant, "rounds": len(runs),
                    "per_round_ns_per_byte": [r["redis_cpu_ns_per_byte"] for r in runs]} | med)
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Checkpoint saves in Redis: one transaction against key by key",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs ({result['machine']['processor']}), "
        f"load average {result['machine']['load_before']} before, {result['machine']['load_after']} after.",
        "",
        f"Each checkpoint saves {result['state_kb']} kB for each patient (one worker's share at real time: every "
        f"buffer changed), {result['checkpoints']} checkpoints per round, the variants alternating on one server per "
        "persistence mode. A second client writes and reads one small key throughout, as window writes do.",
        "",
        "| Redis persistence | patients per checkpoint | save | Redis CPU ns / byte saved | save (ms, median) "
        "| small write p99 (ms) | small write max (ms) | rounds (ns / byte) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in result["medians"]:
        lines.append(
            f"| {m['persistence']} | {m['patients']} | {m['variant']} | {m['redis_cpu_ns_per_byte']:.2f} | "
            f"{m['save_ms_median']:.1f} | {m['small_write_ms_p99']:.1f} | {m['small_write_ms_max']:.1f} | "
            f"{', '.join(f'{v:.2f}' for v in m['per_round_ns_per_byte'])} |"
        )
    lines += [
        "",
        "Medians over the rounds. Why: with the append-only file on, Redis 7 writes what one `EXEC` changed into "
        "a buffer that grows by at most 1 MB at a time, so a transaction of tens of MB costs it several "
        "nanoseconds of CPU per byte and keeps every client waiting while it runs; saved key by key, the buffer "
        "holds one command at a time. Keys stand alone, so a save cut short leaves each patient's buffer old or "
        "new, and a restart resumes from either (docs/stream-worker.md, \"Saved buffers\"; "
        "`test_a_checkpoint_cut_short_after_some_patients_still_gives_every_window_once`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[250, 500])
    parser.add_argument("--state-kb", type=int, default=160)
    parser.add_argument("--checkpoints", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--persistence", nargs="+", default=["aof", "none"], choices=["aof", "none"])
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    load_before = load_average()
    rows = run(args)
    result = {"command": command_line("bench_checkpoint_store", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "machine": machine(load_before), "state_kb": args.state_kb, "checkpoints": args.checkpoints,
              "rows": rows, "medians": medians(rows)}
    save(args.out, "checkpoint-store", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
