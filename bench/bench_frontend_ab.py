"""A/B of front-end functions against another commit's version, interleaved in one process.

On a shared machine two benchmark runs minutes apart differ by more than a change to one step of
the front end (docs/bench/preprocessing.md's reference moved 10 % between back-to-back runs). Here
the named functions of one module are swapped between the checkout's and commit ``--a-rev``'s
versions batch after batch in the same process, pinned to one core with one BLAS thread, so both
variants meet the same machine. Both must give the same model inputs and verdicts on every record
(checked before timing); the page reports CPU ms a window at each batch size, median over rounds.

    python -m bench.bench_frontend_ab --a-rev bc1185b --functions _candidates --out docs/bench/ab/x/frontend
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one core means one BLAS thread (before numpy loads OpenBLAS); not in tests
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.ptbxl_records import DEFAULT_DATA, read_records  # noqa: E402
from bench.trees import ROOT  # noqa: E402
from hfrisk.model.contract.card import default_card  # noqa: E402
from hfrisk.model.contract.errors import ECGInputError  # noqa: E402
from hfrisk.model.frontend.preprocessing import prepare_windows  # noqa: E402

# Where each package's modules live in the repository (pyproject's package-dir).
_FOLDERS = {"hfrisk.model": "model", "hfrisk.stream": "stream", "hfrisk.training": "training", "hfrisk": "hfrisk"}


def module_at(rev: str, name: str) -> types.ModuleType:
    """Module ``name`` as it was at commit ``rev``: its own globals, importing the checkout's others."""
    package = next(p for p in _FOLDERS if name == p or name.startswith(p + "."))
    path = Path(_FOLDERS[package], *name[len(package) + 1 :].split(".")).with_suffix(".py")
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path.as_posix()}"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"{name}@{rev}")
    module.__dict__["__name__"] = module.__name__
    sys.modules[module.__name__] = module  # dataclasses look their module up by name
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def _outputs(items) -> list:
    return [("error", str(i)) if isinstance(i, ECGInputError)
            else (i.x, i.lead_mask, i.quality.fit_to_score, tuple(i.quality.reasons), i.n_beats_used) for i in items]


def _same(a: list, b: list) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x[0], str) or isinstance(y[0], str):  # refused: the same error
            if not (isinstance(x[0], str) and isinstance(y[0], str) and x == y):
                return False
        elif not (np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and x[2:] == y[2:]):
            return False
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-rev", required=True, help="variant a: this commit's version of the functions")
    parser.add_argument("--module", default="hfrisk.model.frontend.detection")
    parser.add_argument("--functions", nargs="+", required=True, help="names swapped between the variants")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with PTB-XL *_hr records")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 32])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)
    live = importlib.import_module(args.module)
    variants = {"a": {f: getattr(module_at(args.a_rev, args.module), f) for f in args.functions},
                "b": {f: getattr(live, f) for f in args.functions}}
    card = default_card()
    ecgs, _ = read_records(args.data, args.limit)

    def run(variant: str, size: int) -> tuple[float, list]:
        for name, fn in variants[variant].items():
            setattr(live, name, fn)
        items, start = [], time.process_time()
        for first in range(0, len(ecgs), size):
            items += prepare_windows([(e, 0.0) for e in ecgs[first : first + size]], card, batch_size=size)
        return (time.process_time() - start) / len(ecgs) * 1e3, items

    load_before = os.getloadavg()[0]
    ms: dict[int, dict[str, list[float]]] = {s: {"a": [], "b": []} for s in args.batch_sizes}
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    try:
        if cores:
            os.sched_setaffinity(0, {sorted(cores)[-1]})
        same = {size: _same(_outputs(run("a", size)[1]), _outputs(run("b", size)[1])) for size in args.batch_sizes}
        if not all(same.values()):
            raise SystemExit(f"the variants prepare different inputs: {same}")
        for round_ in range(args.rounds):
            for size in args.batch_sizes:
                for variant in ("ab" if round_ % 2 == 0 else "ba"):
                    ms[size][variant].append(run(variant, size)[0])
            print(json.dumps({"round": round_ + 1, "of": args.rounds}), file=sys.stderr, flush=True)
    finally:
        for name, fn in variants["b"].items():
            setattr(live, name, fn)
        if cores:
            os.sched_setaffinity(0, cores)
    rows = []
    for size in args.batch_sizes:
        a, b = statistics.median(ms[size]["a"]), statistics.median(ms[size]["b"])
        ratios = sorted(y / x for x, y in zip(ms[size]["a"], ms[size]["b"]))
        rows.append({"batch": size, "a_ms": a, "b_ms": b, "b_over_a": b / a,
                     "b_over_a_range": [ratios[0], ratios[-1]], "rounds": ms[size]})
    result = {
        "benchmark": "frontend_ab",
        "command": "python -m bench.bench_frontend_ab " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "a_rev": args.a_rev, "module": args.module, "functions": args.functions,
        "records": len(ecgs), "same_inputs": True, "rows": rows,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0],
                    "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(report(result))
    print(json.dumps({r["batch"]: round(r["b_over_a"], 3) for r in rows}))
    return result


def report(result: dict) -> str:
    lines = [
        f"# Front end A/B: `{result['module']}`, {', '.join(f'`{f}`' for f in result['functions'])}",
        "",
        f"`{result['command']}`  ",
        f"When: {result['machine']['when_utc']} UTC; {result['machine']['cpus']} CPUs, one used (pinned, one BLAS "
        f"thread); 1-min load average {result['machine']['load_avg_1min_before']:.2f} before, "
        f"{result['machine']['load_avg_1min_after']:.2f} after.",
        "",
        f"Variant a: the functions as at `{result['a_rev']}`; b: the checkout's. Swapped batch after batch in one "
        f"process over {result['records']} PTB-XL 500-Hz records; rounds alternate which goes first. Both gave the "
        "same model inputs, lead masks, verdicts, reasons and beats used on every record at every batch size "
        "(checked before timing).",
        "",
        "| batch | a (CPU ms a window) | b (CPU ms a window) | b / a (median) | b / a, range over rounds |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        lo, hi = r["b_over_a_range"]
        lines.append(f"| {r['batch']} | {r['a_ms']:.3f} | {r['b_ms']:.3f} | **{r['b_over_a']:.3f}** | {lo:.3f}–{hi:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
