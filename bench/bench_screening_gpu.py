"""Screening on a GPU host, measured: ``screen()`` in process, the front end and the network on the device.

    python3 -m bench.bench_screening_gpu --device cuda [--records 200000] [--workers N] [--chunk-size 256]
    .venv/bin/python -m bench.bench_screening_gpu --device cpu --records 480 --chunk-size 32   # the code path, here

Issue #15 asks for >= 20,000 ECG/s of in-process screening on a 16-core GPU host. ``bench_screening``
estimates it from this machine's per-record costs; this measures it where a GPU is lent
(``scripts/gpu_check.sh run``), in one call:

1. **The run**: :func:`hfrisk.screening.screen` over ``--records`` recordings, linked copies of the
   PTB-XL records in ``tests/data`` (each copy a recording of its own), with one pool process per
   core (``--workers``), ``--chunk-size`` recordings a task, the front end on the device
   (``HFRISK_FRONTEND__ARRAY_BACKEND=torch``, ``__DEVICE``, ``__BATCH_SIZE`` = the chunk) and each
   pool process scoring what it prepared on the device. ECG/s of the whole call, and *steady*: the
   slope of ``records.csv`` between a tenth and nine tenths of the recordings, the pool's start
   (spawned processes, CUDA contexts) left out. CPU per recording of the pool and of the calling
   process.
2. **Where a pool core's time goes** (in this process, one chunk at a time): reading a recording
   (CPU), the front end on the device (wall and this process's CPU: the host Python that stays on
   the CPU, which ``bench_screening``'s estimate takes as 0.32 ms a window; an upper bound, since
   it also holds any time the CUDA driver spins while the host waits for the device), the network
   (wall and CPU), and the cores' bound from them.

The network: ONNX Runtime's CUDA provider on the shipped model where onnxruntime-gpu is installed
(what ``hfrisk screen --in-process --device cuda`` runs); otherwise torch eager (fp32, untrained
weights, seed 0: the served graph's compute, as ``bench_serving --device cuda`` times it), which
the GPU image lent here has (its onnxruntime is the CPU build). ``--network`` picks one.

Results: ``<out>/screening-gpu.json`` and ``.md``. ``--device cpu`` runs the same code on torch's
CPU (tests/bench/test_bench_screening_gpu.py does, small): a code check, not a measurement of a
GPU host.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.bench_screening import GPU_HOST_GOAL, SHIPPED_MODEL, _shown, linked_copies
from bench.record import command_line, load_average, save

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500"
# The steady rate: between these shares of the recordings written (start-up and the last chunks out).
STEADY_FROM, STEADY_TO = 0.1, 0.9
STAGE_PASSES = 3


@dataclass
class TorchNetworkScorer:
    """The served network in torch eager on ``device``: a :class:`~hfrisk.screening.SyncScorer` that
    replicates into the pool's processes. Untrained weights (``seed``): the compute of the shipped
    graph, not its scores."""

    card: object
    device: str
    seed: int = 0
    network: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import torch

        from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule

        torch.manual_seed(self.seed)
        self.network = ServingModule(HFRiskNet.from_card(self.card).eval()).to(self.device)

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            outputs = self.network(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
            return {spec.name: out.cpu().numpy() for spec, out in zip(self.card.outputs, outputs)}

    def replica(self):
        return functools.partial(TorchNetworkScorer, self.card, self.device, self.seed)


def make_scorer(network: str, device: str, card):
    """``(scorer, what it is)`` for ``--network``: ``onnx`` (the shipped graph in ONNX Runtime on
    ``device``), ``torch``, or ``auto`` (ONNX Runtime where it can run on ``device``)."""
    from hfrisk.serving.scorers import DeviceUnavailable, OnnxScorer, find_model_version

    if network in ("onnx", "auto"):
        try:
            scorer = OnnxScorer(find_model_version(SHIPPED_MODEL) / "model.onnx", card, threads=1,
                                replicable=True, device=device)
            return scorer, f"ONNX Runtime ({', '.join(scorer.session.get_providers())}), the shipped model"
        except DeviceUnavailable as err:
            if network == "onnx":
                raise
            print(f"ONNX Runtime cannot run on {device}: torch eager instead ({err})", file=sys.stderr)
    return TorchNetworkScorer(card, device), f"torch eager fp32 on {device} (untrained weights, seed 0)"


def device_name(device: str) -> str:
    """What the page calls ``device``: the GPU's name, or torch's CPU."""
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU (torch)"


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class RecordsWatch:
    """Counts the lines of a growing ``records.csv`` (one a recording, after its header) every
    ``every_s``, reading only what was appended: ``samples`` is ``[(seconds, recordings)]``."""

    def __init__(self, path: Path, every_s: float = 0.05) -> None:
        self.path, self.every_s = path, every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RecordsWatch":
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _run(self) -> None:
        offset, lines = 0, -1  # the header is not a recording
        while not self._stop.wait(self.every_s):
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    appended = f.read()
            except FileNotFoundError:
                continue
            offset += len(appended)
            lines += appended.count(b"\n")
            if lines > 0 and (not self.samples or lines != self.samples[-1][1]):
                self.samples.append((time.perf_counter() - self.started, lines))


def steady_rate(samples: list[tuple[float, int]], n: int) -> float | None:
    """Recordings a second between the first sample past ``STEADY_FROM`` of ``n`` and the last one
    before ``STEADY_TO``; None when fewer than two samples fall there (a run too short to tell)."""
    inside = [(t, k) for t, k in samples if STEADY_FROM * n <= k <= STEADY_TO * n]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def screening_run(folder: Path, scorer, n: int, workers: int, chunk_size: int) -> dict:
    """One ``screen()`` call over ``folder``'s ``n`` recordings, every pool process scoring."""
    from hfrisk.screening import read_records, screen

    with tempfile.TemporaryDirectory(prefix="bench-screen-gpu-") as out:
        watch = RecordsWatch(Path(out) / "records.csv").start()
        own, children, start = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
        screen([folder], scorer, out, threshold=0.0, batch_size=chunk_size, resume=False, progress=False,
               workers=workers, chunk_size=chunk_size, score_in_pool=True, read_back=False)
        wall = time.perf_counter() - start
        own, children = _cpu_s(resource.RUSAGE_SELF) - own, _cpu_s(resource.RUSAGE_CHILDREN) - children
        samples = watch.stop()
        records = read_records(Path(out) / "records.csv")
    if len(records) != n:
        raise RuntimeError(f"screening wrote {len(records)} recordings of {n}")
    statuses = records["status"].value_counts().to_dict() if "status" in records else {}
    steady = steady_rate(samples, n)
    return {"records": n, "workers": workers, "chunk_size": chunk_size, "wall_s": wall,
            "ecg_per_s": n / wall, "steady_ecg_per_s": steady,
            "pool_cpu_ms_per_ecg": 1e3 * children / n, "caller_cpu_ms_per_ecg": 1e3 * own / n,
            "cores_busy": (own + children) / wall, "statuses": {str(k): int(v) for k, v in statuses.items()},
            "samples": [(round(t, 3), k) for t, k in samples]}


