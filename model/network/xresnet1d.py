"""xresnet1d101, the strongest CNN of the PTB-XL benchmark, as a drop-in encoder (baseline).

Follows Strodthoff et al. (IEEE JBHI 2021) and their fastai-derived ``xresnet1d``: a three-conv
stem (12→32→32→64, kernel 5, first stride 2), max-pool, four stages of bottleneck blocks
(``[3, 4, 23, 3]``, expansion 4, 64 → 256 channels, kernel 5, stride 2 from the second stage on,
average-pool shortcut), concat max+avg pooling (2 × 256 = 512) and a linear layer to the
512-d embedding that the risk head and decoder expect.

At 608 samples the time axis goes 608 → 304 (stem) → 152 (pool) → 152 → 76 → 38 → 19.
Parameters: 1,804,672 in the backbone + 262,656 in the final linear layer = 2,067,328
(paper.md §2.2 quotes ~1.80 M for the authors' variant, which has no final linear layer:
pass ``embedding_dim=None`` for that).
"""

from __future__ import annotations

import torch
from torch import nn

from hfrisk.model.network.attention import AttentionMaps

__all__ = ["XResNet1d", "xresnet1d101", "BottleneckBlock1d"]


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *, act: bool = True, zero_bn: bool = False
) -> nn.Sequential:
    """Conv1d (no bias) → BatchNorm1d (→ ReLU), fastai's ``ConvLayer`` for ``ndim=1``."""
    bn = nn.BatchNorm1d(out_channels)
    # fastai starts BN at bias 1e-3 and zeroes the last BN of each residual branch, so every
    # block begins as (almost) the identity; deep stacks of 33 blocks then train stably.
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    nn.init.constant_(bn.bias, 1e-3)
    layers: list[nn.Module] = [
        nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
        bn,
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BottleneckBlock1d(nn.Module):
    """1×1 → k (strided) → 1×1 convs; shortcut = AvgPool (if strided) → 1×1 conv (if widths differ)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, kernel_size: int = 5):
        super().__init__()
        out_channels = width * self.expansion
        self.convs = nn.Sequential(
            _conv_bn(in_channels, width, 1),
            _conv_bn(width, width, kernel_size, stride),
            _conv_bn(width, out_channels, 1, act=False, zero_bn=True),
        )
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(_conv_bn(in_channels, out_channels, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class XResNet1d(nn.Module):
    """``(batch, leads, T)`` → 512-d embedding; same call signature as the dual-attention encoder.

    ``forward(ecg, need_weights=False)`` returns ``(embedding, AttentionMaps(None, None))``:
    this network has no attention, so asking for maps yields none.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 23, 3),
        n_leads: int = 12,
        *,
        stem_channels: tuple[int, int, int] = (32, 32, 64),
        width: int = 64,
        kernel_size: int = 5,
        embedding_dim: int | None = 512,
    ):
        super().__init__()
        expansion = BottleneckBlock1d.expansion
        sizes = (n_leads, *stem_channels)
        self.stem = nn.Sequential(
            *(_conv_bn(sizes[i], sizes[i + 1], kernel_size, stride=2 if i == 0 else 1) for i in range(3)),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        stages = []
        in_channels = stem_channels[-1]
        for i, n_blocks in enumerate(layers):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BottleneckBlock1d(in_channels, width, stride, kernel_size))
                in_channels = width * expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        pooled = 2 * in_channels
        self.linear = nn.Linear(pooled, embedding_dim) if embedding_dim else nn.Identity()
        self.embedding_dim = embedding_dim or pooled
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, ecg: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, AttentionMaps]:
        h = self.stages(self.stem(ecg))
        # fastai's AdaptiveConcatPool1d order: max first, then mean.
        pooled = torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)
        return self.linear(pooled), AttentionMaps(None, None)


def xresnet1d101(n_leads: int = 12, embedding_dim: int | None = 512) -> XResNet1d:
    """The PTB-XL benchmark's xresnet1d101 (layers [3, 4, 23, 3], expansion 4, kernel 5)."""
    return XResNet1d((3, 4, 23, 3), n_leads, embedding_dim=embedding_dim)
