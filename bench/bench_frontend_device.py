"""The front end on a device against the front end on numpy: the same windows, verdicts and scores?

    python3 -m bench.bench_frontend_device --device cuda [--records DIR] [--out DIR]

The GPU deployments (screening with the front end on CUDA, the served raw model) run the front
end's torch code on the device; the CPU default runs it on numpy. Issue #15 asks for the same
scores either way. The tests hold torch's CPU to numpy; this holds a device to numpy, where one is
lent (``scripts/gpu_check.sh run`` runs it first: a few seconds). Every window of ``--records``
(default: the 24 PTB-XL records of tests/data) is prepared both ways in one batch; the page gives
the verdicts and reasons that differ, the largest difference of a model input, and of the shipped
model's log-risk on the two inputs (ONNX Runtime on the CPU, so only the front end differs).

Results: ``<out>/frontend-device.json`` and ``.md``. ``--device cpu`` is the code check here.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench.bench_screening import SHIPPED_MODEL, _shown
from bench.bench_screening_gpu import device_name
from bench.record import command_line, load_average, save

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "ecg" / "ptbxl" / "records500"
# Agreement asked of the device: model inputs are z-scored (unit variance), log-risks are logs.
INPUT_TOLERANCE = 1e-3
LOG_RISK_TOLERANCE = 1e-3


def compare(records: Path, device: str) -> dict:
    from hfrisk.model.contract.card import load_card
    from hfrisk.model.contract.errors import ECGInputError
    from hfrisk.model.frontend.arrays import ArrayBackend
    from hfrisk.model.frontend.preprocessing import prepare_windows
    from hfrisk.model.readers.dispatch import read_ecg, record_paths
    from hfrisk.serving.scorers import OnnxScorer, find_model_version

    version = find_model_version(SHIPPED_MODEL)
    card = load_card(version / "model_card.json")
    requests = [(read_ecg(p), 0.0) for p in record_paths([records])]
    reference = prepare_windows(requests, card, backend=ArrayBackend("numpy"), batch_size=32)
    start = time.perf_counter()
    on_device = prepare_windows(requests, card, backend=ArrayBackend("torch", device), batch_size=len(requests))
    device_s = time.perf_counter() - start

    def verdict(item) -> tuple:
        if isinstance(item, ECGInputError):
            return ("refused", str(item))
        return (item.quality.fit_to_score, item.quality.reasons, item.n_beats_used, item.n_beats_detected)

    differ = [i for i, (a, b) in enumerate(zip(reference, on_device)) if verdict(a) != verdict(b)]
    both = [(a, b) for a, b in zip(reference, on_device)
            if not isinstance(a, ECGInputError) and not isinstance(b, ECGInputError)
            and a.quality.fit_to_score and b.quality.fit_to_score]
    input_diff = max((float(np.max(np.abs(a.x - b.x))) for a, b in both), default=0.0)
    risk_diff = 0.0
    if both:
        scorer = OnnxScorer(version / "model.onnx", card, threads=1)
        name = card.outputs[0].name
        ours = scorer.score(np.stack([a.x for a, _ in both]))[name]
        theirs = scorer.score(np.stack([b.x for _, b in both]))[name]
        risk_diff = float(np.max(np.abs(ours - theirs)))
    return {"windows": len(requests), "scored_both": len(both), "verdicts_differ": differ,
            "max_input_diff": input_diff, "max_log_risk_diff": risk_diff, "device_s": device_s,
            "agree": not differ and input_diff <= INPUT_TOLERANCE and risk_diff <= LOG_RISK_TOLERANCE}


def markdown(r: dict) -> str:
    c = r["comparison"]
    return "\n".join([
        "# The front end on a device against the front end on numpy",
        "",
        f"Command: `{r['command']}`  ",
        f"When: {r['when']}; device: **{r['device_name']}**; torch {r['torch']}, python {r['python']}.",
        "",
        f"{c['windows']} windows (the first 10 s of each record under `{r['records']}`), prepared on numpy in batches "
        f"of 32 and on `{r['device']}` in one batch ({c['device_s']:.2f} s, the first call: kernels load); "
        f"{c['scored_both']} scored both ways.",
        "",
        "| | value | asked |",
        "| --- | ---: | ---: |",
        f"| windows whose verdict, reasons or beats differ | {len(c['verdicts_differ'])} | 0 |",
        f"| largest difference of a model input (z-scored units) | {c['max_input_diff']:.2e} | <= {INPUT_TOLERANCE:g} |",
        f"| largest difference of the shipped model's log-risk on the two | {c['max_log_risk_diff']:.2e} | "
        f"<= {LOG_RISK_TOLERANCE:g} |",
        "",
        f"**{'The same scores either way' if c['agree'] else 'NOT the same scores'}.**",
    ]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device of the front end")
    parser.add_argument("--records", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"torch sees no CUDA device for --device {args.device}")
    load_before = load_average()
    comparison = compare(args.records, args.device)
    result = {
        "command": command_line("bench_frontend_device", argv),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load": [load_before, load_average()], "device": args.device,
        "device_name": device_name(args.device),
        "torch": torch.__version__, "python": platform.python_version(),
        "records": _shown(args.records),
        "comparison": comparison,
    }
    save(args.out, "frontend-device", result, markdown(result))
    print(markdown(result))
    if not comparison["agree"]:
        print("the front end on the device does not agree with numpy", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
