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

The Markdown report keeps the hand-written analysis between its ``analysis`` markers when it is
rewritten, so the tables can be refreshed without losing it.
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
from hfrisk.model.frontend.preprocessing import prepare
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
from bench.record import command_line, load_average, machine, save
from bench.references import challenge2011, cinc2021, data_root, ludb, mitdb, nstdb, ptbxl

ROOT = Path(__file__).resolve().parents[1]
STEM = "frontend"
GOALS = {
    "r_peaks_clean": 0.995,  # Se and +P, LUDB and clean MIT-BIH DS1
    "r_peaks_6db": 0.95,  # Se and +P, MIT-BIH DS1 with noise at 6 dB
    "qrs_median_abs_ms": 10.0,
    "pr_median_abs_ms": 15.0,
    "qt_median_abs_ms": 15.0,
    "gate_accuracy": 0.93,
    "acceptable_refused": 0.03,
    "refused_share": 0.03,
}
WINDOW_S, HOP_S = 10.0, 8.0
ANALYSIS_START, ANALYSIS_END = "<!-- analysis:start -->", "<!-- analysis:end -->"


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
            found = detect_long(ecg, card, window_s=WINDOW_S, hop_s=HOP_S)
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

INTERVALS = ("qrs_ms", "pr_ms", "qt_ms")


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
    masked = sorted(set(q.flat_leads) | set(q.lead_off_leads) | set(q.saturated_leads))
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
    """``prepare`` per window, one process: windows/s by CPU time (what one core does) and by wall time."""
    ecgs = [read_ecg(p) for p in paths]
    for ecg in ecgs[:3]:
        prepare(ecg, card)
    cpu_rates, wall_rates, steps = [], [], {}
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        for ecg in ecgs:
            prepare(ecg, card, timings=steps)
        cpu_rates.append(len(ecgs) / (time.process_time() - cpu))
        wall_rates.append(len(ecgs) / (time.perf_counter() - wall))
    n = len(ecgs) * repeats
    return {
        "windows": len(ecgs),
        "repeats": repeats,
        "implementations": {
            "prepare (per window, current)": {
                "batch": 1,
                "windows_per_cpu_s": statistics.median(cpu_rates),
                "windows_per_wall_s": statistics.median(wall_rates),
                "ms_per_window_cpu": 1e3 / statistics.median(cpu_rates),
            }
        },
        "step_ms_per_window": {k: 1e3 * v / n for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
    }


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
        md.write_text(markdown(result, _kept_analysis(md)))
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
    report = markdown(result, _kept_analysis(out / f"{STEM}.md") if out else None)
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


# -- the report ---------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def _ms(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.0f}"


def _signed(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.0f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _kept_analysis(path: Path) -> str | None:
    if not path.is_file():
        return None
    text = path.read_text()
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text[text.index(ANALYSIS_START) + len(ANALYSIS_START) : text.index(ANALYSIS_END)].strip("\n")
    return None


def _match_row(label: str, overall: dict, goal: float | None) -> str:
    verdict = "–" if goal is None else _met(overall["se"] >= goal and overall["ppv"] >= goal)
    return (f"| {label} | {overall['n_ref']} | {overall['tp']} | {overall['fn']} | {overall['fp']} | "
            f"{_pct(overall['se'])} | {_pct(overall['ppv'])} | {verdict} |")


def _md_r_peaks(r: dict) -> list[str]:
    lines = ["## 1. R-peak detection", ""]
    head = ["| set | reference beats | TP | FN | FP | Se | +P | goal |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    goal = GOALS["r_peaks_clean"]
    if "ludb_r_peaks" in r:
        lr = r["ludb_r_peaks"]
        lines += [
            f"**LUDB**, {lr['records']} records × 10 s, 12 leads, 500 Hz. Reference: {lr['reference']}. "
            f"Match ±{r['tolerance_ms']:.0f} ms (`wfdb.processing.compare_annotations`). Goal Se and +P ≥ {100 * goal:.1f} %.",
            "", *head, _match_row("LUDB", lr["overall"], goal), "",
        ]
        bad = [row for row in lr["per_record"] if row["fn"] or row["fp"]]
        lines += [f"Records with a miss or a false detection: {len(bad)} of {lr['records']}."]
        if bad:
            lines += ["", "| LUDB record | beats | FN | FP | diagnoses (header) |", "| --- | ---: | ---: | ---: | --- |"]
            lines += [f"| {row['record']} | {row['n_ref']} | {row['fn']} | {row['fp']} | {_diagnoses(row)} |"
                      for row in sorted(bad, key=lambda x: -(x["fn"] + x["fp"]))]
        lines.append("")
    if "mitdb_r_peaks" in r:
        m = r["mitdb_r_peaks"]
        lines += [
            f"**MIT-BIH Arrhythmia DS1**, {len(m['records'])} records × {m['minutes']:g} min, 2 leads, 360 Hz; "
            f"reference: the beat annotations (EC57 beat labels `{m['beat_symbols']}`), whole record (no learning period). "
            f"Protocol: {m['window_s']:g}-s windows every {m['hop_s']:g} s through the front end; each window's "
            f"detections are kept from its central {m['hop_s']:g} s (the first window from 0 s, the last to the end), "
            "and joined (detections closer than 150 ms across a boundary count once). Noise: the nstdb record added to "
            "both leads over the whole recording (channel i to lead i), scaled so that SNR = 10·log10(S/N), "
            "S = (median QRS peak-to-peak amplitude)²/8, N = noise variance (the nstdb `nst` definition). "
            f"Goals: Se and +P ≥ {100 * goal:.1f} % clean, ≥ {100 * GOALS['r_peaks_6db']:.0f} % at 6 dB.",
            "", *head,
        ]
        for label, cond in m["conditions"].items():
            g = goal if label == "clean" else (GOALS["r_peaks_6db"] if label.endswith(" 6 dB") else None)
            lines.append(_match_row(f"MIT-BIH {label}", cond["overall"], g))
        lines += ["", "Missed beats by reference label (N normal, L/R bundle-branch block, A/a/J/S supraventricular "
                  "premature, V/E ventricular, F fusion, / paced, f paced fusion, Q/? unclassified): "
                  + "; ".join(f"{k}: " + (", ".join(f"{s} {n}" for s, n in c.get('missed_by_label', {}).items()) or "none")
                              for k, c in m["conditions"].items() if k == "clean" or k.endswith(" 6 dB")) + ".",
                  "", "Per record (Se / +P):", ""]
        labels = list(m["conditions"])
        lines += ["| record | beats | " + " | ".join(labels) + " |", "| --- | ---: |" + " ---: |" * len(labels)]
        for i, name in enumerate(m["records"]):
            cells = [f"{_pct(m['conditions'][k]['per_record'][i]['se'], 1)} / {_pct(m['conditions'][k]['per_record'][i]['ppv'], 1)}"
                     for k in labels]
            lines.append(f"| {name} | {m['conditions']['clean']['per_record'][i]['n_ref']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _md_intervals(r: dict) -> list[str]:
    if "ludb_intervals" not in r:
        return []
    iv = r["ludb_intervals"]
    lines = [
        "## 2. Intervals against LUDB's cardiologists",
        "",
        f"`hfrisk.training.data.measurements.measure_ecg` on each LUDB record ({iv['records']}) against the reference "
        f"built from the per-lead marks: {iv['reference']} (`bench/references/ludb.py`). Error = measured − reference, per record.",
        "",
        "| interval | records compared | reference but not measured | measured, no reference | median \\|error\\| (ms) | 95th pct \\|error\\| (ms) | bias (ms) | goal: median \\|error\\| | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for k, goal_key in (("qrs_ms", "qrs_median_abs_ms"), ("pr_ms", "pr_median_abs_ms"), ("qt_ms", "qt_median_abs_ms")):
        s = iv["summary"][k]
        ok = s["median_abs_ms"] is not None and math.isfinite(s["median_abs_ms"]) and s["median_abs_ms"] <= GOALS[goal_key]
        lines.append(f"| {k[:-3].upper()} | {s['n']} | {s['not_measured']} | {s.get('measured_without_reference', '–')} | {_ms(s['median_abs_ms'])} | "
                     f"{_ms(s['p95_abs_ms'])} | {_signed(s['bias_ms'])} | ≤ {GOALS[goal_key]:g} ms | {_met(ok)} |")
    rows = iv["per_record"]
    both = [x for x in rows if _finite_value(x["measured_qt_ms"]) and _finite_value(x["ref_qt_ms"])]
    worst = sorted(both, key=lambda x: -abs(x["measured_qt_ms"] - x["ref_qt_ms"]))[:10]
    missing = [x["record"] for x in rows if not _finite_value(x["measured_qt_ms"]) and _finite_value(x["ref_qt_ms"])]
    lines += ["", f"QT not measured (reference has one): {', '.join(missing) or 'none'}. Largest QT errors (ms):", "", "| LUDB record | QRS ref / measured | PR ref / measured | QT ref / measured | diagnoses (header) |",
              "| --- | --- | --- | --- | --- |"]
    for x in worst:
        lines.append(f"| {x['record']} | " + " | ".join(f"{_ms(x['ref_' + k])} / {_ms(x['measured_' + k])}" for k in INTERVALS)
                     + f" | {_diagnoses(x)} |")
    lines.append("")
    return lines


_TELLING = ("rhythm", "pacing", "block", "extrasystol", "fibrillation", "flutter", "wpw")


def _diagnoses(row: dict) -> str:
    """The rhythm and the header lines that bear on detection and intervals (pacing, blocks, ectopy)."""
    lines = [d.rstrip(".") for d in row.get("diagnoses", []) if any(w in d.lower() for w in _TELLING)]
    return "; ".join(lines[:4]).replace("|", "/")


def _finite_value(x) -> bool:
    return x is not None and math.isfinite(x)


def _md_gate(r: dict) -> list[str]:
    if "gate" not in r:
        return []
    c = r["gate"]["challenge2011"]
    ok = c["accuracy"] >= GOALS["gate_accuracy"] and c["acceptable_refused"] <= GOALS["acceptable_refused"]
    lines = [
        "## 3. Quality gate",
        "",
        "Refused = `prepare(...).quality.fit_to_score` is False, or `prepare` raises `ECGInputError`; first 10 s of each record.",
        "",
        f"**Challenge 2011 set-a** ({c['n']} records: {c['n_acceptable']} acceptable, {c['n_unacceptable']} unacceptable). "
        f"Goal: accuracy ≥ {GOALS['gate_accuracy']:.2f} with ≤ {100 * GOALS['acceptable_refused']:.0f} % of acceptable refused.",
        "",
        "| accuracy | sensitivity to unacceptable | specificity | acceptable refused | unacceptable passed | goal |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {c['accuracy']:.3f} | {_pct(c['sensitivity_unacceptable'], 1)} ({c['tp']}/{c['n_unacceptable']}) | "
        f"{_pct(c['specificity'], 1)} | {_pct(c['acceptable_refused'], 1)} ({c['fp']}/{c['n_acceptable']}) | {c['fn']} | {_met(ok)} |",
        "",
    ]
    if "refused_or_masked" in c:
        x = c["refused_or_masked"]
        lines += [
            "Counting a record as flagged when it is refused *or* scored with a lead masked (flat, lead off, saturated), "
            "for comparison only (the Challenge's annotators called a recording with a missing lead unacceptable; "
            "the front end scores it with the lead masked, as issue #13 asks):",
            "",
            "| accuracy | sensitivity to unacceptable | acceptable flagged | unacceptable not flagged |",
            "| ---: | ---: | ---: | ---: |",
            f"| {x['accuracy']:.3f} | {_pct(x['sensitivity_unacceptable'], 1)} ({x['tp']}/{x['n_unacceptable']}) | "
            f"{_pct(x['acceptable_refused'], 1)} ({x['fp']}/{x['n_acceptable']}) | {x['fn']} |",
            "",
        ]
    lines += [
        "Reasons on refused records (a record can have several; non-blocking lead reasons listed too): "
        f"acceptable: {_reason_text(c['reasons_acceptable_refused'])}; unacceptable: {_reason_text(c['reasons_unacceptable_refused'])}.",
        "",
    ]
    refused_ok = [row for row in c["per_record"] if row["acceptable"] and row["refused"]]
    if refused_ok:
        lines += ["Acceptable records refused (reasons; template correlation, beats detected / used): "
                  + ", ".join(f"{x['record']} ({'+'.join(x['reasons'])}; {_corr(x)})" for x in refused_ok) + ".", ""]
    lines += [
        f"**Other 12-lead sources** (no quality labels; every record readable by a cardiologist is the assumption). "
        f"Goal ≤ {100 * GOALS['refused_share']:.0f} % refused.",
        "",
        "| source | records | refused | share | reasons (refused records) | goal |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, s in r["gate"]["refusals"].items():
        lines.append(f"| {name} | {s['records']} | {s['refused']} | {_pct(s['refused_share'], 1)} | "
                     f"{_reason_text(s['reasons'])} | {_met(s['refused_share'] <= GOALS['refused_share'])} |")
    lines.append("")
    for name, s in r["gate"]["refusals"].items():
        if s["refused_records"]:
            lines.append(f"Refused on {name}: " + ", ".join(f"{x['record']} ({'+'.join(x['reasons'])}; {_corr(x)})"
                                                            for x in s["refused_records"]) + ".")
    lines.append("")
    return lines


def _corr(row: dict) -> str:
    if row.get("template_correlation") is None:
        return "not prepared"
    return f"r {row['template_correlation']:.2f}, {row['beats_detected']}/{row['beats_used']}"


def _reason_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _md_speed(r: dict) -> list[str]:
    if "speed" not in r:
        return []
    s = r["speed"]
    lines = [
        "## 4. Speed",
        "",
        f"10-s 12-lead 500-Hz PTB-XL windows ({s['windows']} records × {s['repeats']} repeats, read into memory first), one process. "
        "Windows per CPU-second is what one core does (the machine is shared, wall time is a floor).",
        "",
        "| implementation | batch | windows / CPU-s | windows / wall-s | ms CPU / window |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, x in s["implementations"].items():
        lines.append(f"| {name} | {x['batch']} | {x['windows_per_cpu_s']:.0f} | {x['windows_per_wall_s']:.0f} | {x['ms_per_window_cpu']:.2f} |")
    lines += ["", "Time per step of `prepare` (ms per window, wall): " +
              ", ".join(f"{k} {v:.2f}" for k, v in s["step_ms_per_window"].items()) + ".", ""]
    return lines


def markdown(r: dict, analysis: str | None = None) -> str:
    m = r["machine"]
    lines = [
        "# Signal front end against reference data",
        "",
        f"`{r['command']}`" + (" (quick: a few records per dataset)" if r["quick"] else ""),
        "",
        f"Data: `{r['data']}` (see its README). {m['cpus']} CPUs ({m['processor']}), load average "
        f"{m['load_before']} before and {m['load_after']} after; {r['elapsed_s'] / 60:.1f} min. Figures in "
        f"`{STEM}.json`, per record.",
        "",
        *_md_r_peaks(r),
        *_md_intervals(r),
        *_md_gate(r),
        *_md_speed(r),
        "## Analysis",
        "",
        ANALYSIS_START,
        analysis if analysis is not None else "(to be written from the figures above)",
        ANALYSIS_END,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
