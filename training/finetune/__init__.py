"""Cox fine-tuning for heart-failure risk (paper §3.2), from pretrained weights or from scratch.

``finetune(FinetuneConfig(), fit_cohort, val_cohort, run_dir, init=...)`` keeps the epoch with the
best validation Harrell C; :func:`load_finetuned` reads it back; docs/training/finetuning.md tells why.
"""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# torch loads only when a name is used.
_EXPORTS = {
    "FinetuneConfig": "config",
    "FinetuneData": "data",
    "finetune": "loop",
    "finetune_tensors": "loop",
    "predict_log_risk": "loop",
    "FinetuneResult": "loop",
    "finetune_method": "method",
    "load_finetuned": "checkpoints",
    "FinetuneCheckpointInfo": "checkpoints",
    "FinetuneRunRecord": "checkpoints",
    "cox_loss": "survival_loss",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
