"""`hfrisk screen` against references: the PhysioNet/CinC Challenge 2011 quality labels, and scores
made apart from screening by the front end's ``prepare`` and a plain ONNX Runtime session.

    .venv/bin/python -m bench.bench_screening_gate [--out docs/bench]

Every labelled Challenge 2011 set-A record (12 leads, 500 Hz, 10 s: one window each) is screened
twice with the shipped model, as ``hfrisk screen --in-process`` builds its scorer: with the pool
that ``--workers`` gives by default (on a machine with a pool process per core, each scores what it
prepared) and with no pool (``--workers 0``). A record the screening did not score (refused or not
fit to score) is one the gate refused; those verdicts are compared with the Challenge's acceptable /
unacceptable labels by the summary of docs/bench/frontend.md's gate. Each scored record's log-risk
is compared with ONNX Runtime's on ``prepare``'s model input for that record (a session of its own,
ONNX Runtime's default options, one record at a time). Written to ``<out>/screening-gate.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.frontend_metrics import gate_summary
from bench.record import command_line, load_average, machine, save
from bench.references import challenge2011

ROOT = Path(__file__).resolve().parents[1]
# A scored window's log-risk may differ from the reference by ONNX Runtime's rounding across batch
# sizes and graph optimisation, no more.
SCORE_TOLERANCE = 1e-4


def screened(paths: list[Path], workers: int | None) -> dict[str, float]:
    """Per record (header path): its log-risk, NaN when screening did not score it."""
    from hfrisk.cli.screening import _in_process_scorer
    from hfrisk.screening import screen, screening_threads

    scorer = _in_process_scorer(ROOT / "triton_models", "hfrisk", untrained=False,
                                threads=screening_threads(workers), replicable=workers != 0)
    with tempfile.TemporaryDirectory(prefix="bench-screening-gate-") as tmp:
        folder = Path(tmp) / "records"
        folder.mkdir()
        for path in paths:  # only the labelled records, under their own names
            for part in path.parent.glob(f"{path.name}.*"):
                (folder / part.name).symlink_to(part.resolve())
        frame = screen([folder], scorer, Path(tmp) / "out", threshold=0.0, progress=False, workers=workers)
    risk = frame["log_risk"].where(frame["status"] == "scored")
    return {Path(record).stem: float(value) for record, value in zip(frame["record"], risk)}


def reference_log_risk(paths: list[Path]) -> dict[str, float]:
    import onnxruntime as ort

    from hfrisk.model.contract.errors import ECGInputError
    from hfrisk.model.frontend.preprocessing import prepare
    from hfrisk.model.readers.dispatch import read_ecg
    from hfrisk.serving.scorers import OnnxScorer

    shipped = OnnxScorer.from_model_dir(ROOT / "triton_models")  # for the model's file and card only
    card = shipped.card
    session = ort.InferenceSession(str(shipped.onnx_path), providers=["CPUExecutionProvider"])
    out = {}
    for path in paths:
        try:
            item = prepare(read_ecg(path), card)
        except ECGInputError:
            out[path.name] = float("nan")
            continue
        if not item.quality.fit_to_score:
            out[path.name] = float("nan")
            continue
        log_risk = session.run(["log_risk"], {card.input.name: item.x[None].astype(np.float32)})[0]
        out[path.name] = float(log_risk[0, 0])
    return out


def compare(labelled: list[tuple[Path, bool]], risk: dict[str, float], reference: dict[str, float]) -> dict:
    names = [path.name for path, _ in labelled]
    got = np.array([risk[n] for n in names])
    ref = np.array([reference[n] for n in names])
    scored = ~np.isnan(got)
    both = scored & ~np.isnan(ref)
    return {
        "gate": gate_summary([a for _, a in labelled], list(~scored)),
        "scored": int(scored.sum()),
        "verdicts_differ_from_prepare": int((scored != ~np.isnan(ref)).sum()),
        "max_abs_log_risk_diff": float(np.abs(got[both] - ref[both]).max()) if both.any() else float("nan"),
        "scores_off": int((np.abs(got[both] - ref[both]) > SCORE_TOLERANCE).sum()),
    }


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# `hfrisk screen` against the Challenge 2011 quality labels and reference scores",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; {m['cpus']} CPUs, load average {m['load_before']} before, {m['load_after']} after.",
        "",
        f"{r['n']} labelled set-A records ({r['n_acceptable']} acceptable, {r['n'] - r['n_acceptable']} unacceptable); "
        "model: the shipped `triton_models/hfrisk`.",
        "",
        "| screening | accuracy | unacceptable refused | acceptable refused | scored | verdicts differ from `prepare` "
        f"| max \\|log-risk - reference\\| | scores off by > {SCORE_TOLERANCE:g} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("pool", f"default pool ({r['workers']} processes)"), ("serial", "no pool (`--workers 0`)")):
        v = r[key]
        g = v["gate"]
        lines.append(f"| {label} | {g['accuracy']:.3f} | {g['sensitivity_unacceptable']:.3f} | "
                     f"{g['acceptable_refused']:.3f} | {v['scored']} | {v['verdicts_differ_from_prepare']} | "
                     f"{v['max_abs_log_risk_diff']:.2e} | {v['scores_off']} |")
    lines += ["", "The gate's figures on docs/bench/frontend.md come from `prepare` on the same records; the "
              "reference log-risk is ONNX Runtime's on `prepare`'s model input, one record at a time."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args(argv)

    from hfrisk.screening import default_workers

    load_before = load_average()
    labelled = challenge2011.records()
    paths = [path for path, _ in labelled]
    reference = reference_log_risk(paths)
    workers = default_workers()
    result = {
        "command": command_line("bench_screening_gate", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "n": len(labelled), "n_acceptable": sum(a for _, a in labelled), "workers": workers,
        "pool": compare(labelled, screened(paths, None), reference),
        "serial": compare(labelled, screened(paths, 0), reference),
    }
    result["machine"] = machine(load_before)
    save(args.out, "screening-gate", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
