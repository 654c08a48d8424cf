"""The dual attention of the ECG network: cross-lead attention beside lead-wise temporal attention.

Both branches read the convolutional feature map ``h`` of shape ``(batch, F, leads, T)`` (F=16,
12 leads, T=19 for a 608-sample beat) and return ``(batch, F·leads, T)``; :class:`DualAttention`
sums them (paper.md §2.1 step 4: h' = h^LA + h^TA).

* Cross-lead attention: one pre-LN transformer block over 12 lead tokens of F·T = 304 dims.
* Temporal attention: 12 independent pre-LN blocks (no weight sharing), one per lead, over
  T = 19 time tokens of F = 16 dims.

Attention maps are averaged over the 8 heads; every row is a probability distribution over keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hfrisk.model.network.layers import BatchwiseDropout, FeedForward, SinusoidalPositionalEncoding

__all__ = [
    "SelfAttentionBlock",
    "CrossLeadAttention",
    "LeadTemporalAttention",
    "DualAttention",
    "AttentionMaps",
]

N_HEADS = 8
DROPOUT = 0.2


class AttentionMaps(NamedTuple):
    """Head-averaged attention maps of one forward pass; ``None`` where the branch is ablated.

    ``lead``: ``(batch, leads, leads)``, query lead × key lead.
    ``temporal``: ``(batch, leads, T, T)``, per lead query step × key step.
    """

    lead: torch.Tensor | None
    temporal: torch.Tensor | None


class SelfAttentionBlock(nn.Module):
    """Pre-LN transformer layer: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))`` on ``(batch, tokens, dim)``.

    Uses :class:`torch.nn.MultiheadAttention` (no attention dropout, as in the paper) so the
    parameters are laid out as in the authors' checkpoints.
    """

    def __init__(self, dim: int, n_heads: int = N_HEADS, dropout: float = DROPOUT):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, 4 * dim, dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.attn_norm(x)
        attended, weights = self.attn(normed, normed, normed, need_weights=need_weights, average_attn_weights=True)
        x = x + attended
        x = x + self.mlp(self.mlp_norm(x))
        return x, weights


class CrossLeadAttention(nn.Module):
    """Attention among the leads: each lead's whole ``F × T`` feature map is one token."""

    def __init__(self, n_leads: int, n_features: int, n_steps: int, dropout: float = DROPOUT):
        super().__init__()
        self.n_leads, self.n_features, self.n_steps = n_leads, n_features, n_steps
        dim = n_features * n_steps
        self.position = SinusoidalPositionalEncoding(n_leads, dim, dropout)
        self.block = SelfAttentionBlock(dim, N_HEADS, dropout)

    def forward(self, h: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = h.shape[0]
        tokens = h.permute(0, 2, 1, 3).reshape(b, self.n_leads, self.n_features * self.n_steps)
        out, weights = self.block(self.position(tokens), need_weights)
        out = out.reshape(b, self.n_leads, self.n_features, self.n_steps).permute(0, 2, 1, 3)
        return out.reshape(b, self.n_features * self.n_leads, self.n_steps), weights


class LeadTemporalAttention(nn.Module):
    """Attention along time within each lead, with one independent block per lead."""

    def __init__(self, n_leads: int, n_features: int, n_steps: int, dropout: float = DROPOUT):
        super().__init__()
        self.n_leads, self.n_features, self.n_steps = n_leads, n_features, n_steps
        # Fixed codes, so one module serves all leads; each call draws its own dropout mask.
        self.position = SinusoidalPositionalEncoding(n_steps, n_features, dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(n_features, N_HEADS, dropout) for _ in range(n_leads))

    def forward(self, h: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = h.shape[0]
        outputs, maps = [], []
        for lead, block in enumerate(self.blocks):
            tokens = h[:, :, lead, :].transpose(1, 2)  # (batch, T, F)
            out, weights = block(self.position(tokens), need_weights)
            outputs.append(out.transpose(1, 2))
            maps.append(weights)
        out = torch.stack(outputs, dim=2).reshape(b, self.n_features * self.n_leads, self.n_steps)
        return out, (torch.stack(maps, dim=1) if need_weights else None)


class DualAttention(nn.Module):
    """``h' = LA(h) + TA(h)`` on ``(batch, F, leads, T)``, returned as ``(batch, F·leads, T)``.

    The ablation switches replace a branch by the identity, so ``h' = LA(h) + h`` without temporal
    attention and ``h' = h + TA(h)`` without lead attention; the parameter counts then drop by
    exactly the branch's size (paper.md §2.2). With both off the features pass through batch-wise
    dropout instead, as the authors regularise that variant.
    """

    def __init__(
        self,
        n_leads: int,
        n_features: int,
        n_steps: int,
        *,
        lead_attention: bool = True,
        temporal_attention: bool = True,
        dropout: float = DROPOUT,
    ):
        super().__init__()
        self.n_leads, self.n_features, self.n_steps = n_leads, n_features, n_steps
        self.lead = CrossLeadAttention(n_leads, n_features, n_steps, dropout) if lead_attention else None
        self.temporal = LeadTemporalAttention(n_leads, n_features, n_steps, dropout) if temporal_attention else None
        self.plain_dropout = BatchwiseDropout(dropout) if not (lead_attention or temporal_attention) else nn.Identity()

    def forward(self, h: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, AttentionMaps]:
        flat = h.reshape(h.shape[0], self.n_features * self.n_leads, self.n_steps)
        lead_out, lead_map = self.lead(h, need_weights) if self.lead is not None else (flat, None)
        time_out, time_maps = self.temporal(h, need_weights) if self.temporal is not None else (flat, None)
        return self.plain_dropout(lead_out + time_out), AttentionMaps(lead_map, time_maps)
