"""The ECG dual-attention network for heart-failure risk (Chen et al., arXiv 2403.10581; paper.md §2).

Parts, with parameter counts at 12 leads × 608 samples:

* :class:`DualAttentionEncoder` (1,274,536): per-lead conv stem, five residual 2-D down-sampling
  blocks to ``(batch, 16, 12, 19)``, :class:`~hfrisk.model.network.attention.DualAttention`, then max and
  average pooling heads concatenated to a 512-d embedding.
* :class:`RiskHead` (2,573): the Cox log-risk, higher = riskier.
* :class:`ReconstructionDecoder` (110,570): embedding → the 12 × 608 beat, the auxiliary task kept
  during fine-tuning.
* :class:`AlignmentHeads` (393,984 with a 768-d text model): projections used only in pretraining.
* :class:`HFRiskNet` = encoder + risk head + decoder (1,387,679), and :class:`ServingModule`, its
  export/serving face that returns exactly the model card's outputs.

>>> net = HFRiskNet().eval()
>>> log_risk, lead_map, temporal_maps = net(torch.randn(2, 12, 608), return_attention=True)
>>> tuple(log_risk.shape), tuple(lead_map.shape), tuple(temporal_maps.shape)
((2, 1), (2, 12, 12), (2, 12, 19, 19))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hfrisk.model.network.attention import AttentionMaps, DualAttention
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.network.layers import BatchwiseDropout, ResidualBlock2d
from hfrisk.model.network.xresnet1d import xresnet1d101

__all__ = [
    "DualAttentionEncoder",
    "RiskHead",
    "ReconstructionDecoder",
    "ProjectionHead",
    "AlignmentHeads",
    "HFRiskNet",
    "TrainOutput",
    "ServingModule",
    "ENCODERS",
    "build_encoder",
    "count_parameters",
]

EMBEDDING_DIM = 512
# Feature channels per lead: after the stem, then after each of the five down-sampling blocks.
ENCODER_CHANNELS = (4, 8, 16, 16, 16, 16)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _init_weights(module: nn.Module) -> None:
    """The authors' initialisation: Kaiming-normal convs, Xavier-uniform linears with zero bias."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DualAttentionEncoder(nn.Module):
    """``(batch, leads, T)`` → ``(batch, 512)`` embedding plus the attention maps.

    ``T`` must be a multiple of 32 (five halvings); the attention works on ``T / 32`` steps.
    """

    def __init__(
        self,
        n_leads: int = 12,
        length_samples: int = 608,
        *,
        lead_attention: bool = True,
        temporal_attention: bool = True,
        channels: tuple[int, ...] = ENCODER_CHANNELS,
        embedding_dim: int = EMBEDDING_DIM,
    ):
        super().__init__()
        n_down = len(channels) - 1
        if length_samples % 2**n_down:
            raise ValueError(f"length_samples must be a multiple of {2**n_down}, got {length_samples}")
        self.n_leads, self.length_samples, self.base_channels = n_leads, length_samples, channels[0]
        self.n_steps = length_samples // 2**n_down
        stem_channels = n_leads * channels[0]
        self.stem = nn.Sequential(
            # Depthwise per lead first, so each lead gets its own filters before leads are mixed.
            nn.Conv1d(n_leads, stem_channels, kernel_size=5, padding=2, groups=n_leads),
            nn.GroupNorm(n_leads, stem_channels),
            nn.GELU(),
            nn.Conv1d(stem_channels, stem_channels, kernel_size=5, padding=2),
            nn.GroupNorm(n_leads, stem_channels),
            nn.GELU(),
        )
        self.blocks = nn.Sequential(
            *(ResidualBlock2d(channels[i], channels[i + 1], mode="down") for i in range(n_down))
        )
        self.attention = DualAttention(
            n_leads,
            channels[-1],
            self.n_steps,
            lead_attention=lead_attention,
            temporal_attention=temporal_attention,
        )
        pooled_channels = channels[-1] * n_leads
        self.avg_head = nn.Conv1d(pooled_channels, embedding_dim // 2, kernel_size=1)
        self.max_head = nn.Conv1d(pooled_channels, embedding_dim // 2, kernel_size=1)
        self.embedding_dim = embedding_dim
        _init_weights(self)

    @property
    def has_lead_attention(self) -> bool:
        return self.attention.lead is not None

    @property
    def has_temporal_attention(self) -> bool:
        return self.attention.temporal is not None

    def forward(self, ecg: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, AttentionMaps]:
        b = ecg.shape[0]
        # (batch, leads·C, T) → (batch, C, leads, T): the layout of the authors' code, kept so their
        # checkpoints behave the same here.
        h = self.stem(ecg).reshape(b, self.base_channels, self.n_leads, self.length_samples)
        features, maps = self.attention(self.blocks(h), need_weights)
        embedding = torch.cat(
            [self.avg_head(features).mean(dim=-1), self.max_head(features).amax(dim=-1)], dim=1
        )
        return embedding, maps


def _build_dual_attention(n_leads: int, length_samples: int, **flags) -> nn.Module:
    return DualAttentionEncoder(n_leads, length_samples, **flags)


def _build_xresnet1d101(n_leads: int, length_samples: int, **flags) -> nn.Module:
    if flags.get("lead_attention") is False or flags.get("temporal_attention") is False:
        raise ValueError("xresnet1d101 has no attention to switch off")
    return xresnet1d101(n_leads, EMBEDDING_DIM)


# name → builder(n_leads, length_samples, **flags); every encoder maps (B, leads, T) to (B, 512).
ENCODERS = {"dual_attention": _build_dual_attention, "xresnet1d101": _build_xresnet1d101}


def build_encoder(name: str = "dual_attention", n_leads: int = 12, length_samples: int = 608, **flags) -> nn.Module:
    """An encoder by name (see :data:`ENCODERS`); ``flags`` are the attention ablation switches."""
    try:
        builder = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}") from None
    return builder(n_leads, length_samples, **flags)


class RiskHead(nn.Sequential):
    """BatchNorm1d(512) → BatchwiseDropout(0.25) → Linear(512, 3) → ReLU → BatchNorm1d(3) → Linear(3, 1).

    The output is a Cox log-risk (log-hazard up to a constant): higher = riskier. The 3-d hidden
    layer is the "last hidden feature" the paper plots; a hidden layer this small gets no dropout.
    """

    def __init__(self, in_features: int = EMBEDDING_DIM, hidden: int = 3, dropout: float = 0.25):
        super().__init__(
            nn.BatchNorm1d(in_features),
            BatchwiseDropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, 1),
        )
        _init_weights(self)

    def hidden_features(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 3-d representation before the last linear layer."""
        return self[:-1](embedding)


class ReconstructionDecoder(nn.Module):
    """512-d embedding → ``(batch, leads, T)`` beat (z-scored scale, like the network input).

    Linear(512→T/32·4) → Linear(→ 4·leads·T/32) → ``(batch, 4, leads, T/32)`` → five up-sampling
    residual blocks (4 channels) → a residual block to 1 channel → depthwise 1×1 conv per lead →
    InstanceNorm1d (which makes every output lead zero-mean, unit-variance).
    """

    def __init__(
        self,
        embedding_dim: int = EMBEDDING_DIM,
        n_leads: int = 12,
        length_samples: int = 608,
        *,
        channels: int = 4,
        n_upsample: int = 5,
    ):
        super().__init__()
        if length_samples % 2**n_upsample:
            raise ValueError(f"length_samples must be a multiple of {2**n_upsample}, got {length_samples}")
        self.n_leads, self.channels = n_leads, channels
        self.n_steps = length_samples // 2**n_upsample
        self.linear = nn.Sequential(
            nn.Linear(embedding_dim, channels * self.n_steps),
            nn.Linear(channels * self.n_steps, channels * n_leads * self.n_steps),
        )
        self.blocks = nn.Sequential(
            *(ResidualBlock2d(channels, channels, mode="up") for _ in range(n_upsample)),
            ResidualBlock2d(channels, 1, mode="same"),
        )
        self.output = nn.Sequential(nn.Conv1d(n_leads, n_leads, kernel_size=1, groups=n_leads), nn.InstanceNorm1d(n_leads))
        _init_weights(self)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        h = self.linear(embedding).reshape(embedding.shape[0], self.channels, self.n_leads, self.n_steps)
        return self.output(self.blocks(h).squeeze(1))


class ProjectionHead(nn.Sequential):
    """Linear → ReLU → Linear, mapping into the shared ECG–text space of pretraining."""

    def __init__(self, in_features: int, hidden: int = 256, out_features: int = 128):
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
        _init_weights(self)


class AlignmentHeads(nn.Module):
    """The two pretraining projections: ECG embedding 512→256→128 and text embedding D→256→128.

    ``text_dim`` is the frozen language model's width (768 for Bio_ClinicalBERT, 384 for MiniLM).
    The alignment loss compares the L2-normalised outputs.
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, text_dim: int = 768, hidden: int = 256, out_features: int = 128):
        super().__init__()
        self.ecg = ProjectionHead(embedding_dim, hidden, out_features)
        self.text = ProjectionHead(text_dim, hidden, out_features)

    def forward(self, ecg_embedding: torch.Tensor, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ecg(ecg_embedding), self.text(text_embedding)


class TrainOutput(NamedTuple):
    """What fine-tuning needs from one encoder pass."""

    log_risk: torch.Tensor  # (batch, 1)
    reconstruction: torch.Tensor  # (batch, leads, T)
    embedding: torch.Tensor  # (batch, 512)


class HFRiskNet(nn.Module):
    """Encoder + risk head (+ reconstruction decoder): the fine-tuned model of the paper.

    ``forward(ecg)`` → log-risk ``(batch, 1)``; with ``return_attention=True`` also the cross-lead
    map ``(batch, 12, 12)`` and the temporal maps ``(batch, 12, 19, 19)`` (head-averaged).

    ``lead_attention`` / ``temporal_attention`` are the paper's ablation switches;
    ``encoder="xresnet1d101"`` swaps in the PTB-XL benchmark CNN under the same head.
    """

    def __init__(
        self,
        n_leads: int = 12,
        length_samples: int = 608,
        *,
        encoder: str = "dual_attention",
        lead_attention: bool = True,
        temporal_attention: bool = True,
        with_decoder: bool = True,
    ):
        super().__init__()
        self.n_leads, self.length_samples, self.encoder_name = n_leads, length_samples, encoder
        self.encoder = build_encoder(
            encoder, n_leads, length_samples, lead_attention=lead_attention, temporal_attention=temporal_attention
        )
        self.risk_head = RiskHead(EMBEDDING_DIM)
        self.decoder = ReconstructionDecoder(EMBEDDING_DIM, n_leads, length_samples) if with_decoder else None

    @classmethod
    def from_card(cls, card: ModelCard, **kwargs) -> "HFRiskNet":
        """Network sized for ``card``'s input (lead count, ``length_samples``)."""
        return cls(len(card.input.leads), card.input.length_samples, **kwargs)

    @property
    def has_attention(self) -> bool:
        """True when both attention branches exist, i.e. the card's attention outputs can be served."""
        return bool(getattr(self.encoder, "has_lead_attention", False) and getattr(self.encoder, "has_temporal_attention", False))

    def _check(self, ecg: torch.Tensor) -> None:
        if torch.jit.is_tracing():
            return  # shapes are symbolic there; the exported graph checks its own input
        expected = (self.n_leads, self.length_samples)
        if ecg.ndim != 3 or tuple(ecg.shape[1:]) != expected:
            raise ECGInputError(
                InputErrorReason.BAD_SHAPE,
                f"network input must be (batch, {expected[0]}, {expected[1]}), got {tuple(ecg.shape)}",
            )

    def encode(self, ecg: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, AttentionMaps]:
        """Embedding ``(batch, 512)`` and attention maps (``None`` fields unless requested and present)."""
        self._check(ecg)
        return self.encoder(ecg, need_weights)

    def forward(self, ecg: torch.Tensor, return_attention: bool = False):
        embedding, maps = self.encode(ecg, need_weights=return_attention)
        log_risk = self.risk_head(embedding)
        if not return_attention:
            return log_risk
        return log_risk, maps.lead, maps.temporal

    def embed(self, ecg: torch.Tensor) -> torch.Tensor:
        """The 512-d ECG embedding z."""
        return self.encode(ecg)[0]

    def reconstruct(self, ecg: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction ``(batch, leads, T)`` of the input beat."""
        if self.decoder is None:
            raise RuntimeError("this network was built with with_decoder=False")
        return self.decoder(self.embed(ecg))

    def forward_train(self, ecg: torch.Tensor) -> TrainOutput:
        """Log-risk, reconstruction and embedding from a single encoder pass (fine-tuning loss)."""
        if self.decoder is None:
            raise RuntimeError("this network was built with with_decoder=False")
        embedding, _ = self.encode(ecg)
        return TrainOutput(self.risk_head(embedding), self.decoder(embedding), embedding)


class ServingModule(nn.Module):
    """What is exported and served: one ECG batch in, the model card's four outputs out, in order.

    * ``log_risk`` ``(batch, 1)``
    * ``lead_attention`` ``(batch, 12)``: attention each lead receives, the column mean of the
      head-averaged 12×12 map (sums to 1)
    * ``lead_attention_map`` ``(batch, 12, 12)``: query lead × key lead, rows sum to 1
    * ``temporal_attention`` ``(batch, 12, 19)``: per lead, each time step's weight, the mean over
      queries of its 19×19 map (rows sum to 1)

    The decoder is not part of serving. The wrapper holds ``net`` (it does not copy it) and forces
    nothing: call ``.eval()`` before serving or exporting.
    """

    OUTPUT_NAMES = ("log_risk", "lead_attention", "lead_attention_map", "temporal_attention")

    def __init__(self, net: HFRiskNet):
        super().__init__()
        if not net.has_attention:
            raise ValueError(
                "the model card's outputs need both attention branches; "
                f"this network ({net.encoder_name}) lacks one, so it cannot be served under the card"
            )
        self.net = net
        self.training = net.training  # a fresh Module says "training"; mirror the wrapped net instead

    def forward(self, ecg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        log_risk, lead_map, temporal_maps = self.net(ecg, return_attention=True)
        return log_risk, lead_map.mean(dim=1), lead_map, temporal_maps.mean(dim=2)
