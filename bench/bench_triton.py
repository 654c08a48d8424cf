"""Triton-served throughput against in-process ONNX Runtime, and what dynamic batching buys.

    .venv/bin/python -m bench.bench_triton [--seconds 3] [--rounds 5] [--threads N] [--onnx model.onnx]

Measured in one run, on the same ONNX file, the same real inputs (the bundled PTB-XL records
through the served preprocessing) and the same ONNX Runtime thread count:

1. **Overhead of serving.** ECG/s of one caller issuing batches of 1 and of 32 back to back:
   ONNX Runtime in this process (the baseline) vs :class:`~hfrisk.serving.client.RiskClient`
   → gRPC → Triton → python backend → ONNX Runtime. The ratio Triton/in-process is the cost of
   serving (goal: ≥ 0.8 at batch 32). Baseline and Triton run back to back, ``--rounds`` times,
   so that load from other processes hits both alike; the median per-round ratio is reported.
2. **Dynamic batching.** 1, 4 and 16 concurrent async clients each sending one window per request:
   ECG/s, p50/p95 latency, and the average batch Triton actually executed, read from its metrics
   (Δ``nv_inference_count`` / Δ``nv_inference_exec_count``).

Results go to ``docs/bench/triton.json`` and ``docs/bench/triton.md`` with the command line.
Without ``--onnx`` an untrained HFRiskNet is exported (same compute as a trained one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.record import command_line, load_average, machine, save, work_dir
from hfrisk.model.contract.card import ModelCard, default_card, load_card
from hfrisk.serving.client import RiskClient
from hfrisk.serving.model_repository import ServingOptions, write_model_repository
from hfrisk.stack.triton_server import TritonServer

RECORDS_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500"
CONCURRENCY = (1, 4, 16)
BATCHES = (1, 32)


# --- inputs and model ----------------------------------------------------------------------------


def real_inputs(card: ModelCard) -> np.ndarray:
    from hfrisk.model.network.onnx_export import recording_inputs

    heads = sorted(RECORDS_DIR.rglob("*.hea"))
    return recording_inputs([h.with_suffix("") for h in heads], card)


def batch_of(inputs: np.ndarray, size: int, start: int = 0) -> np.ndarray:
    rows = (np.arange(size) + start) % len(inputs)
    return np.ascontiguousarray(inputs[rows])


def export_model(folder: Path, card: ModelCard) -> Path:
    import torch

    from hfrisk.model.network.hfrisk_net import HFRiskNet
    from hfrisk.model.network.onnx_export import export_onnx

    torch.manual_seed(0)
    return export_onnx(HFRiskNet.from_card(card), folder / "model.onnx", card, save_card=False)


# --- measurements --------------------------------------------------------------------------------


def ort_rate(session, card: ModelCard, inputs: np.ndarray, batch: int, seconds: float) -> float:
    """ECG/s of back-to-back ``session.run`` calls on ``batch`` windows."""
    names = [o.name for o in card.outputs]
    x = batch_of(inputs, batch)
    for _ in range(3):
        session.run(names, {card.input.name: x})
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        session.run(names, {card.input.name: x})
        done += batch
    return done / elapsed


async def _client_loop(client: RiskClient, x: np.ndarray, until: float, latencies: list[float]) -> int:
    done = 0
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        await client.infer(x)
        latencies.append(time.perf_counter() - t0)
        done += len(x)
    return done


async def triton_rate(url: str, card: ModelCard, inputs: np.ndarray, batch: int, clients: int, seconds: float) -> dict:
    """ECG/s and latency of ``clients`` concurrent callers, each sending ``batch`` windows per request."""
    pool = [RiskClient(url, card=card, max_batch=max(batch, 1), retries=0, timeout_s=60) for _ in range(clients)]
    try:
        xs = [batch_of(inputs, batch, start=i) for i in range(clients)]
        await asyncio.gather(*(c.infer(x) for c, x in zip(pool, xs)))  # connect and warm up
        latencies: list[float] = []
        start = time.perf_counter()
        counts = await asyncio.gather(*(_client_loop(c, x, start + seconds, latencies) for c, x in zip(pool, xs)))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.close() for c in pool))
    latencies_ms = np.array(latencies) * 1e3
    return {
        "ecg_per_s": sum(counts) / elapsed,
        "requests": len(latencies),
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p95_ms": float(np.percentile(latencies_ms, 95)),
    }


_METRIC = re.compile(r'^(nv_inference_\w+)\{[^}]*model="(?P<model>[^"]+)"[^}]*\}\s+(?P<value>\S+)$')


def read_metrics(url: str, model: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match and match["model"] == model:
            values[match[1]] = values.get(match[1], 0.0) + float(match["value"])
    return values


def executed_batch(before: dict, after: dict) -> dict:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    executions = delta.get("nv_inference_exec_count", 0.0)
    requests = delta.get("nv_inference_request_success", 0.0)
    return {
        "avg_executed_batch": delta.get("nv_inference_count", 0.0) / executions if executions else None,
        "avg_queue_ms": delta.get("nv_inference_queue_duration_us", 0.0) / requests / 1e3 if requests else None,
        # Triton charges every request of a batch the batch's whole compute time: per request = per execution.
        "avg_compute_ms": delta.get("nv_inference_compute_infer_duration_us", 0.0) / requests / 1e3 if requests else None,
    }


# --- report --------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    machine, serving = result["machine"], result["serving"]
    lines = [
        "# Triton serving benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {machine['cpus']} CPUs ({machine['processor']}), load average "
        f"{machine['load_before']} before, {machine['load_after']} after; no GPU. ONNX Runtime "
        f"{result['versions']['onnxruntime']} (CPUExecutionProvider, {result['threads']} intra-op thread(s) on both "
        f"sides); Triton {result['versions']['triton']} (pytriton wheel, python backend).",
        "",
        f"Model: {result['model']}. Inputs: {result['inputs']}.",
        "",
        "## Serving overhead: one caller, back-to-back batches",
        "",
        f"{result['rounds']} rounds of {result['seconds']:g} s per measurement; in each round in-process and Triton run "
        "back to back (order alternating). ECG/s: median over rounds; ratio: median of the per-round ratios "
        "(min–max). \"2 in flight\": two callers, each with one request outstanding, as when RiskClient splits a "
        "large batch into concurrent requests.",
        "",
        "| batch | in-process ONNX Runtime (ECG/s) | Triton via gRPC (ECG/s) | Triton / in-process | "
        "Triton, 2 in flight (ECG/s) | rounds (ORT / Triton) |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["overhead"]:
        rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(row["ort_rounds"], row["triton_rounds"]))
        low, high = row["ratio_range"]
        lines.append(
            f"| {row['batch']} | {row['ort_ecg_per_s']:.1f} | {row['triton_ecg_per_s']:.1f} | "
            f"**{row['ratio']:.2f}** ({low:.2f}–{high:.2f}) | {row['triton_2_in_flight_ecg_per_s']:.1f} | {rounds} |"
        )
    lines += [
        "",
        "## Dynamic batching: concurrent clients, one window per request",
        "",
        f"max_batch_size {serving['max_batch_size']}, preferred batch sizes {serving['preferred_batch_sizes']}, "
        f"{serving['cpu_instances']} CPU instance; {result['concurrency_seconds']:g} s per row. Executed batch, queue "
        "and compute times from Triton's metrics (Δnv_inference_count / Δnv_inference_exec_count, …).",
        "",
        "| max_queue_delay (µs) | clients | ECG/s | p50 latency (ms) | p95 latency (ms) | avg executed batch | "
        "avg queue (ms) | compute per execution (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["dynamic_batching"]:
        lines.append(
            f"| {row['max_queue_delay_us']} | {row['clients']} | {row['ecg_per_s']:.1f} | {row['p50_ms']:.1f} | "
            f"{row['p95_ms']:.1f} | {_fmt(row['avg_executed_batch'], '.2f')} | {_fmt(row['avg_queue_ms'])} | "
            f"{_fmt(row['avg_compute_ms'])} |"
        )
    lines += ["", result["note"], ""]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


def overhead_rows(session, url: str, card: ModelCard, inputs: np.ndarray, rounds: int, seconds: float) -> list[dict]:
    rows = []
    for batch in BATCHES:
        ort_rounds, triton_rounds = [], []
        for r in range(rounds):
            measure_ort = lambda: ort_rate(session, card, inputs, batch, seconds)  # noqa: E731
            measure_triton = lambda: asyncio.run(triton_rate(url, card, inputs, batch, 1, seconds))["ecg_per_s"]  # noqa: E731
            # Alternate which side goes first, so a drifting background load favours neither.
            if r % 2 == 0:
                ort_rounds.append(measure_ort())
                triton_rounds.append(measure_triton())
            else:
                triton_rounds.append(measure_triton())
                ort_rounds.append(measure_ort())
            print(f"batch {batch} round {r + 1}: in-process {ort_rounds[-1]:.1f} ECG/s, "
                  f"Triton {triton_rounds[-1]:.1f} ECG/s", flush=True)
        pipelined = asyncio.run(triton_rate(url, card, inputs, batch, 2, seconds))["ecg_per_s"]
        # A round's two measurements are seconds apart: their ratio is the least load-sensitive figure.
        ratios = [t / o for t, o in zip(triton_rounds, ort_rounds)]
        rows.append({
            "batch": batch,
            "ort_ecg_per_s": statistics.median(ort_rounds),
            "triton_ecg_per_s": statistics.median(triton_rounds),
            "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "triton_2_in_flight_ecg_per_s": pipelined,
            "ort_rounds": ort_rounds,
            "triton_rounds": triton_rounds,
        })
    return rows


def batching_rows(server: TritonServer, card: ModelCard, inputs: np.ndarray, delay_us: int, seconds: float) -> list[dict]:
    rows = []
    for clients in CONCURRENCY:
        before = read_metrics(server.metrics_url, "hfrisk")
        row = asyncio.run(triton_rate(server.grpc_url, card, inputs, 1, clients, seconds))
        time.sleep(2.5)  # Triton refreshes its metrics every 2 s by default: let the counters catch up
        row.update(executed_batch(before, read_metrics(server.metrics_url, "hfrisk")))
        row.update(clients=clients, max_queue_delay_us=delay_us)
        rows.append(row)
        print(f"delay {delay_us} µs, {clients} clients: {row['ecg_per_s']:.1f} ECG/s, p50 {row['p50_ms']:.1f} ms, "
              f"p95 {row['p95_ms']:.1f} ms, avg executed batch {_fmt(row['avg_executed_batch'], '.2f')}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    with work_dir("triton") as work:
        return run(argv, work)


def run(argv: list[str] | None, work: Path) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, help="ONNX model to serve (its folder's model_card.json is used if present)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each overhead measurement")
    parser.add_argument("--rounds", type=int, default=5, help="baseline/Triton rounds per batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads, both sides")
    parser.add_argument("--max-queue-delay-us", type=int, default=ServingOptions().max_queue_delay_us,
                        help="the dynamic batcher's wait for more requests, as in config.pbtxt")
    parser.add_argument("--compare-delay-us", type=int, default=2000,
                        help="second max_queue_delay for the concurrency table (negative: skip)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    card = default_card()
    if args.onnx:
        onnx_path = args.onnx
        if (args.onnx.parent / "model_card.json").exists():
            card = load_card(args.onnx.parent)
        model = str(args.onnx)
    else:
        print("exporting an untrained HFRiskNet …", flush=True)
        onnx_path = export_model(work, card)
        model = "HFRiskNet (untrained weights, seed 0; the compute of a trained one)"
    inputs = real_inputs(card)

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = args.threads
    session_options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), session_options, providers=["CPUExecutionProvider"])

    delays = [args.max_queue_delay_us]
    if args.compare_delay_us >= 0 and args.compare_delay_us != args.max_queue_delay_us:
        delays.append(args.compare_delay_us)
    load_before = load_average()
    concurrency_seconds = 2 * args.seconds
    overhead, batching = [], []
    for i, delay_us in enumerate(delays):
        options = ServingOptions(intra_op_threads=args.threads, max_queue_delay_us=delay_us)
        repo = write_model_repository(onnx_path, card, work / f"repo_{delay_us}", options=options).parent
        with TritonServer(repo, "hfrisk", work_dir=work / f"server_{delay_us}") as server:
            if i == 0:
                overhead = overhead_rows(session, server.grpc_url, card, inputs, args.rounds, args.seconds)
                session = None  # free the baseline's memory and threads before the concurrency runs
                with grpcclient.InferenceServerClient(server.grpc_url) as probe:
                    triton_version = probe.get_server_metadata().version
                serving = {
                    "max_batch_size": options.max_batch_size,
                    "preferred_batch_sizes": list(options.preferred),
                    "max_queue_delay_us": delay_us,
                    "cpu_instances": options.cpu_instances,
                }
            batching += batching_rows(server, card, inputs, delay_us, concurrency_seconds)

    result = {
        "command": command_line("bench_triton", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(load_before),
        "versions": {"onnxruntime": ort.__version__, "triton": triton_version, "python": platform.python_version()},
        "model": model,
        "inputs": f"{len(inputs)} PTB-XL 500 Hz records (tests/data) through hfrisk.model.frontend.preprocessing.prepare, cycled",
        "threads": args.threads,
        "seconds": args.seconds,
        "concurrency_seconds": concurrency_seconds,
        "rounds": args.rounds,
        "serving": serving,
        "overhead": overhead,
        "dynamic_batching": batching,
        "note": (
            "Client, Triton and ONNX Runtime share the same CPUs (on the development machine also with other "
            "engineers' jobs: see the load average), so absolute figures move between runs; the paired ratios and "
            "the executed batch sizes are the figures to compare."
        ),
    }
    save(args.out, "triton", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
