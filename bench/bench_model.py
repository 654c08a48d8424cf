"""Throughput of the network alone: PyTorch (eval, no grad) against ONNX Runtime (CPU provider).

    .venv/bin/python -m bench.bench_model [--batches 1 32 128] [--rounds 5] [--seconds 1.5] [--threads N] [--out docs/bench]

Both engines run the served graph (:class:`~hfrisk.model.network.hfrisk_net.ServingModule`: log-risk and the
three attention outputs) on the same real inputs — the bundled PTB-XL 500 Hz records through
:func:`~hfrisk.model.network.onnx_export.recording_inputs`, cycled to fill each batch — with the same
number of intra-op threads. After a warm-up, each round measures back-to-back calls for
``--seconds`` per engine and batch size; PyTorch and ONNX Runtime alternate within a round, so
load from other processes hits both alike. The median round is reported, with the per-call
latency and the ORT / PyTorch ratio. Before timing, the ONNX outputs are checked against PyTorch
on those inputs (max |difference| is part of the result).

Results go to ``<out>/model.json`` and ``<out>/model.md`` with the command line, versions,
threads and machine. Weights are untrained (seed 0): the compute is that of a trained network.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.record import command_line, load_average, machine, save

RECORDS_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500"


def real_inputs(card) -> np.ndarray:
    from hfrisk.model.network.onnx_export import recording_inputs

    heads = sorted(RECORDS_DIR.rglob("*.hea"))
    return recording_inputs([h.with_suffix("") for h in heads], card)


def batch_of(inputs: np.ndarray, size: int) -> np.ndarray:
    return np.ascontiguousarray(inputs[np.arange(size) % len(inputs)])


def rate(call: Callable[[], object], batch: int, seconds: float) -> tuple[float, float]:
    """(ECG/s, mean ms per call) of back-to-back ``call()`` for at least ``seconds`` (and 3 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * batch / elapsed, 1e3 * elapsed / calls


def markdown(result: dict) -> str:
    m, v = result["machine"], result["versions"]
    lines = [
        "# Model benchmark: PyTorch vs ONNX Runtime (CPU)",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {m['cpus']} CPUs ({m['processor']}, {m['platform']}), "
        f"load average {m['load_before']} before, {m['load_after']} after.  ",
        f"torch {v['torch']}, onnxruntime {v['onnxruntime']} (CPUExecutionProvider), onnx {v['onnx']}, "
        f"python {v['python']}; {result['threads']} intra-op thread(s) in both engines.",
        "",
        f"Model: {result['model']}. Inputs: {result['inputs']}.",
        f"ONNX vs PyTorch on these inputs: max |difference| {result['parity_max_abs_diff']:.2e}.",
        "",
        f"Median of {result['rounds']} rounds of {result['seconds']:g} s per engine and batch size "
        f"(after {result['warmup']} warm-up calls).",
        "",
        "| batch | PyTorch (ECG/s) | ONNX Runtime (ECG/s) | ORT / PyTorch | PyTorch ms/call | ORT ms/call | rounds (PyTorch / ORT ECG/s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["rows"]:
        rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(row["torch_rounds"], row["ort_rounds"]))
        lines.append(
            f"| {row['batch']} | {row['torch_ecg_per_s']:.1f} | {row['ort_ecg_per_s']:.1f} | **{row['ratio']:.2f}** | "
            f"{row['torch_ms_per_call']:.2f} | {row['ort_ms_per_call']:.2f} | {rounds} |"
        )
    lines += ["", result["note"], ""]
    return "\n".join(lines)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hfrisk model throughput ({result['threads']} thread(s), median of {result['rounds']} rounds)")
    for column in ("batch", "PyTorch ECG/s", "ORT ECG/s", "ORT / PyTorch", "PyTorch ms/call", "ORT ms/call"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(
            str(row["batch"]),
            f"{row['torch_ecg_per_s']:.1f}",
            f"{row['ort_ecg_per_s']:.1f}",
            f"{row['ratio']:.2f}",
            f"{row['torch_ms_per_call']:.2f}",
            f"{row['ort_ms_per_call']:.2f}",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per engine and batch size")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each timed round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per engine and batch size")
    # One thread by default: on a shared CPU, PyTorch's OpenMP threads waiting on each other made a
    # batch-1 call 100x slower (5 ms → 500 ms) with 2 threads under a load average of 4 on 2 cores.
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both engines")
    parser.add_argument("--onnx", type=Path, help="use this exported model instead of exporting the untrained network")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="folder for model.json and model.md")
    args = parser.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    from hfrisk.model.contract.card import default_card
    from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule, count_parameters
    from hfrisk.model.network.onnx_export import export_onnx, onnx_parity

    torch.set_num_threads(args.threads)
    card = default_card()
    torch.manual_seed(0)
    net = HFRiskNet.from_card(card).eval()
    inputs = real_inputs(card)
    if args.onnx:
        # The PyTorch side is still the untrained network, so parity is not expected to hold.
        onnx_path, model = args.onnx, f"{args.onnx} (ONNX) vs untrained HFRiskNet (PyTorch)"
    else:
        print("exporting an untrained HFRiskNet …", flush=True)
        onnx_path = export_onnx(net, Path(tempfile.mkdtemp(prefix="hfrisk-bench-model-")) / "model.onnx", card, save_card=False)
        served = count_parameters(net.encoder) + count_parameters(net.risk_head)
        model = f"HFRiskNet, dual attention, served graph = encoder + risk head, {served:,} parameters (untrained, seed 0)"

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    parity = onnx_parity(onnx_path, net, inputs, session=session)
    serving = ServingModule(net)
    input_name = card.input.name

    load_before = load_average()
    rows = []
    for batch in args.batches:
        x_np = batch_of(inputs, batch)
        x_torch = torch.from_numpy(x_np)

        def run_torch(x=x_torch):
            with torch.inference_mode():
                return serving(x)

        def run_ort(x=x_np):
            return session.run(None, {input_name: x})

        for _ in range(args.warmup):
            run_torch()
            run_ort()
        torch_rounds, ort_rounds, torch_ms, ort_ms = [], [], [], []
        for r in range(args.rounds):
            t_rate, t_ms = rate(run_torch, batch, args.seconds)
            o_rate, o_ms = rate(run_ort, batch, args.seconds)
            torch_rounds.append(t_rate), torch_ms.append(t_ms)
            ort_rounds.append(o_rate), ort_ms.append(o_ms)
            print(f"batch {batch} round {r + 1}: PyTorch {t_rate:.1f} ECG/s, ONNX Runtime {o_rate:.1f} ECG/s", flush=True)
        t_med, o_med = statistics.median(torch_rounds), statistics.median(ort_rounds)
        rows.append({
            "batch": batch,
            "torch_ecg_per_s": t_med,
            "ort_ecg_per_s": o_med,
            "ratio": o_med / t_med,
            "torch_ms_per_call": statistics.median(torch_ms),
            "ort_ms_per_call": statistics.median(ort_ms),
            "torch_rounds": torch_rounds,
            "ort_rounds": ort_rounds,
        })

    result = {
        "command": command_line("bench_model", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {**machine(load_before), "platform": platform.platform()},
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "model": model,
        "inputs": f"{len(inputs)} PTB-XL 500 Hz records (tests/data) through hfrisk.model.network.onnx_export.recording_inputs, cycled",
        "threads": args.threads,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "parity_max_abs_diff": parity.worst,
        "rows": rows,
        "note": (
            "CPU only. Both engines share the machine with whatever else runs on it (see the load average), "
            "so absolute figures are noisy; the alternating rounds make the ratio the more reliable figure."
        ),
    }
    save(args.out, "model", result, markdown(result))
    print_table(result)
    print(f"wrote {args.out / 'model.json'} and {args.out / 'model.md'}")
    return result


if __name__ == "__main__":
    main()
