"""What publishing a batch's records to Kafka costs the worker: ``FaustPublisher`` (the app's
producer) against Faust's ``Topic.send`` (the worker's way before 2026-12-06 evening).

    .venv/bin/python -m bench.bench_publish [--records 4000] [--per-batch 48] [--rounds 5]
        [--out docs/bench]

A real Kafka broker (KRaft, loopback) and a Faust app with the worker's settings
(:func:`hfrisk.stream.worker.app.create_app`, an idle agent on the chunk topic as in the worker).
In the app, both publishers send the same score-sized records (keyed by 200 patients, on the
scores topic's partitions) in groups of ``--per-batch`` (what one backlog batch of 256 chunks
publishes: ~47 windows), each group awaited as the worker awaits it, alternating, ``--rounds``
times. Per record: the process's CPU (all its threads, so Faust's consumer and aiokafka's sender
too), the broker's CPU (less its idle rate, measured first), the wall time, and the produce requests and record batches aiokafka's sender sent (counted
around ``Sender._send_produce_req``). Written to ``<out>/publish.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save, work_dir

VARIANTS = ("FaustPublisher (app's producer)", "Topic.send (before)")

# A score record as the worker writes it (stream/messages/scores.py), ~0.6 kB of JSON.
_VALUE = json.dumps({
    "patient_id": "p" * 43, "window_id": "w" * 40, "window_start_us": 1764979200000000,
    "window_end_us": 1764979210000000, "scored": True, "fit_to_score": True, "log_risk": -0.4321,
    "hazard_ratio": 0.6491, "risk_percentile": 41.5, "absolute_risk": 0.0812,
    "absolute_risk_horizon_days": 1825, "quality_score": 0.97, "quality_reasons": [],
    "n_beats_detected": 12, "n_beats_used": 11, "heart_rate_bpm": 71.8,
    "lead_attention": {lead: 0.0833 for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3",
                                                  "V4", "V5", "V6")},
    "model_version": "hfrisk-0.1.0+abcdef12", "scored_at_us": 1764979210123456, "device_id": "bed-monitor-17",
    "chunk_timestamp_ms": 1764979210000, "redelivered": False,
}).encode()


class TopicSendPublisher:
    """The baseline: the worker's publisher before, through Faust's ``Topic.send(force=True)``."""

    def __init__(self, app, kafka) -> None:
        from hfrisk.stream.worker.app import raw_topic

        self._topics = {"scores": raw_topic(app, kafka.scores_topic, kafka.partitions)}

    async def publish(self, messages) -> None:
        deliveries = [await self._topics[m.role].send(key=m.key, value=m.value, headers=m.headers or None, force=True)
                      for m in messages]
        if deliveries:
            await asyncio.gather(*deliveries)


def run_app(result_path: str, records: int, per_batch: int, rounds: int) -> None:
    """The measuring Faust app (run in a subprocess by :func:`main`); writes its figures to ``result_path``."""
    import faust
    import psutil
    from aiokafka.producer.sender import Sender

    from hfrisk.core.config import get_settings
    from hfrisk.stream.worker.agents import FaustPublisher
    from hfrisk.stream.worker.app import chunk_topic, create_app
    from hfrisk.stream.worker.records import OutboundMessage

    settings = get_settings()
    broker = psutil.Process(int(os.environ["BENCH_BROKER_PID"]))
    app = create_app(settings, app_id=f"bench-publish-{os.getpid()}", web_port=_free_port())
    publishers = {VARIANTS[0]: FaustPublisher(app, settings.kafka), VARIANTS[1]: TopicSendPublisher(app, settings.kafka)}
    sent = {"requests": 0, "batches": 0}
    send_produce_req = Sender._send_produce_req

    async def counted(self, node_id, batches):
        sent["requests"] += 1
        sent["batches"] += len(batches)
        return await send_produce_req(self, node_id, batches)

    Sender._send_produce_req = counted

    @app.agent(chunk_topic(app, settings.kafka), name="bench-publish-idle")
    async def idle(stream):  # the worker's consumer runs beside its publisher
        async for _ in stream:
            pass

    @app.task
    async def measure():
        messages = [OutboundMessage(role="scores", key=f"patient-{i % 200:03d}".encode(), value=_VALUE)
                    for i in range(records)]
        groups = [messages[i : i + per_batch] for i in range(0, records, per_batch)]
        await publishers[VARIANTS[0]].publish(groups[0])  # connect and fetch the topic's metadata first
        idle0, idle_at = _cpu_s(broker), time.perf_counter()
        await asyncio.sleep(5.0)
        idle_cores = (_cpu_s(broker) - idle0) / (time.perf_counter() - idle_at)  # the broker's own background work
        runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for round_ in range(rounds):
            for name in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                sent["requests"] = sent["batches"] = 0
                broker0 = _cpu_s(broker)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for group in groups:
                    await publishers[name].publish(group)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                await asyncio.sleep(0.5)  # the broker's last requests, then its CPU (the idle half second is subtracted)
                broker_cpu = _cpu_s(broker) - broker0 - idle_cores * (time.perf_counter() - wall0)
                runs[name].append({"cpu_us_per_record": round(cpu / records * 1e6, 2),
                                   "broker_cpu_us_per_record": round(broker_cpu / records * 1e6, 2),
                                   "wall_us_per_record": round(wall / records * 1e6, 2),
                                   "produce_requests": sent["requests"], "record_batches": sent["batches"]})
                print(f"round {round_ + 1}/{rounds} {name}: {runs[name][-1]}", flush=True)
        Path(result_path).write_text(json.dumps(runs))
        os._exit(0)  # the figures are written; no need to wait for Faust's shutdown

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


def _cpu_s(process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _free_port() -> int:
    from hfrisk.stack.process import free_port

    return free_port("127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--per-batch", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--app", metavar="RESULT_PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.app:
        sys.argv = [sys.argv[0], "worker"]  # Faust's command line
        run_app(args.app, args.records, args.per_batch, args.rounds)
        return
    command = command_line("bench_publish", argv)
    load_before = load_average()
    from hfrisk.core.config import get_settings
    from hfrisk.stack.kafka import KafkaBroker
    from hfrisk.stream.ingest.topics import ensure_topics

    with work_dir("publish") as work:
        broker = KafkaBroker(work / "kafka").start()
        try:
            env = {**os.environ, "HFRISK_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                   "HFRISK_PATHS__STATE_DIR": str(work / "state"), "BENCH_BROKER_PID": str(broker.pid)}
            os.environ.update(env)
            get_settings.cache_clear()
            ensure_topics(get_settings().kafka)
            result_path = work / "runs.json"
            subprocess.run([sys.executable, "-m", "bench.bench_publish", "--app", str(result_path),
                            "--records", str(args.records), "--per-batch", str(args.per_batch),
                            "--rounds", str(args.rounds)], env=env, check=True, timeout=600)
            runs = json.loads(result_path.read_text())
        finally:
            broker.stop()
    medians = {name: {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
               for name in VARIANTS}
    result = {"command": command, "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "machine": machine(load_before), "records": args.records, "per_batch": args.per_batch,
              "rounds": args.rounds, "runs": runs, "medians": medians}
    save(args.out, "publish", result, report(result))
    print(report(result))


def report(result: dict) -> str:
    m, (new, old) = result["medians"], VARIANTS
    groups = -(-result["records"] // result["per_batch"])
    lines = [
        "# Publishing a batch's records: the app's producer against Faust's Topic.send",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs ({result['machine']['processor']}), "
        f"load average {result['machine']['load_before']} before, {result['machine']['load_after']} after.  ",
        f"{result['records']} score-sized records (~{len(_VALUE)} bytes, keyed by 200 patients) in {groups} groups of "
        f"{result['per_batch']}, each group awaited as the worker awaits a batch's records; the two publishers "
        f"alternate, {result['rounds']} rounds; medians. CPU is the whole Faust process's (its consumer and "
        "aiokafka's sender included).",
        "",
        f"| | {new} | {old} |",
        "| --- | ---: | ---: |",
        f"| **CPU per record (µs)** | **{m[new]['cpu_us_per_record']}** | **{m[old]['cpu_us_per_record']}** |",
        f"| wall per record (µs) | {m[new]['wall_us_per_record']} | {m[old]['wall_us_per_record']} |",
        f"| broker CPU per record (µs, its idle rate subtracted) | {m[new]['broker_cpu_us_per_record']} | "
        f"{m[old]['broker_cpu_us_per_record']} |",
        f"| produce requests (per run) | {m[new]['produce_requests']:g} | {m[old]['produce_requests']:g} |",
        f"| record batches (per run) | {m[new]['record_batches']:g} | {m[old]['record_batches']:g} |",
        f"| CPU per record, each round | {[r['cpu_us_per_record'] for r in result['runs'][new]]} | "
        f"{[r['cpu_us_per_record'] for r in result['runs'][old]]} |",
        "",
        "Why they differ: `Topic.send` goes through Faust's channel machinery and gives way to the event loop "
        "between records, so aiokafka's sender wakes up in the middle of a group and sends what it has; the "
        "producer's `send` only appends to aiokafka's accumulator, so a group leaves in one request with one "
        "record batch per partition. Fewer requests also cost the broker less.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
