"""What a pretraining run records besides weights, as typed models: its provenance and its progress.

Both are stored as plain dicts (``model_dump()``): ``config.json`` and the card carry the
provenance, every checkpoint's ``extra`` the progress, so that resuming reads back where the run
stood. Checkpoints written before ``stopped_early`` existed still load (it defaults to False).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["PretrainProvenance", "PretrainProgress"]


class PretrainProvenance(BaseModel):
    """What the run trained on: the text model and the split sizes the data gave."""

    model_config = ConfigDict(frozen=True)

    text_encoder: str
    text_dim: int
    n_train: int
    n_val: int
    steps_per_epoch: int
    # Records per source and split, and what the exclusions removed (pretrain/data.py); empty in
    # runs made before sources existed.
    corpus: dict[str, Any] = {}


class PretrainProgress(BaseModel):
    """Where a run stands after an epoch (a checkpoint's ``extra``): the best ``monitor`` value so far
    and its epoch, the epoch's metrics row, and whether early stopping has ended the run."""

    model_config = ConfigDict(frozen=True)

    best_value: float = math.inf
    best_epoch: int = 0
    monitor: str
    metrics: dict[str, Any] = {}
    provenance: PretrainProvenance
    # A run that stopped early is finished: resuming it must not train on past its stopping point.
    stopped_early: bool = False
