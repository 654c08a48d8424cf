"""The stream worker's scoring path against a reference: the PhysioNet/CinC Challenge 2011 quality
labels, and the front end's own per-record verdicts.

    .venv/bin/python -m bench.bench_worker_gate [--prep-workers 2] [--part-windows 8] [--batch 32]
        [--out docs/bench]

Every labelled Challenge 2011 set-A record (12 leads, 500 Hz, 10 s: one window each) goes through
what the worker runs on a micro-batch: ``score_windows`` with its ``Preprocessor`` (the batched
front end in a process pool, in parts that go to the model as each is prepared) and a no-op model,
``--batch`` windows at a time. The verdicts (refused: an input error or not fit to score) are
compared with the Challenge's acceptable / unacceptable labels, by the same summary as
docs/bench/frontend.md's gate (whose figures come from the per-record ``prepare``), and record by
record with ``prepare`` itself: the verdicts and the model inputs must agree. Written to
``<out>/worker-gate.{json,md}``.

The same records also go the whole way a monitor's signal goes: played by the replay's feed as 1-s
chunks (each record a bed of its own), encoded and decoded as Kafka messages, and cut into windows
by the worker's ``WindowAssembler``. Each record's window must hold its samples bit for bit, and
its verdict and model input must be those of ``prepare`` on the record read from its file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from bench.frontend_metrics import gate_summary
from bench.record import command_line, load_average, machine, save
from bench.references import challenge2011
from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.model.readers.wfdb_io import resolve_record
from hfrisk.core.config import StreamSettings, get_settings
from hfrisk.stream.ingest.replay import ReplayStats, feed
from hfrisk.stream.messages import decode_chunk, encode_chunk
from hfrisk.stream.scoring.batch import NoopScorer, score_windows
from hfrisk.stream.windowing import Window, WindowAssembler
from hfrisk.stream.worker.command import worker_preprocessor

# Acquisition time of every bed's first chunk (any fixed instant: the windows' grid starts there).
START_US = 1_700_000_000_000_000


def worker_verdicts(ecgs, card, prep_workers: int, part_windows: int, batch: int) -> list:
    """Each window's :class:`WindowScore` through the worker's path, ``batch`` windows per call,
    the pool built as the worker builds it from these settings (its shared memory sized for the batch)."""
    stream = StreamSettings(prep_workers=prep_workers, part_windows=part_windows, batch_size=batch)
    pre = worker_preprocessor(stream, card)
    pre.warm_up()
    try:
        async def go():
            out = []
            for i in range(0, len(ecgs), batch):
                out += await score_windows(ecgs[i : i + batch], pre, NoopScorer(card))
            return out

        return asyncio.run(go())
    finally:
        pre.close()


def stream_windows(paths: list[Path], card) -> list:
    """Each WFDB record's first window as the worker cuts it from the replay's messages (``None``
    where none came out), in the order of ``paths``."""
    stats = ReplayStats()
    assembler = WindowAssembler.from_settings(card, get_settings().stream)
    first: dict[str, object] = {}

    def keep(outcomes) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Window):
                first.setdefault(outcome.patient_id, outcome.ecg)

    for _, chunk in feed(paths, beds=len(paths), start_us=START_US, stats=stats):
        keep(assembler.feed(decode_chunk(encode_chunk(chunk))))
    for patient_id in stats.recordings:
        keep(assembler.close(patient_id))
    # The replay names a recording as the reader does: the WFDB record, without an extension.
    by_record = {sources[0]: first.get(pid) for pid, sources in stats.recordings.items()}
    return [by_record.get(resolve_record(path).name) for path in paths]


def compare(ecgs, scored, card) -> tuple[int, float]:
    """Verdicts that differ from ``prepare`` on the same records, and the largest difference of the
    model inputs where both scored."""
    differ, max_diff = 0, 0.0
    for ecg, one in zip(ecgs, scored):
        refused = one.prepared is None or not one.prepared.quality.fit_to_score
        try:
            ref = prepare(ecg, card)
        except ECGInputError:
            differ += not refused
            continue
        differ += refused != (not ref.quality.fit_to_score)
        if one.prepared is not None:
            max_diff = max(max_diff, float(np.max(np.abs(one.prepared.x - ref.x))))
    return differ, max_diff


def markdown(r: dict) -> str:
    w, f, st = r["worker_path"], r["frontend_page"], r.get("stream_path")  # no stream path before 2026-12-06
    lines = [
        "# The worker's scoring path against the Challenge 2011 quality labels",
        "",
        "Generated by `bench/bench_worker_gate.py`; do not edit by hand.",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_before']} before, "
        f"{r['machine']['load_after']} after.  ",
        f"Path: `score_windows` with the worker's `Preprocessor` ({r['prep_workers']} processes, parts of at most "
        f"{r['part_windows']} windows) and a no-op model, {r['batch']} windows per micro-batch; {r['seconds']:.0f} s.",
        "",
        "| | worker path | " + ("from the replay's messages | " if st else "")
        + "docs/bench/frontend.md (per-record `prepare`) |",
        "| --- | ---: | ---: |" + (" ---: |" if st else ""),
        f"| records (acceptable / unacceptable) | {w['n']} ({w['n_acceptable']} / {w['n_unacceptable']}) | "
        + (f"{st['n']} ({st['n_acceptable']} / {st['n_unacceptable']}) | " if st else "")
        + f"{f.get('n')} ({f.get('n_acceptable')} / {f.get('n_unacceptable')}) |",
        *(f"| {label} | {w[key]:.3f} | " + (f"{st[key]:.3f} | " if st else "") + f"{f.get(key, float('nan')):.3f} |"
          for label, key in (("accuracy", "accuracy"), ("unacceptable refused (sensitivity)", "sensitivity_unacceptable"),
                             ("acceptable refused", "acceptable_refused"))),
        "",
        f"Record by record against `prepare` in this run: **{r['verdicts_differ']} verdicts differ**; model inputs of "
        f"the records both scored differ by at most {r['max_input_abs_diff']:.3g} (model-input units).",
    ]
    if st:
        lines += [
            "",
            "*From the replay's messages*: each record played as the replay plays it (1-s chunks, each record a bed "
            "of its own), encoded and decoded as Kafka messages and cut by the worker's `WindowAssembler`, then "
            f"scored as above. Records without a window: **{r['stream_records_without_window']}**; windows whose "
            f"samples differ from the record read from its file: **{r['stream_samples_differ']}**; verdicts that "
            f"differ from `prepare` on the record: **{r['stream_verdicts_differ']}**; model inputs differ by at most "
            f"{r['stream_max_input_abs_diff']:.3g}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prep-workers", type=int, default=2)
    parser.add_argument("--part-windows", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32, help="windows per micro-batch")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    card = default_card()
    load_before = load_average()
    labelled = challenge2011.records()
    ecgs = [read_ecg(path) for path, _ in labelled]
    started = time.perf_counter()
    scored = worker_verdicts(ecgs, card, args.prep_workers, args.part_windows, args.batch)
    seconds = time.perf_counter() - started
    worker_refused = [s.prepared is None or not s.prepared.quality.fit_to_score for s in scored]
    differ, max_diff = compare(ecgs, scored, card)

    # The same records the way a monitor's signal comes: messages, then the worker's windows.
    windows = stream_windows([path for path, _ in labelled], card)
    cut = [(ecg, w) for ecg, w in zip(ecgs, windows) if w is not None]
    samples_differ = sum(not np.array_equal(w.samples, ecg.samples) or w.samples.dtype != ecg.samples.dtype
                         for ecg, w in cut)
    from_stream = iter(worker_verdicts([w for _, w in cut], card, args.prep_workers, args.part_windows, args.batch))
    # A record without a window counts as refused (nothing of it would be scored).
    stream_scored = [next(from_stream) if w is not None else None for w in windows]
    stream_refused = [s is None or s.prepared is None or not s.prepared.quality.fit_to_score for s in stream_scored]
    stream_differ, stream_max_diff = compare([ecg for ecg, _ in cut], [s for s in stream_scored if s is not None], card)
    page = Path(args.out) / "frontend.json"
    frontend = json.loads(page.read_text()).get("gate", {}).get("challenge2011", {}) if page.exists() else {}
    result = {
        "command": command_line("bench_worker_gate", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "machine": machine(load_before),
        "prep_workers": args.prep_workers, "part_windows": args.part_windows, "batch": args.batch,
        "seconds": round(seconds, 1),
        "worker_path": gate_summary([a for _, a in labelled], worker_refused),
        "frontend_page": {k: v for k, v in frontend.items() if not isinstance(v, (dict, list))},
        "verdicts_differ": differ,
        "max_input_abs_diff": max_diff,
        "stream_path": gate_summary([a for _, a in labelled], stream_refused),
        "stream_records_without_window": sum(w is None for w in windows),
        "stream_samples_differ": samples_differ,
        "stream_verdicts_differ": stream_differ,
        "stream_max_input_abs_diff": stream_max_diff,
    }
    save(Path(args.out), "worker-gate", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
