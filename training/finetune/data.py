"""Fine-tuning data: one cohort part's model inputs and outcomes as tensors, rows in cohort order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.data.dataset import model_inputs

__all__ = ["FinetuneData"]

log = get_logger(__name__)


@dataclass(frozen=True)
class FinetuneData:
    """Model inputs and outcomes of one cohort part, as tensors.

    ``x`` ``(n, leads, T)`` float32 (the card's input), ``lead_mask`` ``(n, leads)`` bool (True
    where the record has the lead), ``event`` ``(n,)`` 0/1 and ``time`` ``(n,)``. The
    reconstruction target is ``x`` itself (paper §3.2: MSE(decoder(z), x)).
    """

    x: torch.Tensor
    lead_mask: torch.Tensor
    event: torch.Tensor
    time: torch.Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if not (self.lead_mask.shape[0] == self.event.shape[0] == self.time.shape[0] == n):
            raise ValueError("x, lead_mask, event and time must have the same length")
        if self.x.ndim != 3 or self.lead_mask.shape != self.x.shape[:2]:
            raise ValueError(f"x must be (n, leads, T) and lead_mask (n, leads), got {tuple(self.x.shape)}, "
                             f"{tuple(self.lead_mask.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_arrays(cls, x, lead_mask, event, time) -> FinetuneData:
        return cls(
            torch.as_tensor(np.asarray(x, dtype=np.float32)),
            torch.as_tensor(np.asarray(lead_mask, dtype=bool)),
            torch.as_tensor(np.array(event, dtype=np.int64)),  # copies: cohort arrays may be read-only
            torch.as_tensor(np.array(time, dtype=np.float64)),
        )

    @classmethod
    def from_cohort(cls, cohort: Cohort, card: ModelCard | None = None, cache_dir: str | Path | None = None) -> FinetuneData:
        """Model inputs of every record of ``cohort`` with its outcomes, one row per cohort row.

        Inputs come from :func:`hfrisk.training.data.dataset.model_inputs` (the card's preprocessing,
        cached under ``cache_dir``, default ``<state_dir>/model_inputs``). Records the
        preprocessing refuses stay as all-zero rows, so rows still line up with the cohort; they
        are counted in a warning.
        """
        inputs = model_inputs(cohort.record_paths(), card or default_card(), cache_dir=cache_dir, keep="all")
        if inputs.failed.any():
            log.warning("finetune.records_failed", failed=int(inputs.failed.sum()), records=len(inputs),
                        first=str(inputs.reasons[inputs.failed][0]))
        return cls.from_arrays(inputs.x, inputs.lead_mask, cohort.event, cohort.time)
