"""Throughput of the preprocessing pipeline: 10-s 12-lead 500-Hz PTB-XL strips → model input.

Single process, records read into memory first (reading is timed separately), then ``prepare``
run over them ``--repeats`` times. The per-step split comes from ``prepare(..., timings=...)``,
i.e. from the pipeline itself. Two baselines put the figure in context: reading the WFDB record
(what any consumer pays anyway) and NeuroKit2's ``ecg_quality`` on all 12 leads (the
off-the-shelf quality index this pipeline does not use).

    python -m bench.bench_preprocessing --out docs/bench/preprocessing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

import neurokit2 as nk
import numpy as np
import scipy
import wfdb

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import prepare, prepare_many

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "tests" / "data" / "ecg" / "ptbxl" / "records500"


def read_records(folder: Path, limit: int) -> tuple[list[ECG], float]:
    paths = sorted(folder.rglob("*_hr.hea"))[:limit]
    if not paths:
        raise SystemExit(f"no PTB-XL 500-Hz records (*_hr.hea) under {folder}")
    start = time.perf_counter()
    ecgs = []
    for path in paths:
        rec = wfdb.rdrecord(str(path.with_suffix("")))
        ecgs.append(ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name)))
    return ecgs, time.perf_counter() - start


def time_prepare(ecgs: list[ECG], repeats: int) -> tuple[list[float], dict[str, float], int]:
    card = default_card()
    for ecg in ecgs[:3]:  # warm caches (filter designs, imports)
        prepare(ecg, card)
    rates, steps, fit = [], {}, 0
    for _ in range(repeats):
        start = time.perf_counter()
        for ecg in ecgs:
            fit += prepare(ecg, card, timings=steps).quality.fit_to_score
        rates.append(len(ecgs) / (time.perf_counter() - start))
    return rates, steps, fit


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with PTB-XL *_hr records")
    parser.add_argument("--limit", type=int, default=500, help="at most this many records")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)

    ecgs, read_s = read_records(args.data, args.limit)
    rates, steps, fit = time_prepare(ecgs, args.repeats)
    n_windows = len(ecgs) * args.repeats
    total_step_s = sum(steps.values())
    batch_start = time.perf_counter()
    prepare_many(ecgs, default_card())
    batch_rate = len(ecgs) / (time.perf_counter() - batch_start)
    nk_quality_ms = 1e3 * time_nk_quality(ecgs, min(10, len(ecgs)))

    result = {
        "benchmark": "preprocessing",
        "command": "python -m bench.bench_preprocessing " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "data": _shown(args.data),
        "records": len(ecgs),
        "repeats": args.repeats,
        "windows_per_s": {"median": statistics.median(rates), "max": max(rates), "min": min(rates)},
        "ms_per_window": 1e3 / statistics.median(rates),
        "prepare_many_windows_per_s": batch_rate,
        "fit_fraction": fit / n_windows,
        "step_ms_per_window": {k: 1e3 * v / n_windows for k, v in steps.items()},
        "step_share": {k: v / total_step_s for k, v in steps.items()},
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
            "processor": platform.processor() or platform.machine(),
            "load_avg_1min_before": os.getloadavg()[0],
        },
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(result))
    return result


def markdown(r: dict) -> str:
    rate = r["windows_per_s"]
    nk_ms = r["baselines_ms_per_window"]["neurokit2_ecg_quality_12_leads"]
    steps = "\n".join(
        f"| {name} | {ms:.2f} | {100 * r['step_share'][name]:.0f}% |"
        for name, ms in sorted(r["step_ms_per_window"].items(), key=lambda kv: -kv[1])
    )
    m = r["machine"]
    return f"""# Preprocessing throughput

`{r['command']}`

10-s, 12-lead, 500-Hz PTB-XL strips (`{r['data']}`, {r['records']} records × {r['repeats']} repeats) →
model input `(12, 608)` with quality report, one process, one thread of Python.

| figure | value |
| --- | --- |
| windows/s (median of repeats) | **{rate['median']:.0f}** (min {rate['min']:.0f}, max {rate['max']:.0f}) |
| ms per window | {r['ms_per_window']:.2f} |
| `prepare_many` windows/s | {r['prepare_many_windows_per_s']:.0f} |
| windows fit to score | {100 * r['fit_fraction']:.1f}% |
| baseline: `wfdb.rdrecord` per record | {r['baselines_ms_per_window']['wfdb_rdrecord']:.2f} ms |
| alternative: NeuroKit2 `ecg_quality` (zhao2018) on 12 leads | {nk_ms:.1f} ms |

## Time per step

| step | ms / window | share |
| --- | --- | --- |
{steps}

Machine: Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, neurokit2 {m['neurokit2']},
{m['cpu_count']} CPUs ({m['processor']}), 1-min load average {m['load_avg_1min_before']:.2f} when started
(the machine is shared: figures are a floor).
"""


if __name__ == "__main__":
    main()
