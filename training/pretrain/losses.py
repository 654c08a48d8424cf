r"""The pretraining objective: masked reconstruction error and the ECG–text alignment losses.

.. math::

    L = w_r \,\mathrm{MSE}\big(D(E(m \odot x)),\, x_c\big)
      + w_a \, L_\mathrm{align}\big(p_x(E(m \odot x)),\, p_t(t)\big)

:func:`masked_mse` is the first term (fine-tuning reuses it), :class:`InfoNCELoss` (default) or
:class:`CosineAlignmentLoss` the second; the symbols are explained in docs/training/pretraining.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hfrisk.training.pretrain.config import PretrainConfig

__all__ = ["masked_mse", "CosineAlignmentLoss", "InfoNCELoss", "alignment_loss"]


def masked_mse(reconstruction: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """MSE over the leads a record has (``present`` (batch, leads) bool).

    Absent leads are excluded, not compared with their zero target: the decoder ends in an
    InstanceNorm, so it cannot output a flat lead, and would be penalised for leads no one recorded.
    """
    weight = present.to(reconstruction.dtype)[:, :, None]
    squared = (reconstruction - target).square() * weight
    return squared.sum() / (weight.sum() * reconstruction.shape[-1]).clamp(min=1.0)


class CosineAlignmentLoss(nn.Module):
    """``CosineEmbeddingLoss(margin=0)`` with target +1: mean ``1 - cos(e_ecg, e_text)``."""

    def forward(self, e_ecg: torch.Tensor, e_text: torch.Tensor) -> torch.Tensor:
        target = torch.ones(e_ecg.shape[0], device=e_ecg.device, dtype=e_ecg.dtype)
        return F.cosine_embedding_loss(e_ecg, e_text, target, margin=0.0)


class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE over a batch: ECG *i* should match text *i* against the batch's others.

    ``logits = cos(e_ecg_i, e_text_j) / T``; the loss is the mean of the ECG→text and text→ECG
    cross-entropies. ``T`` starts at ``temperature``; with ``learnable=True`` its log-inverse is a
    parameter (as in CLIP, clamped so that ``1/T <= 100``).

    Records with identical report text are not false negatives in disguise: identical texts give
    identical logit columns, and the softmax treats them as one text with their summed mass, so
    loss and gradients equal those of counting them all as positives (only the floor rises by
    ``log(copies)``).
    """

    _MAX_LOG_SCALE = math.log(100.0)

    def __init__(self, temperature: float = 0.1, learnable: bool = False):
        super().__init__()
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().clamp(max=self._MAX_LOG_SCALE).exp())

    def forward(self, e_ecg: torch.Tensor, e_text: torch.Tensor) -> torch.Tensor:
        a, b = F.normalize(e_ecg, dim=-1), F.normalize(e_text, dim=-1)
        logits = a @ b.T * self.log_scale.clamp(max=self._MAX_LOG_SCALE).exp()
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def alignment_loss(config: PretrainConfig) -> nn.Module:
    """The alignment criterion ``config.loss`` names."""
    if config.loss == "cosine":
        return CosineAlignmentLoss()
    return InfoNCELoss(config.temperature, config.learn_temperature)
