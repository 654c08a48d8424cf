"""Carrying a pretraining run's encoder (and decoder) into a network, the hand-over to fine-tuning and the probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hfrisk.core.logs import get_logger
from hfrisk.model.network.hfrisk_net import HFRiskNet

__all__ = ["load_pretrained_encoder"]

log = get_logger(__name__)


def load_pretrained_encoder(path: str | Path, net: HFRiskNet, state: Any = None) -> dict[str, Any]:
    """Copy the encoder and decoder weights of a pretraining checkpoint into ``net`` (for fine-tuning).

    Accepts a :func:`~hfrisk.training.pretrain.loop.pretrain` checkpoint (``best.pt``/``last.pt``),
    a ``{"state_dict": ...}`` file or a bare state dict. Every encoder tensor of ``net`` must be
    found with the same shape (a checkpoint for another lead set or length raises); the decoder is
    copied when both have one. The risk head is left as it is: pretraining never trains it.
    ``state``: the file's contents when the caller has already read them (``path`` then only
    names it). Returns what was loaded.

    >>> net = HFRiskNet.from_card(default_card())                  # doctest: +SKIP
    >>> load_pretrained_encoder("runs/pretrain/best.pt", net)      # doctest: +SKIP
    """
    if state is None:
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        weights, epoch = state["model"], state.get("epoch")
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        weights, epoch = state["state_dict"], state.get("epoch")
    else:
        weights, epoch = state, None
    own = net.state_dict()
    wanted = [k for k in own if k.startswith("encoder.") or (k.startswith("decoder.") and net.decoder is not None)]
    missing = [k for k in wanted if k.startswith("encoder.") and k not in weights]
    mismatched = [k for k in wanted if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or mismatched:
        raise ValueError(
            f"{path} does not fit this network: {len(missing)} encoder tensors missing (e.g. {missing[:3]}), "
            f"{len(mismatched)} with another shape (e.g. {mismatched[:3]})"
        )
    loaded = {k: weights[k] for k in wanted if k in weights}
    net.load_state_dict(loaded, strict=False)
    decoder = any(k.startswith("decoder.") for k in loaded)
    log.info("pretrain.encoder_loaded", path=str(path), tensors=len(loaded), decoder=decoder, epoch=epoch)
    return {"path": str(path), "tensors": len(loaded), "decoder": decoder, "epoch": epoch}
