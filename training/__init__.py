"""Offline training: the model that the stream serves is made here, from PTB-XL and a survival cohort.

* :mod:`~hfrisk.training.data`: PTB-XL and cohort loaders, cached model inputs, augmentation;
* :mod:`~hfrisk.training.pretrain`: ECG–report pretraining;
* :mod:`~hfrisk.training.finetune`: Cox fine-tuning;
* :mod:`~hfrisk.training.metrics`: survival metrics (Harrell/Uno C, td-AUC, Brier), calibration;
* :mod:`~hfrisk.training.evaluation`: the cross-validation protocol, the Cox baseline, the linear probe;
* :mod:`~hfrisk.training.runs`: run folders, checkpoints that resume exactly, schedules, seeding;
* :mod:`~hfrisk.training.export`: checkpoint to Triton model repository, with its model card;
* :mod:`~hfrisk.training.commands`: the ``hfrisk`` subcommands of training.

docs/training/ tells the story (pretraining.md, finetuning.md, synthetic_cohort.md, evidence.md).
"""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# ``import hfrisk.training`` loads no torch.
_EXPORTS = {
    "PretrainConfig": "pretrain.config",
    "FinetuneConfig": "finetune.config",
    "RunDir": "runs.run_dir",
    "export_model": "export",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
