"""Where preprocessing runs: raw windows to ``hfrisk_raw`` vs model inputs to ``hfrisk``, and the GPU.

    .venv/bin/python -m bench.bench_serving [--batch 32] [--seconds 3] [--rounds 3] [--threads 1]
    .venv/bin/python -m bench.bench_serving --device cuda [--gpu-batches 256 1024 4096]

``--device cpu`` (default), one run, on one tritonserver serving both models from one repository
(the same ONNX file), one caller sending ``--batch`` windows per request back to back, alternating
the two in each of ``--rounds`` rounds of ``--seconds``:

1. **model inputs** to ``hfrisk``: the network alone (the worker has already prepared them);
2. **raw windows** to ``hfrisk_raw``: the front end (torch, the server's CPU) and the network;
   each of the two also through shared memory (``shared_memory="system"``: the tensors in
   ``/dev/shm`` regions Triton maps, not in the request), alternating with the rest, and checked to
   answer exactly as the request path does;
3. in this process, for the per-stage costs the sizing uses: the front end on numpy with one BLAS
   thread (what one worker pool process does), on torch's CPU, and the raw model's whole computation
   (:class:`~hfrisk.serving.raw_windows.RawWindowModel`) on torch's CPU.

``--device cuda`` measures in process on the GPU, at each of ``--gpu-batches``: the front end on
torch/CUDA, the network alone (torch eager, fp32) and both as a raw request runs them; and the
served raw model (front end on torch, network in ONNX Runtime) where onnxruntime-gpu gives ONNX
Runtime a CUDA provider (:func:`device_rows`). Without a GPU it records that nothing was measured.
Windows are the 24 PTB-XL 500 Hz records of tests/data (10 s, 12 leads), cycled.

Results: ``docs/bench/serving.json`` / ``.md`` (``serving-cuda.*`` for ``--device cuda``), with the
command. The model is the bundled one (``triton_models/hfrisk``) unless ``--onnx``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from bench.record import command_line, load_average, machine, save, work_dir
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, load_card
from hfrisk.model.frontend.arrays import ArrayBackend, one_blas_thread
from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows
from hfrisk.model.readers.dispatch import read_ecg

ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500"
BUNDLED = ROOT / "triton_models" / "hfrisk" / "1" / "model.onnx"


def windows(card: ModelCard):
    """The records as the worker holds them (ECG) and as it would send them raw (conformed)."""
    from hfrisk.stream.scoring.on_server import conform_window

    ecgs = [read_ecg(h.with_suffix("")) for h in sorted(RECORDS_DIR.rglob("*.hea"))]
    conformed = [conform_window(e, card) for e in ecgs]
    return ecgs, (np.stack([c.samples for c in conformed]).astype(np.float32),
                  np.stack([c.mask for c in conformed]), np.array([c.fs_hz for c in conformed], np.float32))


def cycle(arrays, size: int, start: int = 0):
    rows = (np.arange(size) + start) % len(arrays[0])
    return tuple(np.ascontiguousarray(a[rows]) for a in arrays)


def rate(step, size: int, seconds: float, warm: int = 2, cpu: list | None = None) -> float:
    """Windows/s of ``step()`` (``size`` windows a call) back to back for ``seconds``; ``cpu``, if
    given, gets this process's CPU µs per window (the caller's own cost: a worker's, for a client)."""
    for _ in range(warm):
        step()
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        done += size
    if cpu is not None:
        cpu.append((time.process_time() - cpu_start) / done * 1e6)
    return done / elapsed


