"""Fine-tuning checkpoints: what they record besides weights, and loading one (or a pretrained one) into a network.

Checkpoints are :mod:`hfrisk.training.runs.checkpoint` files; ``extra`` holds a
:class:`FinetuneCheckpointInfo`, whose ``stage`` tells fine-tuned from pretrained ones. The run
folder's ``config.json`` holds a :class:`FinetuneRunRecord`. Both are stored as plain JSON-ready
dicts, so older files read as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from hfrisk.model.contract.card import ModelCard
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.finetune.config import FinetuneConfig
from hfrisk.training.pretrain.encoder_weights import load_pretrained_encoder
from hfrisk.training.runs.checkpoint import load_checkpoint

__all__ = ["STAGE", "FinetuneCheckpointInfo", "FinetuneRunRecord", "is_finetuned", "load_init", "load_finetuned"]

STAGE = "finetune"


class FinetuneCheckpointInfo(BaseModel):
    """A fine-tuning checkpoint's ``extra``: its validation C and where data and initial weights came from."""

    model_config = ConfigDict(frozen=True)

    stage: Literal["finetune"] = STAGE
    val_harrell_c: float
    provenance: dict[str, Any] = {}


class FinetuneRunRecord(BaseModel):
    """A fine-tuning run folder's ``config.json``: the settings, the epoch budget and the data sizes."""

    model_config = ConfigDict(frozen=True)

    stage: Literal["finetune"] = STAGE
    config: FinetuneConfig
    epochs: int
    provenance: dict[str, Any] = {}
    n_train: int
    n_train_events: int
    n_val: int
    n_val_events: int


def is_finetuned(state: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint comes from fine-tuning (rather than pretraining)."""
    return (state.get("extra") or {}).get("stage") == STAGE


def load_init(net: HFRiskNet, init: str | Path) -> dict[str, Any]:
    """Initialise ``net`` from a checkpoint: a fine-tuned one (all weights) or a pretrained one
    (encoder and decoder, through :func:`~hfrisk.training.pretrain.encoder_weights.load_pretrained_encoder`)."""
    path = Path(init)
    try:
        state = load_checkpoint(path)
    except ValueError:
        state = None
    if state is not None and is_finetuned(state):
        net.load_state_dict(state["model"])
        return {"init": str(path), "init_kind": "finetuned"}
    loaded = load_pretrained_encoder(path, net)
    return {"init": str(path), "init_kind": "pretrained", "init_epoch": loaded.get("epoch"),
            "init_decoder": loaded.get("decoder")}


def load_finetuned(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[HFRiskNet, dict[str, Any]]:
    """The network of a fine-tuning checkpoint (eval mode) and the checkpoint without its weights.

    ``meta["extra"]`` holds ``stage``, ``val_harrell_c`` and ``provenance`` (data, initialisation).
    """
    state = load_checkpoint(checkpoint)
    if not is_finetuned(state):
        raise ValueError(f"{checkpoint} is not a fine-tuning checkpoint (extra.stage != {STAGE!r})")
    card = ModelCard.model_validate(state["card"])
    net = HFRiskNet.from_card(card, encoder=state["config"]["encoder"])
    net.load_state_dict(state["model"])
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}
    return net.to(device).eval(), meta
