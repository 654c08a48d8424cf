"""The CPU that `hfrisk screen`'s calling process spends per recording, against a baseline commit.

    .venv/bin/python -m bench.bench_screening_caller [--baseline REV] [--copies 6] [--chunk-sizes 8 256]
        [--repeats 2] [--out docs/bench]

With a pool process per core that scores what it prepared (the default of ``--in-process``, and on a
GPU host each process scoring on the GPU), the calling process only lists the recordings, takes each
one's rows from the pool and writes them, and summarises the run. That is one process whatever the
pool's size, so its CPU per recording bounds a host with many cores: 1,000 / its ms is the most
ECG/s any pool can reach (docs/bench/screening.md, "A 16-core GPU host").

Each run is :func:`hfrisk.screening.screen` in a fresh process, on ``--copies`` linked copies of the
500 PTB-XL 500-Hz records of the reference data (``bench_screening.linked_copies``), with the scorer
``hfrisk screen --in-process`` builds and its default pool, ``score_in_pool=True``; reported: the
calling process's CPU (``time.process_time``: all its threads, not its pool's processes) per
recording, the same for listing the recordings alone (``iter_records``), and ECG/s. The baseline is
another commit's code (``bench.trees``), run alternately with this checkout, ``--repeats`` times per
chunk size; medians. Results: ``<out>/screening-caller.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from bench.trees import ROOT, child_json, extract, git, use_tree

# The commit before the calling process's per-recording work was cut (2026-12-07 evening).
DEFAULT_BASELINE = "3037bb5"


def run_child(records: Path, n_records: int, chunk_size: int) -> dict:
    from hfrisk.cli.screening import _in_process_scorer
    from hfrisk.core.allocator import keep_freed_memory
    from hfrisk.core.config import get_settings
    from hfrisk.model.readers.dispatch import iter_records
    from hfrisk.screening import default_workers, screen, screening_threads

    keep_freed_memory(get_settings().screening.keep_freed_mb)  # as `hfrisk screen` does
    workers = default_workers()
    scorer = _in_process_scorer(ROOT / "triton_models", "hfrisk", untrained=False,
                                threads=screening_threads(workers), replicable=True)
    listing = time.process_time()
    listed = len(list(iter_records([records])))
    listing = time.process_time() - listing
    # As `hfrisk screen` calls it: where the CLI reads scores.csv itself, screen() does not read it back.
    reads_itself = "read_back" in inspect.signature(screen).parameters
    with tempfile.TemporaryDirectory(prefix="bench-screen-caller-") as out:
        cpu, pool, start = time.process_time(), _children_cpu_s(), time.perf_counter()
        frame = screen([records], scorer, out, threshold=0.0, batch_size=32, resume=False, progress=False,
                       workers=workers, chunk_size=chunk_size, score_in_pool=True,
                       **({"read_back": False} if reads_itself else {}))
        cpu, pool, wall = time.process_time() - cpu, _children_cpu_s() - pool, time.perf_counter() - start
        files, tail, listed_first, rows = _tail_s(frame, Path(out), scorer.card.risk_scale)
        marginal = _tail_per_recording_ms(Path(out)) if frame is None else None
    if rows != n_records or listed != n_records:
        raise RuntimeError(f"screened {rows} and listed {listed} of {n_records} records")
    per = lambda s: 1e3 * s / n_records  # noqa: E731
    return {"caller_ms_per_ecg": per(cpu), "listing_ms_per_ecg": per(listing), "cli_files_ms_per_ecg": per(files),
            "total_ms_per_ecg": per(cpu + files),
            "serial_ms_per_ecg": per((listing if listed_first else 0.0) + tail + files),
            "pool_ms_per_ecg": per(pool), "ecg_per_s": n_records / wall, "tail_ms_per_added_ecg": marginal}


def _tail_per_recording_ms(out: Path, times: int = 20, pairs: int = 3) -> float:
    """What a recording adds to the CLI's tail (``write_outputs``), in CPU ms: the tail on this run's
    files and on those rows ``times`` over (the recordings renamed), alternately ``pairs`` times after
    the run's own call has imported and drawn once; the median of the pairs' differences. The
    difference of two whole runs of unequal size cannot show it: their tails' ~1.5 s of fixed cost
    (matplotlib's import and drawing) varies by more than the thousand recordings between them add;
    ten times over and two pairs still read -0.003 to 0.009 ms on a loaded machine."""
    import hfrisk.cli.screening as cli
    from hfrisk.screening import RECORDS_FILENAME, SCORES_FILENAME

    many = out / "many"
    many.mkdir()
    for name in (SCORES_FILENAME, RECORDS_FILENAME):
        header, *rows = (out / name).read_text().splitlines(keepends=True)
        (many / name).write_text(header + "".join(f"{k}{row}" for k in range(times) for row in rows))
    n = len((out / SCORES_FILENAME).read_text().splitlines()) - 1

    def tail_s(folder: Path) -> float:
        start = time.process_time()
        cli.write_outputs(folder)
        return time.process_time() - start

    tail_s(out)  # once more: what the first calls of a process still pay
    differences = [tail_s(many) - tail_s(out) for _ in range(pairs)]
    return 1e3 * statistics.median(differences) / ((times - 1) * n)


def _tail_s(frame, out: Path, risk_scale) -> tuple[float, float, bool, int]:
    """What the pool's processes wait for at the end of a run, in CPU seconds: the CLI's work after
    ``screen()`` returns (``write_outputs``: reading the two files with Arrow, their Parquet copies,
    the summary picture), and ``screen()``'s own after its last chunk, timed once more; whether that
    code listed every recording before its pool started; and the rows written. The code before
    2026-12-07 night read scores.csv back in ``screen()``, summarised every row there and wrote
    records.csv, and its CLI read records.csv with pandas and wrote the files from the frames: its
    steps are rebuilt here as it ran them."""
    import pandas as pd

    import hfrisk.cli.screening as cli
    from hfrisk.screening import read_scores

    start = time.process_time()
    if frame is None:
        frame, _ = cli.write_outputs(out)
        return time.process_time() - start, 0.0, False, len(frame)
    from hfrisk.screening import summarize_records, write_summary

    frame = read_scores(out / "scores.csv")
    summarize_records(frame, 0.0, risk_scale).to_csv(out / "records.csv", index=False)
    tail = time.process_time() - start
    records = pd.read_csv(out / "records.csv")
    frame.to_parquet(out / "scores.parquet", index=False)
    records.to_parquet(out / "records.parquet", index=False)
    write_summary(frame, out / "summary.png")
    return time.process_time() - start - tail, tail, True, len(frame)


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children: the pool's processes, once joined."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[8, 256])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # records, n, chunk size
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.tree:
            use_tree(args.tree)
        records, n, chunk = args.child
        print(json.dumps(run_child(Path(records), int(n), int(chunk))))
        return

    from bench.bench_screening import linked_copies
    from bench.references import data_root
    from hfrisk.model.readers.dispatch import iter_records

    load_before = load_average()
    source = data_root() / "ptbxl" / "records500"
    paths = list(iter_records([source]))
    runs: dict[str, dict[int, list[dict]]] = {"baseline": {}, "current": {}}
    with tempfile.TemporaryDirectory(prefix="bench-screen-caller-") as tmp:
        tree = extract(args.baseline, Path(tmp) / "baseline")
        batch = linked_copies(source, paths, Path(tmp) / "batch", args.copies)
        n = len(paths) * args.copies
        for repeat in range(args.repeats):
            for chunk in args.chunk_sizes:
                for name, where in (("baseline", str(tree)), ("current", None)):
                    child = ["--child", str(batch), str(n), str(chunk)] + (["--tree", where] if where else [])
                    run = child_json("bench.bench_screening_caller", child)
                    runs[name].setdefault(chunk, []).append(run)
                    print(f"[{repeat}] chunk {chunk:4d} {name:8s} caller {run['caller_ms_per_ecg']:.3f} ms/ECG, "
                          f"listing {run['listing_ms_per_ecg']:.3f}, {run['ecg_per_s']:.0f} ECG/s",
                          file=sys.stderr, flush=True)
    median = {name: {chunk: {k: _median(r[k] for r in rs) for k in rs[0]} for chunk, rs in by.items()}
              for name, by in runs.items()}
    result = {
        "command": command_line("bench_screening_caller", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(load_before),
        "baseline_rev": git("rev-parse", args.baseline), "current_rev": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "hfrisk", "model", "stream")),
        "records": n, "runs": runs, "median": median,
    }
    text = markdown(result)
    if args.out:
        save(args.out, "screening-caller", result, text)
    print(text)


def _median(values) -> float | None:
    known = [v for v in values if v is not None]  # None: not measured for that code
    return statistics.median(known) if known else None


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Screening: the calling process's CPU per recording",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {m['cpus']} CPUs, load average {m['load_before']} before, {m['load_after']} "
        f"after.  ",
        f"Baseline: commit `{r['baseline_rev'][:12]}`; current: `{r['current_rev'][:12]}`"
        + (" with uncommitted changes" if r["dirty"] else "") + f". {r['records']:,} recordings (linked copies "
        "of the 500 PTB-XL 500-Hz records), the default pool, each process scoring what it prepared; runs "
        "alternate, medians.",
        "",
        "CPU ms a recording of the calling process: in `screen()`, and of it what runs while the pool's processes "
        "wait, before the first chunk or after the last (listing everything first; reading scores.csv back; before "
        "this stop also summarising every row and writing records.csv); then the files the CLI writes after "
        "`screen()` returns (Parquet copies, the summary picture: mostly ~1.5 s a call, matplotlib's import "
        "and drawing, whatever the number of recordings), which the pool waits for too. Any pool is bound by "
        "1,000 / the first column: the ECG/s of a pool that took no time, before the CLI's files.",
        "",
        "| chunk (recordings a pool task) | code | `screen()` | of it, while the pool waits | the CLI's files after "
        "it | listing the recordings (one pass) | bound it puts on any pool (ECG/s) | pool's processes | ECG/s here |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for chunk in sorted(r["median"]["current"], key=int):
        for name in ("baseline", "current"):
            x = r["median"][name][chunk]
            files = x.get("cli_files_ms_per_ecg")
            waits = f"{x['serial_ms_per_ecg'] - files:.3f}" if files is not None else "-"
            files = f"{files:.3f}" if files is not None else "-"
            pool = f"{x['pool_ms_per_ecg']:.2f}" if "pool_ms_per_ecg" in x else "-"
            lines.append(f"| {chunk} | {name} | {x['caller_ms_per_ecg']:.3f} | {waits} | {files} | "
                         f"{x['listing_ms_per_ecg']:.3f} | {1e3 / x['caller_ms_per_ecg']:,.0f} | {pool} | "
                         f"{x['ecg_per_s']:.0f} |")
    added = {chunk: x.get("tail_ms_per_added_ecg") for chunk, x in r["median"]["current"].items()}
    if any(v is not None for v in added.values()):
        lines += ["", "What a recording adds to the CLI's files, timed on their own (a run's files and its rows twenty "
                      "times over; the rest of that column is the call's fixed cost): " + ", ".join(
                          f"{v:.4f} ms in chunks of {chunk}" for chunk, v in sorted(added.items(), key=lambda kv: int(kv[0]))
                          if v is not None) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
