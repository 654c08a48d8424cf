"""The signal front end against references nobody here wrote (issue #13): R peaks, intervals, the quality
gate, and its speed.

    nice -n 19 .venv/bin/python -m bench.bench_frontend            # everything → docs/bench/frontend.{json,md}
    .venv/bin/python -m bench.bench_frontend --quick               # a few records per dataset, < 1 min

Data: ``../shared/data/ecg`` (or ``HFRISK_REFERENCE_DATA``), read through :mod:`bench.references`.

1. **R peaks** (:func:`bench.frontend_metrics.detect_window`: every detection of the front end's own
   steps) against reference beats, ±75 ms, wfdb's ``compare_annotations``:
   LUDB (reference: lead ii's QRS peak marks, within the span lead ii was annotated over; the
   front end sees the whole 10-s record); MIT-BIH DS1 (``--records``, ``--minutes``; 10-s windows
   every 8 s, detections kept from each window's central 8 s, :func:`~bench.frontend_metrics.window_plan`),
   clean and with ``nstdb`` noise added at ``--snr`` dB (:func:`~bench.frontend_metrics.add_noise`).
2. **Intervals**: ``measure_ecg`` (hfrisk.training.data.measurements) QRS, PR and QT against LUDB's
   global fiducials (earliest onset and latest offset over the leads, median over beats).
3. **Quality gate**: refused = ``prepare(...).quality.fit_to_score`` False or an ``ECGInputError``;
   against the Challenge 2011 labels, and the share refused on PTB-XL (500 Hz), CinC 2021 and LUDB.
4. **Speed**: ``prepare`` on 10-s 12-lead 500-Hz PTB-XL windows, one process (CPU time and wall time).

The Markdown report (:mod:`bench.frontend_report`) keeps the hand-written analysis between its
``analysis`` markers when it is rewritten, so the tables can be refreshed without losing it;
``--render docs/bench/frontend.json`` rewrites it from the figures without measuring anything.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.arrays import one_blas_thread
from hfrisk.model.frontend.preprocessing import prepare, prepare_windows
from hfrisk.model.frontend.reference import prepare_reference
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.training.data.measurements import measure_ecg

from bench.frontend_metrics import (
    TOLERANCE_S,
    BeatMatch,
    add_noise,
    compare_beats,
    detect_long,
    detect_window,
    error_summary,
    gate_summary,
    match_beats,
)
from bench.frontend_report import GOALS, INTERVALS, STEM, kept_analysis, markdown
from bench.record import command_line, load_average, machine, save
from bench.references import challenge2011, cinc2021, data_root, ludb, mitdb, nstdb, ptbxl

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S, HOP_S = 10.0, 8.0


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


# -- 1. R peaks ---------------------------------------------------------------------------------------


def ludb_r_peaks(names: list[str], card) -> dict:
    rows = []
    for name in names:
        ref = ludb.reference_beats(name)
        found = detect_window(read_ecg(ludb.record_path(name)), card)
        lo, hi = ref.span
        match = match_beats(ref.r_peaks, found[(found >= lo) & (found <= hi)], ludb.FS_HZ)
        rows.append({"record": name, **match.to_dict(), "diagnoses": ludb.diagnoses(name)})
    total = BeatMatch.total([BeatMatch(r["n_ref"], r["n_test"], r["tp"]) for r in rows])
    return {
        "reference": "QRS peak marks ('N') of lead ii; detections counted within lead ii's annotated span",
        "records": len(rows),
        "overall": total.to_dict(),
        "per_record": rows,
    }


def mitdb_r_peaks(names: list[str], minutes: float | None, snrs: list[float], noises: list[str], card) -> dict:
    conditions: dict[str, list[dict]] = collections.defaultdict(list)
    noise_cache: dict[str, np.ndarray] = {}
    for name in names:
        rec = mitdb.read(name, minutes)
        cases = [("clean", rec.ecg.samples)]
        for noise in noises:
            if noise not in noise_cache:
                noise_cache[noise] = nstdb.read_noise(noise)
            for snr in snrs:
                noisy = add_noise(rec.ecg.samples, noise_cache[noise], rec.beats, rec.ecg.fs_hz, snr)
                cases.append((f"{noise} {snr:g} dB", noisy))
        for label, samples in cases:
            ecg = ECG(samples=samples, fs_hz=rec.ecg.fs_hz, lead_names=rec.ecg.lead_names)
            found = rec.outside_flutter(detect_long(ecg, card, window_s=WINDOW_S, hop_s=HOP_S))
            match, missed, _ = compare_beats(rec.beats, found, rec.ecg.fs_hz)
            missed_labels = collections.Counter(rec.labels[i] for i in missed)
            conditions[label].append({"record": name, **match.to_dict(), "missed_by_label": dict(missed_labels)})
        _log(f"mitdb {name}: clean Se {conditions['clean'][-1]['se']:.4f} +P {conditions['clean'][-1]['ppv']:.4f}")
    out = {}
    for label, rows in conditions.items():
        total = BeatMatch.total([BeatMatch(r["n_ref"], r["n_test"], r["tp"]) for r in rows])
        missed = sum((collections.Counter(r["missed_by_label"]) for r in rows), collections.Counter())
        out[label] = {"overall": total.to_dict(), "missed_by_label": dict(missed.most_common()), "per_record": rows}
    return {
        "records": names,
        "minutes": minutes if minutes is not None else 30.0,
        "window_s": WINDOW_S,
        "hop_s": HOP_S,
        "beat_symbols": "".join(sorted(mitdb.BEAT_SYMBOLS)),
        "conditions": out,
    }


# -- 2. Intervals -------------------------------------------------------------------------------------

def ludb_intervals(names: list[str], card) -> dict:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            reference = ludb.reference_beats(name).intervals_ms()
            measured = measure_ecg(read_ecg(ludb.record_path(name)), card)
            rows.append({"record": name, "diagnoses": ludb.diagnoses(name),
                         **{f"ref_{k}": reference[k] for k in INTERVALS},
                         **{f"measured_{k}": measured[k] for k in INTERVALS}})
    summary = {k: error_summary([r[f"measured_{k}"] for r in rows], [r[f"ref_{k}"] for r in rows]) for k in INTERVALS}
    return {
        "reference": "per beat: earliest onset and latest offset over the 12 leads' marks; median over beats",
        "records": len(rows),
        "summary": summary,
        "per_record": rows,
    }


# -- 3. Quality gate ----------------------------------------------------------------------------------


def gate_decision(path: Path, card) -> dict:
    """Whether the front end refuses record ``path``, and why."""
    try:
        item = prepare(read_ecg(path), card)
    except ECGInputError as error:
        return {"record": path.name, "refused": True, "reasons": [f"input:{error.reason.value}"], "score": None,
                "masked_leads": []}
    q = item.quality
    masked = sorted(set(q.flat_leads) | set(q.lead_off_leads) | set(q.saturated_leads) | set(q.noisy_leads))
    return {"record": path.name, "refused": not q.fit_to_score, "reasons": list(q.reasons), "score": q.score,
            "masked_leads": masked, "template_correlation": q.template_correlation,
            "beats_detected": q.n_beats_detected, "beats_used": q.n_beats_used}


def _reasons(rows: list[dict]) -> dict[str, int]:
    counts = collections.Counter(reason for row in rows if row["refused"] for reason in row["reasons"])
    return dict(counts.most_common())


def gate_challenge(limit: int | None, card) -> dict:
    labelled = challenge2011.records()
    if limit is not None:  # the first ``limit`` of each label
        good = [r for r in labelled if r[1]][:limit]
        bad = [r for r in labelled if not r[1]][:limit]
        labelled = good + bad
    rows = [{**gate_decision(path, card), "acceptable": acceptable} for path, acceptable in labelled]
    return {
        **gate_summary([r["acceptable"] for r in rows], [r["refused"] for r in rows]),
        # The front end scores a window with a bad lead masked; the Challenge's annotators called
        # such a recording unacceptable. Counting "refused or a lead masked" shows how much of the
        # disagreement is that policy.
        "refused_or_masked": gate_summary([r["acceptable"] for r in rows],
                                          [r["refused"] or bool(r["masked_leads"]) for r in rows]),
        "reasons_acceptable_refused": _reasons([r for r in rows if r["acceptable"]]),
        "reasons_unacceptable_refused": _reasons([r for r in rows if not r["acceptable"]]),
        "per_record": rows,
    }


def gate_refusals(paths: list[Path], card) -> dict:
    rows = [gate_decision(path, card) for path in paths]
    refused = sum(r["refused"] for r in rows)
    return {
        "records": len(rows),
        "refused": refused,
        "refused_share": refused / len(rows) if rows else float("nan"),
        "reasons": _reasons(rows),
        "refused_records": [r for r in rows if r["refused"]],
    }


# -- 4. Speed -----------------------------------------------------------------------------------------


def speed(paths: list[Path], repeats: int, card) -> dict:
    """The per-window reference and the batched front end (batch 64) in one process: windows/s by
    CPU time (what one core does) and by wall time. ``bench/bench_preprocessing.py`` has the full
    comparison (batch sizes, torch, pinned to one core)."""
    one_blas_thread()  # as the stream's and screening's preprocessing processes run
    ecgs = [read_ecg(p) for p in paths]
    requests = [(ecg, 0.0) for ecg in ecgs]

    def run_reference(steps: dict) -> None:
        for ecg in ecgs:
            prepare_reference(ecg, card, timings=steps)

    def run_batched(steps: dict) -> None:
        prepare_windows(requests, card, batch_size=64, timings=steps)

    run_reference({})
    run_batched({})
    out: dict = {"windows": len(ecgs), "repeats": repeats, "implementations": {}}
    for name, batch, run in (("prepare_reference (per window, before)", 1, run_reference),
                             ("prepare_windows (batched, numpy)", 64, run_batched)):
        cpu_rates, wall_rates, steps = [], [], {}
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            run(steps)
            cpu_rates.append(len(ecgs) / (time.process_time() - cpu))
            wall_rates.append(len(ecgs) / (time.perf_counter() - wall))
        n = len(ecgs) * repeats
        out["implementations"][name] = {
            "batch": batch,
            "windows_per_cpu_s": statistics.median(cpu_rates),
            "windows_per_wall_s": statistics.median(wall_rates),
            "ms_per_window_cpu": 1e3 / statistics.median(cpu_rates),
            "step_ms_per_window": {k: 1e3 * v / n for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
        }
    return out


# -- the run ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few records per dataset (< 1 min); writes nothing unless --out")
    parser.add_argument("--records", type=int, default=None, help="MIT-BIH DS1: the first N records (default all 22)")
    parser.add_argument("--minutes", type=float, default=None, help="MIT-BIH: the first N minutes of each record (default 30)")
    parser.add_argument("--snr", type=float, nargs="*", default=[24.0, 12.0, 6.0, 0.0], help="MIT-BIH noise SNRs (dB)")
    parser.add_argument("--noises", nargs="*", default=list(nstdb.NOISES), choices=nstdb.NOISES)
    parser.add_argument("--ludb-records", type=int, default=None, help="LUDB: the first N records (default all 200)")
    parser.add_argument("--gate-records", type=int, default=None, help="at most N records per gate source (per label for Challenge 2011)")
    parser.add_argument("--speed-windows", type=int, default=200)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["r_peaks", "mitdb", "intervals", "gate", "speed"])
    parser.add_argument("--out", type=Path, default=None, help="folder for frontend.json/.md (default docs/bench; --quick: none)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="measure nothing: rewrite the Markdown beside JSON (a frontend.json) from its figures")
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        md = args.render.with_suffix(".md")
        md.write_text(markdown(result, kept_analysis(md)))
        return result
    if args.quick:
        args.records = args.records or 2
        args.minutes = args.minutes or 1.0
        args.snr = [6.0]
        args.noises = ["ma"]
        args.ludb_records = args.ludb_records or 5
        args.gate_records = args.gate_records or 5
        args.speed_windows, args.speed_repeats = min(args.speed_windows, 20), 1
    out = args.out if args.out is not None or args.quick else ROOT / "docs" / "bench"

    load_before = load_average()
    card = default_card()
    started = time.perf_counter()
    result: dict = {
        "benchmark": STEM,
        "command": command_line("bench_frontend", argv),
        "data": str(data_root()),
        "quick": args.quick,
        "tolerance_ms": 1e3 * TOLERANCE_S,
        "goals": GOALS,
    }
    ludb_names = ludb.records()[: args.ludb_records]
    if "r_peaks" not in args.skip:
        _log(f"LUDB R peaks, {len(ludb_names)} records")
        result["ludb_r_peaks"] = ludb_r_peaks(ludb_names, card)
    if "mitdb" not in args.skip:
        names = list(mitdb.DS1[: args.records])
        _log(f"MIT-BIH R peaks, {len(names)} records × {args.minutes or 30:g} min, noises {args.noises} at {args.snr} dB")
        result["mitdb_r_peaks"] = mitdb_r_peaks(names, args.minutes, args.snr, args.noises, card)
    if "intervals" not in args.skip:
        _log("LUDB intervals")
        result["ludb_intervals"] = ludb_intervals(ludb_names, card)
    if "gate" not in args.skip:
        _log("quality gate")
        cap = args.gate_records
        result["gate"] = {
            "challenge2011": gate_challenge(cap, card),
            "refusals": {
                "PTB-XL 500 Hz": gate_refusals(ptbxl.records500()[:cap], card),
                "CinC 2021": gate_refusals(cinc2021.records()[:cap], card),
                "LUDB": gate_refusals([ludb.record_path(n) for n in ludb_names[:cap]], card),
            },
        }
    if "speed" not in args.skip:
        _log("speed")
        result["speed"] = speed(ptbxl.records500()[: args.speed_windows], args.speed_repeats, card)
    result["elapsed_s"] = time.perf_counter() - started
    result["machine"] = machine(load_before)
    report = markdown(result, kept_analysis(out / f"{STEM}.md") if out else None)
    if out is not None:
        save(out, STEM, _finite(result), report)
        _log(f"wrote {out / STEM}.json and .md")
    else:
        print(report)
    return result


def _finite(value):
    """NaN → None, so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    main()
