"""Reading WFDB records into ECGs: CPU per record of ``read_ecg``, this checkout against another
commit and ``wfdb.rdrecord``, with every sample checked against wfdb's.

    .venv/bin/python -m bench.bench_reading [--records DIR] [--baseline REV] [--repeats 5] [--out docs/bench]

Screening on a GPU host is bound by reading (docs/bench/screening.md): with the front end on the GPU
each host core reads records and runs the front end's host-side Python, so the reader's CPU per
record sets how many ECGs a second 16 cores can feed the network. The baseline commit is extracted
with ``git archive`` and run in its own process, alternately with the checkout (``--repeats``
rounds, each reading every record ``--passes`` times; medians). ``wfdb.rdrecord`` (which
``read_ecg`` replaces for format-16 records) is timed on the same records as the library's own rate.

Validation: every record read by the checkout is compared with ``wfdb.rdrecord``'s physical samples
converted to float32 millivolts the way ``read_wfdb`` converts wfdb's output for other formats
(``rows_to_millivolts``), bit for bit, NaN included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from bench.trees import ROOT, child_json, extract, use_tree

DEFAULT_BASELINE = "2547135"  # the reader before digital_to_millivolts and the one-read .dat path
HOST_PYTHON_MS = 0.32  # per window, with the front end on the GPU (docs/bench/sizing.md)
GPU_HOST_CORES = 16
GOAL_ECG_PER_S = 20_000.0


def _records(folder: Path) -> list[Path]:
    from hfrisk.model.readers.dispatch import iter_records

    return list(iter_records([folder]))


def run_child(folder: Path, passes: int, reader: str) -> dict:
    """CPU ms per record of each pass over every record, in this process (``reader``: ``read_ecg``
    of whichever hfrisk this process imports, or ``wfdb`` for ``wfdb.rdrecord``), and which
    ``read_ecg`` that was."""
    from hfrisk.model.frontend.arrays import one_blas_thread
    from hfrisk.model.readers import wfdb_io
    from hfrisk.model.readers.dispatch import read_ecg

    one_blas_thread()
    paths = _records(folder)
    if reader == "wfdb":
        import wfdb

        names = [str(p.with_suffix("")) for p in paths]
        read = lambda i: wfdb.rdrecord(names[i])  # noqa: E731
    else:
        read = lambda i: read_ecg(paths[i])  # noqa: E731
    ms = []
    for _ in range(passes):
        t0 = time.process_time()
        for i in range(len(paths)):
            read(i)
        ms.append(1e3 * (time.process_time() - t0) / len(paths))
    return {"records": len(paths), "ms_per_record": ms, "reader_file": wfdb_io.__file__}


def child(folder: Path, passes: int, reader: str, tree: str | None) -> dict:
    args = ["--child", "--records", str(folder), "--passes", str(passes), "--reader", reader]
    if tree:
        args += ["--tree", tree]
    return child_json("bench.bench_reading", args)


def validate(folder: Path) -> dict:
    """Every record as ``read_ecg`` reads it against ``wfdb.rdrecord`` converted to float32 mV."""
    import numpy as np
    import wfdb

    from hfrisk.model.contract.ecg import rows_to_millivolts
    from hfrisk.model.readers.dispatch import read_ecg

    checked, differing = 0, []
    for path in _records(folder):
        ecg = read_ecg(path)
        ref = wfdb.rdrecord(str(path.with_suffix("")))
        want = rows_to_millivolts(ref.p_signal.T, ref.units)
        same = (ecg.samples.shape == want.shape and ecg.lead_names == tuple(ref.sig_name)
                and np.array_equal(ecg.samples.view(np.uint32), want.view(np.uint32)))
        checked += 1
        if not same:
            differing.append(path.name)
    return {"records": checked, "differing": differing}


def markdown(r: dict) -> str:
    med, v = r["median_ms_per_record"], r["validation"]
    cur, base, lib = med["current"], med["baseline"], med["wfdb"]
    gpu = lambda ms: GPU_HOST_CORES * 1e3 / (ms + HOST_PYTHON_MS)  # noqa: E731
    runs = "\n".join(f"| {name} | {', '.join(f'{x:.3f}' for x in r['runs_ms'][name])} | **{med[name]:.3f}** |"
                     for name in ("baseline", "current", "wfdb"))
    return "\n".join([
        "# Reading WFDB records (issue #15: screening on a GPU host is bound by reading)",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_before']} before, "
        f"{r['machine']['load_after']} after.  ",
        f"Records: {r['records']} ({r['records_dir']}), each read {r['passes']} times a run; {r['repeats']} runs of "
        f"each, alternating; CPU time of one process, one BLAS thread. Baseline: commit `{r['baseline_rev'][:12]}` "
        f"(extracted, its own process); current: `{r['current_rev'][:12]}`{' with uncommitted changes' if r['dirty'] else ''}.",
        "",
        "| reader | ms per record, each run (median of its passes) | median |",
        "| --- | --- | ---: |",
        runs,
        "",
        f"The checkout reads a record in **{cur:.3f} ms**, {base / cur:.2f}x less CPU than the baseline "
        f"({base:.3f} ms) and {lib / cur:.1f}x less than `wfdb.rdrecord` ({lib:.3f} ms, which returns float64 "
        "samples and parses headers with pandas lookups).",
        "",
        f"**Validation:** {v['records']} records read by the checkout, compared with `wfdb.rdrecord`'s samples "
        "converted to float32 mV: "
        + ("every sample equal, bit for bit." if not v["differing"] else
           f"**{len(v['differing'])} differ**: {', '.join(v['differing'][:10])}."),
        "",
        f"What it means for a {GPU_HOST_CORES}-core GPU host with the front end on the GPU (estimate: "
        f"{GPU_HOST_CORES} cores / (read + {HOST_PYTHON_MS} ms of host Python per window), network not the bound): "
        f"baseline {gpu(base):,.0f} ECG/s, current **{gpu(cur):,.0f} ECG/s** against issue #15's "
        f"{GOAL_ECG_PER_S:,.0f}; the goal needs reading under "
        f"{GPU_HOST_CORES * 1e3 / GOAL_ECG_PER_S - HOST_PYTHON_MS:.2f} ms per record.",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=None, help="default: PTB-XL records500 of the reference data")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reader", default="read_ecg", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child and args.tree:
        use_tree(args.tree)  # before anything imports hfrisk: bench.references does
    from bench.references.root import data_root

    folder = args.records or data_root() / "ptbxl" / "records500"
    if args.child:
        print(json.dumps(run_child(folder, args.passes, args.reader)))
        return

    load_before = load_average()
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    runs: dict[str, list[float]] = {"baseline": [], "current": [], "wfdb": []}
    with tempfile.TemporaryDirectory(prefix="bench-reading-") as tmp:
        tree = str(extract(args.baseline, Path(tmp) / "baseline"))
        for repeat in range(args.repeats):
            for name, where, reader in (("baseline", tree, "read_ecg"), ("current", None, "read_ecg"),
                                        ("wfdb", None, "wfdb")):
                if name == "wfdb" and repeat >= 2:
                    continue  # ~10x slower and only a reference: two runs are enough
                run = child(folder, args.passes, reader, where)
                if (where is None) == run["reader_file"].startswith(tree):
                    raise RuntimeError(f"{name} read with {run['reader_file']}, not its own tree")
                runs[name].append(statistics.median(run["ms_per_record"]))
                print(f"[{repeat}] {name:8s} {runs[name][-1]:.3f} ms/record", file=sys.stderr, flush=True)
                records = run["records"]
    result = {
        "command": command_line("bench_reading", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(load_before),
        "records_dir": str(folder.relative_to(data_root())) if folder.is_relative_to(data_root()) else folder.name,
        "records": records,
        "passes": args.passes,
        "repeats": args.repeats,
        "baseline_rev": git("rev-parse", args.baseline),
        "current_rev": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "model", "hfrisk")),
        "runs_ms": runs,
        "median_ms_per_record": {k: statistics.median(v) for k, v in runs.items()},
        "validation": validate(folder),
    }
    text = markdown(result)
    if args.out:
        save(args.out, "reading", result, text)
    print(text)


if __name__ == "__main__":
    main()
