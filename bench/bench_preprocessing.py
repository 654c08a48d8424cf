"""Throughput of the front end: 10-s 12-lead 500-Hz PTB-XL strips → model input, on one CPU core.

Records are read into memory first (reading is timed separately: what any consumer pays anyway).
In the same run: the per-window reference (``prepare_reference``: SciPy filters and
``find_peaks``, the implementation before the batched front end) and the batched front end
(``prepare_windows``) at several batch sizes on numpy, and at batch 64 on torch's CPU tensors
(the same array-API code a GPU runs; ``--gpu`` adds torch on CUDA, on the records tiled to a large
batch). The per-step split comes from the pipeline's own ``timings``; agreement between the two
implementations on the same records is reported beside the speed. The process is pinned to one
CPU core and BLAS to one thread, so "per core" means what it says.

    python -m bench.bench_preprocessing --data ../shared/data/ecg/ptbxl/records500 --out docs/bench/preprocessing
"""

import os

# One core means one BLAS thread too (set before numpy loads OpenBLAS).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import neurokit2 as nk  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402

from hfrisk.model.contract.card import default_card  # noqa: E402
from hfrisk.model.contract.ecg import ECG  # noqa: E402
from hfrisk.model.frontend.arrays import ArrayBackend  # noqa: E402
from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows  # noqa: E402
from hfrisk.model.frontend.reference import prepare_reference  # noqa: E402
from bench.ptbxl_records import DEFAULT_DATA, read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
def time_reference(ecgs: list[ECG], repeats: int) -> tuple[list[float], dict[str, float], list[ModelInput]]:
    card = default_card()
    for ecg in ecgs[:3]:  # warm caches (filter designs, imports)
        prepare_reference(ecg, card)
    rates, steps, items = [], {}, []
    for _ in range(repeats):
        start = time.perf_counter()
        items = [prepare_reference(ecg, card, timings=steps) for ecg in ecgs]
        rates.append(len(ecgs) / (time.perf_counter() - start))
    return rates, steps, items


def time_batched(
    ecgs: list[ECG], repeats: int, batch_size: int, backend: ArrayBackend
) -> tuple[list[float], dict[str, float], list[ModelInput]]:
    card = default_card()
    requests = [(ecg, 0.0) for ecg in ecgs]
    prepare_windows(requests[:batch_size], card, backend=backend, batch_size=batch_size)  # warm caches
    rates, steps, items = [], {}, []
    for _ in range(repeats):
        start = time.perf_counter()
        items = prepare_windows(requests, card, backend=backend, batch_size=batch_size, timings=steps)
        _sync(backend)
        rates.append(len(ecgs) / (time.perf_counter() - start))
    return rates, steps, items  # type: ignore[return-value]


def _sync(backend: ArrayBackend) -> None:
    if backend.name == "torch" and (backend.device or "cpu").startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def agreement(reference: list[ModelInput], batched: list[ModelInput]) -> dict:
    """How the batched front end's output compares with the reference's on the same records."""
    corr = [float(np.corrcoef(a.x.ravel(), b.x.ravel())[0, 1]) for a, b in zip(reference, batched)
            if a.lead_mask.any() and b.lead_mask.any()]
    diff_ms = [1e3 * float(np.abs(a.r_peaks_s[:, None] - b.r_peaks_s[None, :]).min(axis=1).max())
               for a, b in zip(reference, batched) if a.r_peaks_s.size and b.r_peaks_s.size]
    return {
        "records": len(reference),
        "x_correlation_median": statistics.median(corr),
        "x_correlation_min": min(corr),
        "x_correlation_below_0_99": sum(c < 0.99 for c in corr),
        "same_fit_to_score": sum(a.quality.fit_to_score == b.quality.fit_to_score for a, b in zip(reference, batched)),
        "same_beats_detected": sum(a.n_beats_detected == b.n_beats_detected for a, b in zip(reference, batched)),
        "same_beats_used": sum(a.n_beats_used == b.n_beats_used for a, b in zip(reference, batched)),
        "used_r_peak_max_offset_ms_p95": float(np.percentile(diff_ms, 95)),
        "fit_reference": sum(a.quality.fit_to_score for a in reference),
        "fit_batched": sum(b.quality.fit_to_score for b in batched),
        **score_agreement(reference, batched),
    }


