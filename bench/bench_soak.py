"""A long run at load: N beds streaming in real time for an hour, memory, lag and latency over time.

    .venv/bin/python -m bench.bench_soak [--beds 500] [--duration-s 3600] [--stagger-s 5]
        [--batch-size 128] [--workers 2] [--prep-workers 1] [--sample-s 10] [--out docs/bench]

Starts Kafka, Redis and Triton on loopback and ``--workers`` ``hfrisk worker`` processes of one
consumer group as bench_stream does (``--prep-workers`` preprocessing processes each; micro-batches
of ``--batch-size``: two workers of one process each are what carried 500 beds on the 2-core
development machine, docs/bench/stream-tuning.md), then replays ``--beds`` beds of the
PTB-XL 500 Hz test records (looped) in real time for ``--duration-s``, their starts spread over
``--stagger-s``. Every ``--sample-s`` it records:

* resident memory: the worker with its preprocessing processes, the Kafka broker (the JVM), and
  Redis (its RSS and ``used_memory``: Redis keeps every window's result for ``redis.window_ttl_s``,
  so its data grows with the run by design);
* the workers' consumer lag (``hfrisk_consumer_lag``, summed over partitions);
* the windows written in the sample and their acquisition -> Redis latency from the worker's
  ``hfrisk_end_to_end_latency_seconds`` histogram (p95 as the upper bound of the bucket it falls in,
  and the share written within 1 s, exact at that bucket edge).

At the end it waits for the backlog, counts every window's idempotency record in Redis against the
windows the beds must make (none lost, none extra), fits the memory of the last three quarters of the
run (MB per hour) and writes ``<out>/soak-<beds>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from bench.bench_stream import RECORDS_DIR, Stack, WorkerGroup, windows_done
from bench.process_cpu import tree_rss_mb
from bench.record import command_line, load_average, machine, save, work_dir

E2E = "hfrisk_end_to_end_latency_seconds"


def histogram(metrics: dict[str, float], name: str) -> list[tuple[float, float]]:
    """``(upper bound, cumulative count)`` of a Prometheus histogram, by bound."""
    out = []
    for key, value in metrics.items():
        if key.startswith(f"{name}_bucket{{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if bound == "+Inf" else float(bound), value))
    return sorted(out)


def interval_latency(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict:
    """Windows written between two scrapes, their p95 bucket bound and the share within 1 s."""
    b = dict(before)
    deltas = [(bound, count - b.get(bound, 0.0)) for bound, count in after]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return {"windows": 0, "p95_le_s": None, "within_1s": None}
    p95 = next(bound for bound, count in deltas if count >= 0.95 * total)
    within = next((count for bound, count in deltas if bound == 1.0), None)
    return {"windows": int(total), "p95_le_s": None if p95 == float("inf") else p95,
            "within_1s": None if within is None else round(within / total, 4)}


class Sampler(threading.Thread):
    """Every ``every_s``: memory, lag and the latency of the windows written since the last sample."""

    def __init__(self, stack: Stack, worker, ports: list[int], every_s: float):
        super().__init__(daemon=True)
        self.stack, self.ports, self.every_s = stack, ports, every_s
        self.workers = worker.procs if isinstance(worker, WorkerGroup) else [worker]
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._redis = stack.redis.client()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        from hfrisk.testing import scrape_metrics

        def scrape() -> dict[str, float]:
            # The workers' counters summed, name by name (histogram buckets and lag included).
            total: dict[str, float] = {}
            for port in self.ports:
                for key, value in scrape_metrics(port).items():
                    total[key] = total.get(key, 0.0) + value
            return total

        started = time.monotonic()
        last = histogram(scrape(), E2E)
        while not self._halt.wait(self.every_s):
            try:
                metrics = scrape()
                now = histogram(metrics, E2E)
                info = self._redis.info("memory")
                self.samples.append({
                    "t_s": round(time.monotonic() - started, 1),
                    "worker_rss_mb": round(sum(tree_rss_mb(p.pid) for p in self.workers), 1),
                    "kafka_rss_mb": round(tree_rss_mb(self.stack.kafka.pid), 1),
                    "redis_rss_mb": round(tree_rss_mb(self.stack.redis.pid, children=False), 1),
                    "redis_used_mb": round(info["used_memory"] / 2**20, 1),
                    "lag": int(sum(v for k, v in metrics.items() if k.startswith("hfrisk_consumer_lag{"))),
                    **interval_latency(last, now),
                })
                last = now
                if len(self.samples) % max(1, round(60 / self.every_s)) == 0:
                    self._progress(self.samples[-1])
            except Exception as exc:  # a missed sample is noted, never fatal to an hour's run
                self.errors.append(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _progress(sample: dict) -> None:
        """About once a minute: where the run stands (an hour is long to wait blind)."""
        print(f"soak {sample['t_s']:.0f} s: lag {sample['lag']}, p95 <= {sample['p95_le_s']} s, "
              f"within 1 s {sample['within_1s']}, worker {sample['worker_rss_mb']:.0f} MB, "
              f"broker {sample['kafka_rss_mb']:.0f} MB, Redis {sample['redis_used_mb']:.0f} MB", flush=True)


def slope_mb_per_h(samples: list[dict], key: str) -> float | None:
    """Least-squares slope of ``key`` over the last three quarters of the samples (the first quarter
    holds start-up: caches, Faust's buffers and the JVM's heap filling)."""
    rest = samples[len(samples) // 4:]
    if len(rest) < 3:
        return None
    t = np.array([s["t_s"] for s in rest]) / 3600.0
    y = np.array([s[key] for s in rest])
    return round(float(np.polyfit(t, y, 1)[0]), 1)


def count_windows(client, prefix: str) -> int:
    """Idempotency records (one per window ever written) under ``prefix``: one SCAN pass."""
    from hfrisk.stream.sinks.keys import RedisKeys

    pattern = RedisKeys(prefix).window("*", "*")
    return sum(1 for _ in client.scan_iter(match=pattern, count=5000))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = np.array([x["t_s"] for x in s]) / 60.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for key, label in (("worker_rss_mb", "worker + preprocessing processes"), ("kafka_rss_mb", "Kafka broker (JVM)"),
                       ("redis_used_mb", "Redis used_memory (keeps every result)")):
        axes[0].plot(t, [x[key] for x in s], label=label)
    axes[0].set_ylabel("memory (MB)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].plot(t, [x["lag"] for x in s], color="tab:red")
    axes[1].set_ylabel("consumer lag (messages)")
    axes[2].step(t, [x["p95_le_s"] if x["p95_le_s"] is not None else np.nan for x in s], where="post",
                 label="p95 (histogram bucket bound)")
    axes[2].axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes[2].set_ylabel("latency (s)")
    axes[2].set_xlabel("minutes into the run")
    axes[2].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Soak: {result['beds']} beds in real time for {result['duration_s'] / 60:g} min "
                 f"({result['when']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(r: dict) -> str:
    s = r["samples"]
    within = [x["within_1s"] for x in s if x["within_1s"] is not None]
    p95s = [x["p95_le_s"] for x in s if x["p95_le_s"] is not None]
    quarter = max(1, len(s) // 4)

    def mean(key: str, part: list[dict]) -> float:
        return round(float(np.mean([x[key] for x in part])), 1)

    lines = [
        f"# Soak: {r['beds']} beds in real time for {r['duration_s'] / 60:g} minutes",
        "",
        "Generated by `bench/bench_soak.py`; do not edit by hand.",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_before']} "
        f"before, {r['machine']['load_after']} after.  ",
        f"Stream: {r['beds']} beds of PTB-XL 500 Hz recordings (looped) as 1-s chunks in real time, their starts "
        f"spread over {r['stagger_s']:g} s; {r['worker'].get('workers', 1)} worker process(es) sharing the partitions "
        f"(each {r['worker']['prep_workers']} preprocessing process(es), "
        f"batch {r['worker']['batch_size']} / {r['worker']['batch_timeout_s']:g} s, checkpoint every "
        f"{r['worker']['checkpoint_interval_s']:g} s), {r['partitions']} partitions; Kafka, Redis, Triton, the "
        f"replay and the worker on the same machine. A sample every {r['sample_s']:g} s.",
        "",
        "![memory, lag and latency over the run](soak-%d.png)" % r["beds"],
        "",
        "| | value |",
        "| --- | --- |",
        f"| windows expected / in Redis / counted by the worker | {r['windows_expected']} / {r['windows_in_redis']} / "
        f"{r['windows_done']:.0f} |",
        f"| lost (expected, not in Redis) / extra | {max(0, r['windows_expected'] - r['windows_in_redis'])} / "
        f"{max(0, r['windows_in_redis'] - r['windows_expected'])} |",
        f"| drained after the replay (s) | {r['drained_after_replay_s']} |",
        f"| replay: chunks sent, latest send behind schedule (s) | {r['replay']['chunks']}, {r['replay']['max_lag_s']} |",
        f"| worker + pool memory: first / last quarter mean (MB); slope over the last three quarters (MB/h) | "
        f"{mean('worker_rss_mb', s[:quarter])} / {mean('worker_rss_mb', s[-quarter:])}; {r['slope_mb_per_h']['worker_rss_mb']} |",
        f"| Kafka broker memory: first / last quarter mean (MB); slope (MB/h) | {mean('kafka_rss_mb', s[:quarter])} / "
        f"{mean('kafka_rss_mb', s[-quarter:])}; {r['slope_mb_per_h']['kafka_rss_mb']} |",
        f"| Redis used_memory: first / last quarter mean (MB); slope (MB/h) | {mean('redis_used_mb', s[:quarter])} / "
        f"{mean('redis_used_mb', s[-quarter:])}; {r['slope_mb_per_h']['redis_used_mb']} |",
        f"| consumer lag: max over the run / over its second half (messages) | {max(x['lag'] for x in s)} / "
        f"{max(x['lag'] for x in s[len(s) // 2:])} |",
        f"| samples with p95 <= 1 s (bucket bound) | {sum(p <= 1.0 for p in p95s)} of {len(p95s)} |",
        f"| share of windows written within 1 s: median sample / worst sample | "
        f"{np.median(within) if within else None} / {min(within) if within else None} |",
        f"| sampling errors | {len(r['sampling_errors'])} |",
        "",
        "Latency: the worker's acquisition-of-the-last-sample -> Redis histogram, per sample. Redis keeps every "
        "window's result and idempotency record for `redis.window_ttl_s`, so its memory grows with the run by "
        "design; the worker's and the broker's should not.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beds", type=int, default=500)
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--stagger-s", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="worker processes sharing the partitions")
    parser.add_argument("--prep-workers", type=int, default=1, help="preprocessing processes per worker")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    os.environ["HFRISK_STREAM__BATCH_SIZE"] = str(args.batch_size)  # the worker subprocess inherits it
    with work_dir("soak") as work:
        return run(args, argv, work)


def run(args, argv, work: Path) -> dict:
    from bench.bench_triton import export_model
    from hfrisk.core.config import get_settings
    from hfrisk.model.contract.card import default_card
    from hfrisk.stream.ingest.replay import replay

    card = default_card()
    onnx_path = export_model(work, card)
    load_before = load_average()
    stack = Stack(work, onnx_path, card, args.partitions, args.prep_workers)
    try:
        kafka = stack.topics(f"soak-{uuid.uuid4().hex[:6]}")
        prefix = f"soak-{uuid.uuid4().hex[:6]}"
        proc, port = stack.workers(args.workers, "worker-soak", kafka, prefix)
        ports = [port] if isinstance(port, int) else port
        expected = args.beds * (int((args.duration_s - card.window.window_s) // 5.0) + 1)
        sampler = Sampler(stack, proc, ports, args.sample_s)
        sampler.start()
        print(f"soak: {args.beds} beds for {args.duration_s:g} s, {expected} windows expected", flush=True)
        stats = replay([RECORDS_DIR], kafka.bootstrap_servers, kafka.ecg_topic, beds=args.beds, realtime=True,
                       duration_s=args.duration_s, loop=True, salt=f"soak-{uuid.uuid4().hex[:6]}",
                       progress=False, stagger_s=args.stagger_s)
        replay_end = time.monotonic()
        deadline = replay_end + 300
        while windows_done(port) < expected and time.monotonic() < deadline:
            if not proc.running():
                raise RuntimeError(f"the worker exited:\n{proc.tail_log(40)}")
            time.sleep(1.0)
        drained = round(time.monotonic() - replay_end, 1) if windows_done(port) >= expected else None
        sampler.stop()
        done = windows_done(port)
        in_redis = count_windows(stack.redis.client(), prefix)
    finally:
        stack.stop()
    stream = get_settings().stream
    samples = sampler.samples
    result = {
        "command": command_line("bench_soak", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "machine": machine(load_before),
        "beds": args.beds, "duration_s": args.duration_s, "stagger_s": args.stagger_s, "sample_s": args.sample_s,
        "partitions": args.partitions,
        "worker": {"workers": args.workers, "prep_workers": args.prep_workers, "batch_size": stream.batch_size,
                   "batch_timeout_s": stream.batch_timeout_s, "checkpoint_interval_s": stream.checkpoint_interval_s},
        "replay": {"chunks": stats.chunks, "max_lag_s": round(stats.max_lag_s, 3)},
        "windows_expected": expected, "windows_done": done, "windows_in_redis": in_redis,
        "drained_after_replay_s": drained,
        "slope_mb_per_h": {key: slope_mb_per_h(samples, key)
                           for key in ("worker_rss_mb", "kafka_rss_mb", "redis_rss_mb", "redis_used_mb")},
        "sampling_errors": sampler.errors[:20],
        "samples": samples,
    }
    stem = f"soak-{args.beds}"
    save(args.out, stem, result, markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result), flush=True)
    return result


if __name__ == "__main__":
    main()
