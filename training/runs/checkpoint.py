"""Training checkpoints that resume exactly: weights, optimiser, schedule, epoch and every RNG state.

One ``torch.save`` dict (:data:`CHECKPOINT_KIND`; its keys: docs/training/runs.md), written
atomically. Restoring all of it and continuing gives the same numbers as a run that never stopped,
which ``tests/training/test_pretrain.py`` checks.

>>> save_checkpoint("last.pt", model=net, optimizer=opt, scheduler=sched, epoch=3,
...                 config=cfg.model_dump(mode="json"), card=card)          # doctest: +SKIP
>>> state = resume("last.pt", model=net, optimizer=opt, scheduler=sched)  # doctest: +SKIP
>>> state["epoch"]                                                          # doctest: +SKIP
3
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hfrisk.model.contract.card import ModelCard

__all__ = ["CHECKPOINT_KIND", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "resume"]

CHECKPOINT_KIND = "hfrisk-pretrain/1"


def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random state a training step reads: Python, NumPy, torch (CPU, CUDA) and ``generators``."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore :func:`rng_state`. CUDA states are restored only where CUDA is available (a CPU
    machine resuming a GPU run continues, but its dropout masks differ from the GPU's anyway)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"checkpoint holds no state for generator {name!r}")
        generator.set_state(saved[name])


def _cpu_state(module: nn.Module | None) -> dict[str, torch.Tensor] | None:
    if module is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    epoch: int,
    config: Mapping[str, Any],
    card: ModelCard,
    heads: nn.Module | None = None,
    criterion: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    payload = {
        "kind": CHECKPOINT_KIND,
        "model": _cpu_state(model),
        "heads": _cpu_state(heads),
        "criterion": _cpu_state(criterion),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "rng": rng_state(generators),
        "config": dict(config),
        "card": card.model_dump(mode="json"),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; refuses other files.

    ``weights_only=False`` because the RNG states are Python/NumPy objects: load only checkpoints
    you wrote yourself.
    """
    state = torch.load(Path(path), map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not an hfrisk pretraining checkpoint ({CHECKPOINT_KIND})")
    return state


def resume(
    checkpoint: str | Path | Mapping[str, Any],
    *,
    model: nn.Module,
    heads: nn.Module | None = None,
    criterion: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load every state of ``checkpoint`` into the given objects; returns the checkpoint dict.

    The objects must be built as for the saved run (same configuration); the optimiser moves its
    state to the parameters' device itself.
    """
    state = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
    model.load_state_dict(state["model"])
    for name, obj in (("heads", heads), ("criterion", criterion), ("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if state.get(name) is None:
            raise KeyError(f"checkpoint holds no {name} state")
        obj.load_state_dict(state[name])
    if restore_rng:
        set_rng_state(state["rng"], generators)
    return dict(state)
