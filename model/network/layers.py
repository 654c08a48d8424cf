"""Building blocks of the dual-attention ECG network (Chen et al., arXiv 2403.10581, paper.md §2).

Everything here is generic: dropout that masks a whole batch alike, fixed sinusoidal position
codes, the transformer feed-forward block and the residual 2-D convolution blocks that
down-sample (encoder) or up-sample (decoder) along time only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BatchwiseDropout",
    "SinusoidalPositionalEncoding",
    "FeedForward",
    "ResidualBlock2d",
]


class BatchwiseDropout(nn.Module):
    """Dropout with one mask shared by every sample of the batch; identity in eval mode.

    Cox partial likelihood compares each event's risk with the risks of everyone still at risk in
    the same batch. Ordinary dropout would score those subjects under different random feature
    masks, adding noise exactly where the ranking is made; one mask per batch keeps the comparison
    fair (paper.md §3.2).

    >>> drop = BatchwiseDropout(0.5).train()
    >>> y = drop(torch.ones(4, 8))
    >>> bool((y == y[0]).all())
    True

    ``batch_dim`` names the batch axis; the mask has size 1 there and the input's size elsewhere,
    and kept entries are scaled by ``1 / (1 - p)`` as in :func:`torch.nn.functional.dropout`.
    """

    def __init__(self, p: float = 0.5, batch_dim: int = 0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.batch_dim = batch_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = list(x.shape)
        shape[self.batch_dim] = 1
        keep = torch.rand(shape, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_dim={self.batch_dim}"


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sine/cosine codes over token position, then batch-wise dropout.

    Input and output are ``(batch, tokens, dim)``. Even feature indices carry
    ``sin(pos / 10000^(2i/dim))``, odd ones the cosine, as in Vaswani et al.; the codes are a
    non-persistent buffer, so checkpoints do not carry them.
    """

    def __init__(self, n_tokens: int, dim: int, dropout: float = 0.2):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal encoding needs an even dimension, got {dim}")
        position = torch.arange(n_tokens, dtype=torch.float32).unsqueeze(1)
        inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        codes = torch.zeros(n_tokens, dim)
        codes[:, 0::2] = torch.sin(position * inv_freq)
        codes[:, 1::2] = torch.cos(position * inv_freq)
        self.register_buffer("codes", codes.unsqueeze(0), persistent=False)
        self.dropout = BatchwiseDropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(tokens + self.codes[:, : tokens.shape[1]])


class FeedForward(nn.Module):
    """Transformer MLP ``dim → 4·dim → dim`` with GELU and batch-wise dropout after each layer."""

    def __init__(self, dim: int, hidden_dim: int | None = None, dropout: float = 0.2):
        super().__init__()
        hidden_dim = hidden_dim or 4 * dim
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = BatchwiseDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.act(self.fc1(x)))
        return self.dropout(self.fc2(x))


class ResidualBlock2d(nn.Module):
    """Residual block on ``(batch, channels, leads, time)`` whose kernels span time only.

    Kernels are ``(1, kernel_size)``, so every lead is filtered by the same weights and leads never
    mix here (mixing is the attention's job).

    ``mode``:
      * ``"down"`` – main path conv with stride (1, 2); skip path MaxPool(1, 2) + 1×1 conv. Halves T.
      * ``"up"`` – ConvTranspose (1, 4) stride (1, 2) + 1×1 conv first; the result is both the
        skip and the main path's input. Doubles T.
      * ``"same"`` – no resampling; 1×1 conv on the skip path.

    Main path: conv → BatchNorm2d → LeakyReLU → conv → BatchNorm2d → LeakyReLU; the sum of both
    paths goes through GELU, as in the authors' code.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down", kernel_size: int = 5):
        super().__init__()
        if mode not in ("down", "up", "same"):
            raise ValueError(f"mode must be 'down', 'up' or 'same', got {mode!r}")
        self.mode = mode
        pad = (0, (kernel_size - 1) // 2)
        kernel = (1, kernel_size)
        if mode == "up":
            self.upsample = nn.Sequential(
                nn.ConvTranspose2d(in_channels, out_channels, kernel_size=(1, 4), stride=(1, 2), padding=(0, 1)),
                nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
            )
            conv1_in, stride = out_channels, (1, 1)
            self.skip = nn.Identity()
        else:
            self.upsample = nn.Identity()
            conv1_in = in_channels
            stride = (1, 2) if mode == "down" else (1, 1)
            pool = nn.MaxPool2d(kernel_size=(1, 2), stride=(1, 2)) if mode == "down" else nn.Identity()
            self.skip = nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, kernel_size=1))
        self.conv1 = nn.Conv2d(conv1_in, out_channels, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        y = F.leaky_relu(self.bn1(self.conv1(x)))
        y = F.leaky_relu(self.bn2(self.conv2(y)))
        return self.act(y + self.skip(x))
