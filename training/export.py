"""From a fine-tuned checkpoint to a servable Triton model repository, with the card saying where it came from.

:func:`export_model` loads the checkpoint, writes the card's ``training`` section, exports ONNX,
checks ONNX Runtime against PyTorch on real records (``PARITY_ATOL``) and refuses to go on
otherwise, then writes the repository; the steps: docs/training/finetuning.md.

>>> export_model("runs/ft/best.pt", "triton_models", version=2)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.network.onnx_export import (
    PARITY_ATOL,
    ParityReport,
    export_onnx,
    onnx_parity,
    recording_inputs,
    store_weights_float16,
)

import hfrisk
from hfrisk.core.logs import get_logger

from hfrisk.training.finetune.checkpoints import load_finetuned

__all__ = ["ExportResult", "export_model", "training_section"]

log = get_logger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the model went, the card it carries and how closely ONNX matched PyTorch."""

    model_dir: Path
    onnx_path: Path
    card: ModelCard
    parity: ParityReport


# Largest output change allowed from storing the weights as float16 (``weights="float16"``): log-risk
# moves ~2e-3 on the bundled model (a hazard ratio off by 0.2 %); more means a weight float16 cannot hold.
FLOAT16_ATOL = 1e-2
WEIGHT_DTYPES = ("float32", "float16")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s,;]+")


def training_section(checkpoint: Path, meta: dict[str, Any], evaluation: dict | None = None) -> dict[str, Any]:
    """The card's ``training`` entry for ``checkpoint`` (its metadata as :func:`load_finetuned` returns it)."""
    extra = meta.get("extra", {})
    provenance = dict(extra.get("provenance", {}))
    data_keys = ("cohort", "time_unit", "n_train", "n_train_events", "n_val", "n_val_events", "run")
    # File names, not paths: the card ships with the model, and a path says where someone's
    # scratch folder was, not what was trained on (the SHA-256 identifies the checkpoint).
    for key in ("cohort", "init"):
        if provenance.get(key):
            provenance[key] = _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, str(provenance[key]))
    section: dict[str, Any] = {
        "task": "incident heart failure, Cox proportional hazards (log-hazard, higher = riskier)",
        "data": {k: provenance[k] for k in data_keys if k in provenance},
        "run": {
            "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": _sha256(checkpoint),
            "epoch": meta.get("epoch"),
            "val_harrell_c": extra.get("val_harrell_c"),
            "selection": "epoch with the best validation Harrell C",
            "encoder": provenance.get("encoder"),
            "init": provenance.get("init"),
            "init_kind": provenance.get("init_kind"),
            "config": meta.get("config", {}),
        },
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": {"hfrisk": hfrisk.__version__, "torch": torch.__version__},
    }
    if evaluation is not None:
        section["evaluation"] = evaluation
    return section


def _parity_inputs(parity: np.ndarray | Sequence[str | Path] | None, meta: dict, card: ModelCard) -> np.ndarray:
    if isinstance(parity, np.ndarray):
        return parity.astype(np.float32)
    records = list(parity) if parity is not None else meta.get("extra", {}).get("provenance", {}).get("parity_records", [])
    records = [Path(r) for r in records if Path(f"{r}.hea").exists() or Path(r).exists()]
    if not records:
        raise ValueError(
            "no real records for the parity check: pass parity_records (WFDB records), or export a "
            "checkpoint whose validation records are still on disk"
        )
    return recording_inputs(records, card)


def export_model(
    checkpoint: str | Path,
    repo_dir: str | Path,
    version: int = 1,
    card: ModelCard | None = None,
    *,
    model_name: str = "hfrisk",
    parity_records: np.ndarray | Sequence[str | Path] | None = None,
    evaluation: dict | None = None,
    atol: float = PARITY_ATOL,
    weights: str = "float32",
    **serving_options,
) -> ExportResult:
    """Export the fine-tuned ``checkpoint`` to ``repo_dir/model_name/version`` (steps in the module docstring).

    ``card`` defaults to the card the checkpoint was trained with; its ``version`` becomes
    ``str(version)`` and its ``training`` section is replaced. ``serving_options`` go to
    :class:`~hfrisk.serving.model_repository.ServingOptions` (``max_batch_size=32`` …).
    ``weights="float16"`` stores the weights at half the size (:func:`store_weights_float16`) once
    the float32 graph has passed the parity check; the card's ``training.weights`` records how far
    that moved the outputs from PyTorch (at most :data:`FLOAT16_ATOL`).
    Raises :class:`~hfrisk.model.network.onnx_export.ParityError` when ONNX Runtime and PyTorch disagree.
    """
    if weights not in WEIGHT_DTYPES:
        raise ValueError(f"weights must be one of {WEIGHT_DTYPES}, not {weights!r}")
    from hfrisk.serving.model_repository import write_model_repository

    checkpoint = Path(checkpoint)
    net, meta = load_finetuned(checkpoint, "cpu")
    trained_card = ModelCard.model_validate(meta["card"])
    base = card or trained_card
    if (len(base.input.leads), base.input.length_samples) != (len(trained_card.input.leads), trained_card.input.length_samples):
        raise ValueError("the card's input differs from the one the checkpoint was trained with")
    inputs = _parity_inputs(parity_records, meta, base)
    with tempfile.TemporaryDirectory(prefix="hfrisk-export-") as tmp:
        onnx_path = export_onnx(net, Path(tmp) / "model.onnx", base, save_card=False)
        report = onnx_parity(onnx_path, net, inputs, atol=atol).check()
        training = training_section(checkpoint, meta, evaluation)
        training["parity"] = {"max_abs_diff": report.max_abs_diff, "atol": atol, "n_records": report.batch_size}
        if weights == "float16":
            store_weights_float16(onnx_path)
            rounded = onnx_parity(onnx_path, net, inputs, atol=FLOAT16_ATOL).check()
            training["weights"] = {"dtype": "float16", "max_abs_diff": rounded.max_abs_diff, "atol": FLOAT16_ATOL,
                                   "n_records": rounded.batch_size}
        final = base.model_copy(update={"version": str(version), "training": training})
        model_dir = write_model_repository(onnx_path, final, repo_dir, model_name=model_name, version=version,
                                           **serving_options)
    log.info("export.done", model_dir=str(model_dir), version=version, parity_worst=report.worst)
    return ExportResult(model_dir, model_dir / str(version) / "model.onnx", final, report)
