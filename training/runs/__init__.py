"""Run bookkeeping shared by pretraining and fine-tuning: run folders, checkpoints that resume exactly,
learning-rate schedules, seeding and device choice."""

from __future__ import annotations

import importlib
from typing import Any

# name -> module of this package that defines it, imported on first use:
# run_dir needs no torch.
_EXPORTS = {
    "RunDir": "run_dir",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "resume": "checkpoint",
    "CHECKPOINT_KIND": "checkpoint",
    "WarmupCosine": "schedule",
    "warmup_cosine_schedule": "schedule",
    "seed_everything": "environment",
    "torch_device": "environment",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