def score_agreement(reference: list[ModelInput], batched: list[ModelInput]) -> dict:
    """The bundled model's log-risk from both implementations' inputs (windows both find fit)."""
    from hfrisk.serving.scorers import OnnxScorer

    both = [(a, b) for a, b in zip(reference, batched) if a.quality.fit_to_score and b.quality.fit_to_score]
    if not both:
        return {}
    scorer = OnnxScorer.from_model_dir(REPO / "triton_models", threads=1)
    ra = scorer.score(np.stack([a.x for a, _ in both]))["log_risk"][:, 0]
    rb = scorer.score(np.stack([b.x for _, b in both]))["log_risk"][:, 0]
    diff = np.abs(ra - rb)
    return {
        "log_risk_abs_diff_median": float(np.median(diff)),
        "log_risk_abs_diff_p95": float(np.percentile(diff, 95)),
        "log_risk_abs_diff_max": float(diff.max()),
        "log_risk_spread_sd": float(np.std(ra)),
        "log_risk_rank_correlation": float(np.corrcoef(np.argsort(np.argsort(ra)), np.argsort(np.argsort(rb)))[0, 1]),
    }


def time_nk_quality(ecgs: list[ECG], n: int) -> float:
    """Seconds per window for NeuroKit2's ecg_clean + ecg_quality (zhao2018) on every lead."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ecg in ecgs[:n]:
            for lead in ecg.samples:
                cleaned = nk.ecg_clean(lead, sampling_rate=int(ecg.fs_hz))
                nk.ecg_quality(cleaned, sampling_rate=int(ecg.fs_hz), method="zhao2018", approach="fuzzy")
    return (time.perf_counter() - start) / n


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (reports stay machine-independent)."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _summary(rates: list[float], steps: dict[str, float], n_windows: int) -> dict:
    return {
        "windows_per_s": {"median": statistics.median(rates), "max": max(rates), "min": min(rates)},
        "ms_per_window": 1e3 / statistics.median(rates),
        "step_ms_per_window": {k: 1e3 * v / n_windows for k, v in steps.items()},
    }


def time_gpu(ecgs: list[ECG], batch_size: int, repeats: int) -> dict | None:
    """torch on CUDA, the records tiled to ``batch_size`` windows; None without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    tiled = [ecgs[i % len(ecgs)] for i in range(batch_size)]
    backend = ArrayBackend("torch", "cuda")
    rates, steps, _ = time_batched(tiled, repeats, batch_size, backend)
    return {"device": torch.cuda.get_device_name(), "batch_size": batch_size, **_summary(rates, steps, len(tiled) * repeats)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with PTB-XL *_hr records")
    parser.add_argument("--limit", type=int, default=512, help="at most this many records")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 256])
    parser.add_argument("--gpu-batch", type=int, default=0, help="also time torch on CUDA at this batch (0: no)")
    parser.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    load_before = os.getloadavg()[0]

    ecgs, read_s = read_records(args.data, args.limit)
    n_windows = len(ecgs) * args.repeats
    ref_rates, ref_steps, ref_items = time_reference(ecgs, args.repeats)
    batched: dict[str, dict] = {}
    items64: list[ModelInput] = []
    for size in args.batch_sizes:
        rates, steps, items = time_batched(ecgs, args.repeats, size, ArrayBackend("numpy"))
        batched[str(size)] = _summary(rates, steps, n_windows)
        if size == 64 or not items64:
            items64 = items
    torch_cpu = None
    try:
        import torch

        torch.set_num_threads(1)
        rates, steps, _ = time_batched(ecgs, args.repeats, 64, ArrayBackend("torch", "cpu"))
        torch_cpu = _summary(rates, steps, n_windows)
    except ImportError:
        pass
    gpu = time_gpu(ecgs, args.gpu_batch, args.repeats) if args.gpu_batch else None
    nk_quality_ms = 1e3 * time_nk_quality(ecgs, min(10, len(ecgs)))

    reference = _summary(ref_rates, ref_steps, n_windows)
    result = {
        "benchmark": "preprocessing",
        "command": "python -m bench.bench_preprocessing " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "data": _shown(args.data),
        "records": len(ecgs),
        "repeats": args.repeats,
        "reference_per_window": reference,
        "batched_numpy": batched,
        "batched_torch_cpu_64": torch_cpu,
        "gpu": gpu,
        "speedup_at_64": (batched["64"]["windows_per_s"]["median"] / reference["windows_per_s"]["median"])
        if "64" in batched else None,
        "agreement_batch_64_vs_reference": agreement(ref_items, items64),
        "baselines_ms_per_window": {
            "wfdb_rdrecord": 1e3 * read_s / len(ecgs),
            "neurokit2_ecg_quality_12_leads": nk_quality_ms,
        },
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "neurokit2": nk.__version__,
            "cpu_count": os.cpu_count(),
            "cores_used": 1,
            "processor": platform.processor() or platform.machine(),
            "load_avg_1min_before": load_before,
        },
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(args.out.with_suffix(".md"), markdown(result))
    return result


GENERATED_START = "<!-- generated by bench/bench_preprocessing.py: start -->"
GENERATED_END = "<!-- generated by bench/bench_preprocessing.py: end -->"