def in_process(card: ModelCard, onnx_path: Path, ecgs, raw, batch: int, seconds: float, threads: int) -> dict:
    import torch

    from hfrisk.serving.raw_windows import RawWindowModel

    torch.set_num_threads(threads)
    requests = [(ecgs[i % len(ecgs)], 0.0) for i in range(batch)]
    x = cycle(raw, batch)
    model = RawWindowModel(card, onnx_path, backend=ArrayBackend("torch", "cpu"), intra_op_threads=threads,
                           batch_size=batch)
    one_blas_thread()  # as in a worker pool process
    numpy_rate = rate(lambda: prepare_windows(requests, card, backend=ArrayBackend("numpy"), batch_size=batch),
                      batch, seconds)
    from hfrisk.stream.scoring.on_server import conform_window

    def share():  # the worker's part in server mode: window and lead order, stacked for the request
        c = [conform_window(e, card) for e, _ in requests]
        np.stack([w.samples for w in c]), np.stack([w.mask for w in c])

    return {
        "worker_share_server_mode": rate(share, batch, seconds),
        "frontend_numpy_1_thread": numpy_rate,
        "frontend_torch_cpu": rate(lambda: prepare_windows(requests, card, backend=ArrayBackend("torch", "cpu"),
                                                           batch_size=batch), batch, seconds),
        "raw_model_torch_cpu": rate(lambda: model.score(*x), batch, seconds),
    }