def _timed(step, passes: int = STAGE_PASSES) -> tuple[float, float]:
    """Median (wall s, this process's CPU s) of ``passes`` calls of ``step``, after one untimed."""
    step()
    walls, cpus = [], []
    for _ in range(passes):
        cpu, start = time.process_time(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def pool_core_stages(paths: list[str], scorer, card, chunk_size: int) -> dict:
    """ms a recording of what each pool process does, one chunk at a time in this process: read
    (CPU), the front end on its device and the network (wall, and the CPU this process spent:
    on a GPU, what stays on the host)."""
    from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows
    from hfrisk.model.readers.dispatch import read_ecg

    chunk = [paths[i % len(paths)] for i in range(chunk_size)]
    ecgs = [read_ecg(p) for p in chunk]
    requests = [(ecg, 0.0) for ecg in ecgs]
    read_wall, read_cpu = _timed(lambda: [read_ecg(p) for p in chunk])
    prepared = prepare_windows(requests, card)
    x = np.stack([item.x for item in prepared if isinstance(item, ModelInput)])
    front_wall, front_cpu = _timed(lambda: prepare_windows(requests, card))
    net_wall, net_cpu = _timed(lambda: scorer.score(x))
    per = 1e3 / chunk_size
    stages = {"read_cpu_ms": read_cpu * per, "read_wall_ms": read_wall * per,
              "frontend_wall_ms": front_wall * per, "frontend_cpu_ms": front_cpu * per,
              "network_wall_ms": net_wall * per, "network_cpu_ms": net_cpu * per,
              "windows_fit": len(x), "chunk_size": chunk_size}
    stages["host_cpu_ms"] = stages["read_cpu_ms"] + stages["frontend_cpu_ms"] + stages["network_cpu_ms"]
    return stages


def markdown(r: dict) -> str:
    run, st = r["run"], r["stages"]
    cores = r["workers"]
    steady = run["steady_ecg_per_s"]
    on_gpu = r["device"] != "cpu"
    lines = [
        "# Screening on a GPU host: `screen()` in process, the front end and the network on the device",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs ({r['machine']['processor']}), load average "
        f"{r['machine']['load_before']} before, {r['machine']['load_after']} after; device: **{r['device_name']}**.  ",
        f"torch {r['versions']['torch']}, onnxruntime {r['versions']['onnxruntime']}, python {r['versions']['python']}. "
        f"Network: {r['network']}. Front end: torch on `{r['device']}`, batches of {run['chunk_size']} windows.",
        "",
        f"Recordings: {run['records']:,} linked copies of the {r['source_records']} PTB-XL 500 Hz records under "
        f"`{r['source']}` (each copy a recording of its own; their files stay in the page cache, as on the "
        f"2-core machine's benchmarks); {run['workers']} pool processes ({r['pool_start']}ed), each reading, preparing "
        f"and scoring "
        f"chunks of {run['chunk_size']}. Statuses: {run['statuses']}.",
        "",
        "## The run",
        "",
        "| what | value |",
        "| --- | ---: |",
        f"| ECG/s, the whole `screen()` call ({run['wall_s']:.1f} s, the pool's start included) | {run['ecg_per_s']:,.0f} |",
        f"| **ECG/s, steady** (records.csv between {STEADY_FROM:.0%} and {STEADY_TO:.0%} of the recordings) | "
        f"**{'–' if steady is None else f'{steady:,.0f}'}** |",
        f"| CPU of the pool a recording (ms, all its processes) | {run['pool_cpu_ms_per_ecg']:.3f} |",
        f"| CPU of the calling process a recording (ms) | {run['caller_cpu_ms_per_ecg']:.4f} |",
        f"| cores busy over the call | {run['cores_busy']:.1f} of {r['machine']['cpus']} |",
        "",
        f"## Where a pool core's time goes (one process, chunks of {st['chunk_size']}, ms a recording)",
        "",
        "| stage | wall | CPU of this process |",
        "| --- | ---: | ---: |",
        f"| reading the WFDB files | {st['read_wall_ms']:.3f} | {st['read_cpu_ms']:.3f} |",
        f"| front end on `{r['device']}` | {st['frontend_wall_ms']:.3f} | {st['frontend_cpu_ms']:.3f} |",
        f"| network | {st['network_wall_ms']:.3f} | {st['network_cpu_ms']:.3f} |",
        "",
        f"The host's CPU a recording, {st['host_cpu_ms']:.3f} ms, bounds {cores} cores at "
        f"**{r['cores_bound_ecg_per_s']:,.0f} ECG/s**"
        + (f" (`bench_screening` estimated the front end's host share as 0.32 ms a window; measured here: "
           f"{st['frontend_cpu_ms']:.3f}, an upper bound: the CPU time holds any spinning while the host waits "
           "for the device)." if on_gpu else "."),
        "",
    ]
    if on_gpu:
        rate = steady if steady is not None else run["ecg_per_s"]
        met = rate >= GPU_HOST_GOAL
        lines.append(f"**Issue #15 (>= {GPU_HOST_GOAL:,.0f} ECG/s of in-process screening on a 16-core GPU host): "
                     f"{rate:,.0f} ECG/s {'steady' if steady is not None else 'over the whole call'}, "
                     f"{'met' if met else 'NOT met'}** on this {r['machine']['cpus']}-core host with {cores} pool "
                     f"processes.")
    else:
        lines.append("**Not a GPU host**: the code path on torch's CPU, to check it before a GPU's few minutes; its "
                     "figures say nothing about the goal.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device of the front end and the network")
    parser.add_argument("--network", choices=("auto", "onnx", "torch"), default="auto")
    parser.add_argument("--records", type=int, default=200_000, help="recordings screened in the run")
    parser.add_argument("--source", type=Path, default=SOURCE, help="WFDB records the run's recordings link to")
    parser.add_argument("--workers", type=int, default=None, help="pool processes (default: one per CPU)")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args(argv)

    # Before hfrisk reads its settings: the spawned pool processes inherit them too.
    os.environ.update({"HFRISK_FRONTEND__ARRAY_BACKEND": "torch", "HFRISK_FRONTEND__DEVICE": args.device,
                       "HFRISK_FRONTEND__BATCH_SIZE": str(args.chunk_size)})
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    import onnxruntime
    import torch

    from hfrisk.core.config import get_settings
    from hfrisk.model.contract.card import load_card
    from hfrisk.model.readers.dispatch import record_paths
    from hfrisk.screening import default_workers, pool_start_method
    from hfrisk.serving.scorers import find_model_version

    get_settings.cache_clear()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"torch sees no CUDA device for --device {args.device}")
    load_before = load_average()
    card = load_card(find_model_version(SHIPPED_MODEL).parent / "model_card.json")
    scorer, network = make_scorer(args.network, args.device, card)
    workers = default_workers() if args.workers is None else args.workers
    sources = list(record_paths([args.source]))
    with tempfile.TemporaryDirectory(prefix="bench-screen-gpu-records-") as tmp:
        copies = -(-args.records // len(sources))
        folder = linked_copies(args.source, [Path(p) for p in sources], Path(tmp) / "records", copies)
        # Exactly --records: the last copy's surplus is removed (its header and signal files).
        surplus = copies * len(sources) - args.records
        for path in list(record_paths([folder / f"copy{copies - 1}"]))[:surplus]:
            for part in Path(path).parent.glob(f"{Path(path).stem}.*"):
                part.unlink()
        print(f"{args.records:,} recordings linked; screening with {workers} pool processes ...", file=sys.stderr,
              flush=True)
        run = screening_run(folder, scorer, args.records, workers, args.chunk_size)
    print({k: v for k, v in run.items() if k != "samples"}, file=sys.stderr, flush=True)
    # After the run: a forked pool (the front end on torch's CPU) hangs in torch's thread pool once
    # this process has computed with it.
    print(f"stages in this process, chunks of {args.chunk_size} ...", file=sys.stderr, flush=True)
    stages = pool_core_stages(sources, scorer, card, args.chunk_size)
    print(stages, file=sys.stderr, flush=True)
    result = {
        "command": command_line("bench_screening_gpu", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "load_before": load_before,
                    "load_after": load_average()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "python": platform.python_version()},
        "device": args.device,
        "device_name": device_name(args.device), "network": network, "source": _shown(args.source),
        "source_records": len(sources), "workers": workers,
        "pool_start": pool_start_method(scorer_on_gpu=getattr(scorer, "device", "cpu") != "cpu"), "stages": stages,
        "cores_bound_ecg_per_s": workers * 1e3 / stages["host_cpu_ms"], "run": run,
        "goal_ecg_per_s": GPU_HOST_GOAL,
    }
    save(args.out, "screening-gpu", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
