"""Every fine-tuning setting in one typed, frozen object; defaults are the paper's (§3.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FinetuneConfig"]


class FinetuneConfig(BaseModel):
    """Every fine-tuning setting; defaults are the paper's (§3.2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder: Literal["dual_attention", "xresnet1d101"] = "dual_attention"
    # Weight of the Cox loss; 1 - alpha weighs the reconstruction.
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(100.0, gt=0)
    # 128 for UKB-MI (800 subjects), 1024 for UKB-HYP.
    batch_size: int = Field(128, ge=2)
    # None: 100 epochs from a pretrained encoder, 400 from scratch.
    epochs: int | None = Field(None, ge=1)
    epochs_pretrained: int = Field(100, ge=1)
    epochs_scratch: int = Field(400, ge=1)
    # Probability that a batch has a lead subset masked (one mask for the whole batch).
    lead_mask_prob: float = Field(0.5, ge=0.0, le=1.0)
    freeze_encoder: bool = False
    seed: int = 42
    device: str = "auto"
    # What picks the kept epoch (and stops early): validation Harrell C (the paper's), or the
    # validation Cox partial likelihood, which moves with every pair rather than only with the
    # ranks of a few validation events.
    monitor: Literal["val_c", "val_cox"] = "val_c"
    # Stop when the monitored value has not improved for this many epochs (None: never, as the paper).
    patience: int | None = Field(None, ge=1)
    # The risk head's start: random (the paper's), or a ridge Cox fit on the frozen embedding
    # (training/finetune/head_init.py).
    head_init: Literal["random", "ridge_cox"] = "random"
    # Learning rates tried, one fine-tuning each, the best by the monitored validation value kept
    # (the reference code picks one per fold); empty: just ``lr``.
    lr_grid: tuple[float, ...] = ()
    eval_batch_size: int = Field(256, ge=1)

    def resolved_epochs(self, pretrained: bool) -> int:
        if self.epochs is not None:
            return self.epochs
        return self.epochs_pretrained if pretrained else self.epochs_scratch