def write_markdown(path: Path, generated: str) -> None:
    """Replace only the generated block of ``path``: the hand-written history below it stays."""
    block = f"{GENERATED_START}\n{generated.rstrip()}\n{GENERATED_END}\n"
    old = path.read_text() if path.exists() else ""
    if GENERATED_START in old and GENERATED_END in old:
        before, rest = old.split(GENERATED_START, 1)
        _, after = rest.split(GENERATED_END, 1)
        path.write_text(before + block + ("\n" + after.lstrip("\n") if after.strip() else ""))
    else:
        path.write_text(block + ("\n" + old if old else ""))


def markdown(r: dict) -> str:
    ref = r["reference_per_window"]
    rows = [f"| reference, per window (SciPy) | 1 | **{ref['windows_per_s']['median']:.0f}** | {ref['ms_per_window']:.2f} | 1.0x |"]
    base = ref["windows_per_s"]["median"]
    for size, b in r["batched_numpy"].items():
        rate = b["windows_per_s"]["median"]
        rows.append(f"| batched, numpy | {size} | **{rate:.0f}** | {b['ms_per_window']:.2f} | {rate / base:.1f}x |")
    if r["batched_torch_cpu_64"]:
        t = r["batched_torch_cpu_64"]
        rate = t["windows_per_s"]["median"]
        rows.append(f"| batched, torch CPU (1 thread) | 64 | {rate:.0f} | {t['ms_per_window']:.2f} | {rate / base:.1f}x |")
    if r["gpu"]:
        g = r["gpu"]
        rate = g["windows_per_s"]["median"]
        rows.append(f"| batched, torch CUDA ({g['device']}) | {g['batch_size']} | {rate:.0f} | {g['ms_per_window']:.4f} | {rate / base:.0f}x |")
    table = "\n".join(rows)
    steps64 = r["batched_numpy"].get("64", next(iter(r["batched_numpy"].values())))["step_ms_per_window"]
    names = sorted(set(ref["step_ms_per_window"]) | set(steps64), key=lambda k: -ref["step_ms_per_window"].get(k, 0.0))
    steps = "\n".join(
        f"| {name} | {ref['step_ms_per_window'].get(name, 0.0):.3f} | {steps64.get(name, 0.0):.3f} |" for name in names
    )
    a = r["agreement_batch_64_vs_reference"]
    m = r["machine"]
    gpu_line = "" if r["gpu"] else "No GPU in this run (`--gpu-batch N` times torch on CUDA when there is one).\n"
    return f"""# Front-end throughput

`{r['command']}`

10-s, 12-lead, 500-Hz PTB-XL strips (`{r['data']}`, {r['records']} records × {r['repeats']} repeats) →
model input `(12, 608)` with its quality report, on **one CPU core** (the process pinned to it, BLAS on one
thread), the reference and the batched front end in the same run.

| implementation | batch | windows/s (median) | ms / window | vs reference |
| --- | ---: | ---: | ---: | ---: |
{table}

{gpu_line}
Baselines: `wfdb.rdrecord` {r['baselines_ms_per_window']['wfdb_rdrecord']:.2f} ms per record; NeuroKit2 `ecg_quality`
(zhao2018) on 12 leads {r['baselines_ms_per_window']['neurokit2_ecg_quality_12_leads']:.1f} ms per window.

## Time per step (ms per window)

| step | reference | batched, 64 |
| --- | ---: | ---: |
{steps}

## Same records, same answers?

Batch 64 against the reference on the {a['records']} records: model input correlation median
{a['x_correlation_median']:.5f} (lowest {a['x_correlation_min']:.4f}; {a['x_correlation_below_0_99']} below 0.99);
fit to score: same verdict on {a['same_fit_to_score']} ({a['fit_reference']} fit by the reference, {a['fit_batched']}
batched); beats detected equal on {a['same_beats_detected']}, beats used equal on {a['same_beats_used']}; each used
R peak lies within {a['used_r_peak_max_offset_ms_p95']:.1f} ms of the reference's (95th percentile over records).
The bundled model's log-risk from the two inputs differs by {a.get('log_risk_abs_diff_median', float('nan')):.4f} (median),
{a.get('log_risk_abs_diff_p95', float('nan')):.4f} (95th percentile), {a.get('log_risk_abs_diff_max', float('nan')):.4f} at most, against a spread
(SD) of {a.get('log_risk_spread_sd', float('nan')):.3f} across records; rank correlation {a.get('log_risk_rank_correlation', float('nan')):.4f}.

Machine: Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, neurokit2 {m['neurokit2']},
{m['cpu_count']} CPUs ({m['processor']}), {m['cores_used']} used, 1-min load average {m['load_avg_1min_before']:.2f} when
started (the machine is shared: figures are a floor).
"""


if __name__ == "__main__":
    main()
