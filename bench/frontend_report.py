"""The Markdown report of the front-end benchmark (:mod:`bench.bench_frontend`): its tables, each judged
against the goals of issue #13, from the figures the benchmark saves as JSON. The analysis written by
hand sits between the ``analysis`` markers and is carried over when the report is rewritten."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["GOALS", "INTERVALS", "STEM", "kept_analysis", "markdown"]

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
INTERVALS = ("qrs_ms", "pr_ms", "qt_ms")
ANALYSIS_START, ANALYSIS_END = "<!-- analysis:start -->", "<!-- analysis:end -->"


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def _ms(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.0f}"


def _signed(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.0f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def kept_analysis(path: Path) -> str | None:
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
            f"reference: the beat annotations (EC57 beat labels `{m['beat_symbols']}`), whole record (no learning period); detections inside ventricular flutter/fibrillation episodes (`[` … `]`; in DS1 only record 207 has them) are left out, as EC57 does. "
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
    for name, x in s["implementations"].items():
        lines += ["", f"Time per step of {name} (ms per window, wall): " +
                  ", ".join(f"{k} {v:.2f}" for k, v in x["step_ms_per_window"].items()) + "."]
    lines += ["", "Batch sizes, torch and one pinned core: [preprocessing.md](preprocessing.md).", ""]
    return lines


def markdown(r: dict, analysis: str | None = None) -> str:
    m = r["machine"]
    lines = [
        "# Signal front end against reference data",
        "",
        f"`{r['command']}`" + (" (quick: a few records per dataset)" if r["quick"] else ""),
        "",
        "Run it with `nice -n 19` (the machine is shared); `--quick` checks the bench on a few records per dataset in "
        "under a minute, `--records N --minutes M` shorten the MIT-BIH part, `--render docs/bench/frontend.json` "
        "rewrites this page from the figures. The code: `bench/bench_frontend.py` (the runs), `bench/frontend_metrics.py` "
        "(matching, windowing, noise, error and gate summaries), `bench/references/` (one loader per dataset), "
        "`bench/frontend_report.py` (this page).",
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

