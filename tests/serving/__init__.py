"""Tests of hfrisk.serving, and the ONNX model and inputs they serve.

:func:`exported_model` exports the real network (``HFRiskNet`` through
:func:`hfrisk.model.network.onnx_export.export_onnx`, untrained weights from a fixed seed) once per test
process, so the unit tests here and tests/integration/test_triton_serving.py share one export
(~20 s on two cores).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from hfrisk.model.contract.card import ModelCard

__all__ = ["exported_model", "ecg_windows", "RECORDS_DIR"]

RECORDS_DIR = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"


@lru_cache(maxsize=None)
def _export(card_json: str) -> Path:
    import torch

    from hfrisk.model.network.hfrisk_net import HFRiskNet
    from hfrisk.model.network.onnx_export import export_onnx

    card = ModelCard.model_validate_json(card_json)
    folder = Path(tempfile.mkdtemp(prefix="hfrisk-test-onnx-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    return export_onnx(HFRiskNet.from_card(card), folder / "model.onnx", card, save_card=False)


def exported_model(card: ModelCard) -> Path:
    """An ONNX export of HFRiskNet fitting ``card`` (shared by every test in this process; read-only)."""
    return _export(card.to_json())


_prepared: dict[str, list[np.ndarray]] = {}


def ecg_windows(card: ModelCard, n: int) -> np.ndarray:
    """``n`` model inputs ``(n, 12, 608)`` float32 from the bundled PTB-XL 500 Hz recordings.

    Each record becomes one input through :func:`hfrisk.model.frontend.preprocessing.prepare` (the served
    pipeline: median beat, per-lead z-score); they repeat in order past the 24 bundled records.
    Records are prepared on first need only (about half a second each) and kept for the process.
    """
    from hfrisk.model.network.onnx_export import recording_inputs

    headers = sorted(RECORDS_DIR.rglob("*.hea"))
    if not headers:
        raise FileNotFoundError(f"no WFDB records under {RECORDS_DIR}")
    prepared = _prepared.setdefault(card.to_json(), [])
    needed = min(n, len(headers))
    if len(prepared) < needed:
        prepared.extend(recording_inputs([h.with_suffix("") for h in headers[len(prepared) : needed]], card))
    picks = [prepared[i % len(prepared)] for i in range(n)]
    return np.ascontiguousarray(np.stack(picks), dtype=np.float32)
