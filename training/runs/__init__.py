"""Run bookkeeping shared by pretraining and fine-tuning: run folders, checkpoints that resume exactly,
learning-rate schedules, seeding and device choice."""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