def through_triton(card: ModelCard, onnx_path: Path, ecgs, raw, args, work: Path) -> dict:
    from hfrisk.serving.client import RawRiskClient, RiskClient
    from hfrisk.serving.model_repository import write_model_repository
    from hfrisk.stack.triton_server import TritonServer

    repo = work / "repo"
    write_model_repository(onnx_path, card, repo, intra_op_threads=args.threads)
    prepared = prepare_windows([(e, 0.0) for e in ecgs], card, backend=ArrayBackend("numpy"))
    inputs = np.stack([p.x for p in prepared]).astype(np.float32)
    x_in = inputs[(np.arange(args.batch)) % len(inputs)]
    x_raw = cycle(raw, args.batch)
    names = ("model_inputs", "raw_windows", "model_inputs_shm", "raw_windows_shm")
    rounds: dict[str, list[float]] = {name: [] for name in names}
    client_cpu: dict[str, list[float]] = {name: [] for name in names}
    with TritonServer(repo, "hfrisk", work_dir=work / "triton", extra_args=["--load-model=hfrisk_raw"]) as server:
        loop = asyncio.new_event_loop()
        clients = {name: (RawRiskClient if name.startswith("raw") else RiskClient)(
            server.grpc_url, card=card, max_batch=args.batch, timeout_s=60,
            shared_memory="system" if name.endswith("_shm") else "off") for name in names}
        calls = {name: (lambda c=clients[name]: c.infer_raw(*x_raw)) if name.startswith("raw")
                 else (lambda c=clients[name]: c.infer(x_in)) for name in names}
        steps = {name: (lambda call=calls[name]: loop.run_until_complete(call())) for name in names}
        try:
            same = {name: _same(steps["raw_windows" if name.startswith("raw") else "model_inputs"](), steps[name]())
                    for name in names if name.endswith("_shm")}
            if not all(same.values()):
                raise AssertionError(f"shared memory answered differently from the request path: {same}")
            for r in range(args.rounds):
                for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                    rounds[name].append(rate(steps[name], args.batch, args.seconds, cpu=client_cpu[name]))
        finally:
            for client in clients.values():
                loop.run_until_complete(client.close())
            loop.close()
    return {name: {"windows_per_s": statistics.median(v), "rounds": [round(x, 1) for x in v],
                   "client_cpu_us_per_window": statistics.median(client_cpu[name])}
            for name, v in rounds.items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def on_gpu(card: ModelCard, onnx_path: Path, ecgs, raw, args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "why": "torch sees no CUDA device on this machine"}
    return {"measured": True, "device": torch.cuda.get_device_name(0),
            "rows": device_rows(card, onnx_path, ecgs, raw, args.gpu_batches, args.seconds, "cuda")}


def device_rows(card: ModelCard, onnx_path: Path, ecgs, raw, batches, seconds: float, device: str) -> list[dict]:
    """Windows/s in this process on torch's ``device``, at each batch size: the front end, the network
    alone on inputs already there, and both as a served raw request runs them (model inputs back
    to the host in between, as ``prepare_windows`` hands them over; outputs back to the host).

    The network runs in torch eager (fp32, untrained weights, seed 0: the served graph's compute),
    standing in for ONNX Runtime's CUDA provider where onnxruntime-gpu is not installed. Where it is,
    the served raw model (``RawWindowModel``, front end on torch) is measured on it too.
    """
    import onnxruntime as ort
    import torch

    from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule
    from hfrisk.serving.raw_windows import RawWindowModel

    backend = ArrayBackend("torch", device)
    torch.manual_seed(0)
    network = ServingModule(HFRiskNet.from_card(card).eval()).to(device)
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()

    def run_network(x):
        with torch.inference_mode():
            return [out.cpu() for out in network(x)]  # on the host: waits for the device to finish

    rows = []
    for batch in batches:
        requests = [(ecgs[i % len(ecgs)], 0.0) for i in range(batch)]

        def front():
            return prepare_windows(requests, card, backend=backend, batch_size=batch)

        def inputs(prepared) -> torch.Tensor:
            fit = [item.x for item in prepared if isinstance(item, ModelInput)]
            if len(fit) != len(prepared):
                raise RuntimeError(f"{len(prepared) - len(fit)} of {len(prepared)} windows refused by the front end")
            return torch.from_numpy(np.stack(fit)).to(device)

        x = inputs(front())
        row = {"batch": batch,
               "frontend_windows_per_s": rate(front, batch, seconds),
               "network_windows_per_s": rate(lambda: run_network(x), batch, seconds),
               "frontend_and_network_windows_per_s": rate(lambda: run_network(inputs(front())), batch, seconds),
               "network": "torch eager fp32"}
        if ort_cuda:
            model = RawWindowModel(card, onnx_path, backend=backend, batch_size=batch,
                                   providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
            request = cycle(raw, batch)
            row |= {"raw_model_windows_per_s": rate(lambda: model.score(*request), batch, seconds),
                    "raw_model_providers": model.providers}
        rows.append(row)
        print(row, flush=True)
    return rows


def report(result: dict) -> str:
    m = result["machine"]
    head = (f"# Where preprocessing runs: raw windows vs model inputs\n\nCommand: `{result['command']}`  \n"
            f"When: {result['when']}; machine: {m['cpus']} CPUs ({m['processor']}), load average "
            f"{m['load_before']} before, {m['load_after']} after.  \nModel: {result['model']}. Windows: 24 PTB-XL "
            "500 Hz records (tests/data), 10 s, 12 leads, cycled.\n\n")
    if result["device"] == "cuda":
        gpu = result["gpu"]
        if not gpu["measured"]:
            return head + f"## GPU, in process\n\n**Unmeasured**: {gpu['why']}.\n"
        return head + f"## GPU, in process ({gpu['device']})\n\n" + "\n".join(_device_lines(gpu["rows"])) + "\n"
    t, p = result["triton"], result["in_process"]
    b = result["batch"]
    ratio = t["raw_windows"]["windows_per_s"] / t["model_inputs"]["windows_per_s"]
    return head + f"""## Triton on CPU: one caller, batches of {b}, back to back

{result['rounds']} rounds of {result['seconds']:g} s, the four requests alternating; median windows/s (per round). Triton's
instances: {result['threads']} ONNX Runtime / torch thread(s); client and server share the machine's CPUs.

| request | what the server does | windows/s | rounds | client CPU (µs / window) |
| --- | --- | ---: | --- | ---: |
{_triton_rows(t)}

Client CPU: this process's CPU time per window while it called (gRPC, serialisation): what a worker
spends per window on the Triton call itself. *Shared memory*: the client writes the large tensors
(raw windows: 240 kB each; model inputs: 29 kB each) into `/dev/shm` regions Triton has mapped, and
the request names the regions (`HFRISK_TRITON__SHARED_MEMORY=system`, Triton on the same host);
before the rounds each answered exactly as the request path did.

Raw / model inputs: **{ratio:.2f}**. A CPU server that preprocesses does the work the worker pool would
have done, plus the transfer of raw windows (12 × 5000 float32 = 240 kB a window vs 29 kB): on a CPU host
it moves the cost, it does not remove it; the default stays `preprocess_on: worker`.
Through shared memory a raw window costs the caller **{t['raw_windows_shm']['client_cpu_us_per_window']:.0f} µs**
of CPU instead of {t['raw_windows']['client_cpu_us_per_window']:.0f} (a model input
{t['model_inputs_shm']['client_cpu_us_per_window']:.0f} instead of {t['model_inputs']['client_cpu_us_per_window']:.0f}).

## In process, same machine, batches of {b} (the per-stage costs of docs/serving.md's sizing)

| stage | windows/s |
| --- | ---: |
| the worker's share in server mode (`conform_window`: card window, lead order; stacked) | {p['worker_share_server_mode']:.0f} |
| front end, numpy, one BLAS thread (one worker pool process) | {p['frontend_numpy_1_thread']:.0f} |
| front end, torch CPU ({result['threads']} thread(s)) | {p['frontend_torch_cpu']:.0f} |
| front end + network, torch CPU + ONNX Runtime (`RawWindowModel`) | {p['raw_model_torch_cpu']:.0f} |
"""


def _triton_rows(t: dict) -> str:
    what = {"model_inputs": ("model inputs to `hfrisk`", "network"),
            "raw_windows": ("raw windows to `hfrisk_raw`", "front end (torch, CPU) + network")}
    lines = []
    for name, row in t.items():
        request, work = what[name.removesuffix("_shm")]
        if name.endswith("_shm"):
            request += ", shared memory"
        lines.append(f"| {request} | {work} | {row['windows_per_s']:.0f} | {row['rounds']} | "
                     f"{row['client_cpu_us_per_window']:.0f} |")
    return "\n".join(lines)


def _device_lines(rows: list[dict]) -> list[str]:
    """The table of :func:`device_rows`."""
    served = any("raw_model_windows_per_s" in r for r in rows)
    lines = ["| batch | front end (windows/s) | network, torch eager fp32 (windows/s) | front end + network (windows/s) |"
             + (" served raw model, ONNX Runtime (windows/s) |" if served else ""),
             "| ---: | ---: | ---: | ---: |" + (" ---: |" if served else "")]
    for r in rows:
        line = (f"| {r['batch']} | {r['frontend_windows_per_s']:.0f} | {r['network_windows_per_s']:.0f} | "
                f"{r['frontend_and_network_windows_per_s']:.0f} |")
        if served:
            line += (f" {r['raw_model_windows_per_s']:.0f} ({', '.join(r['raw_model_providers'])}) |"
                     if "raw_model_windows_per_s" in r else " – |")
        lines.append(line)
    return [*lines, "",
            "Front end: `prepare_windows` on torch on this device, model inputs back to the host. Network: the "
            "served graph in torch eager, untrained weights (the compute of the served one), inputs already on "
            "the device, outputs back to the host. Front end + network: both, as a raw request runs them."
            + (" Served raw model: `RawWindowModel` with ONNX Runtime's providers as listed." if served else
               " ONNX Runtime's CUDA provider is not installed here, so the served raw model was not measured on it.")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--onnx", type=Path, default=BUNDLED, help="ONNX model (its folder's or parent's card)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gpu-batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads of the server's (and in-process) torch/ORT")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)

    load_before = load_average()
    card_path = args.onnx.parent / CARD_FILENAME
    card = load_card(card_path if card_path.is_file() else args.onnx.parent.parent / CARD_FILENAME)
    ecgs, raw = windows(card)
    result = {"command": command_line("bench_serving", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "model": f"{card.name} {card.version} ({args.onnx.relative_to(ROOT) if args.onnx.is_relative_to(ROOT) else args.onnx})",
              "device": args.device, "batch": args.batch, "seconds": args.seconds, "rounds": args.rounds,
              "threads": args.threads}
    if args.device == "cuda":
        result["gpu"] = on_gpu(card, args.onnx, ecgs, raw, args)
        stem = "serving-cuda"
    else:
        with work_dir("serving") as work:
            result["triton"] = through_triton(card, args.onnx, ecgs, raw, args, work)
        result["in_process"] = in_process(card, args.onnx, ecgs, raw, args.batch, args.seconds, args.threads)
        stem = "serving"
    result["machine"] = machine(load_before)
    save(args.out, stem, result, report(result))
    print(report(result))
    return result


if __name__ == "__main__":
    main()
