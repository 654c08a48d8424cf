"""Whole-lead subset masking: the paper's augmentation for median beats (§3.1, after ISIBrnoAIMT).

With probability ``p`` an ECG keeps one lead subset of :data:`LEAD_SUBSETS` (drawn with
:data:`SUBSET_PROBABILITIES`) and every other lead becomes zero, as the model card fills absent
leads, so the network learns the reduced lead sets of the bedside (table and reasons:
docs/training/data.md). Draws use the caller's ``torch.Generator``, so a resumed run draws the same.

>>> masking = LeadSubsetMasking(p=1.0)
>>> x_masked, keep = masking(torch.ones(4, 12, 608), generator=torch.Generator().manual_seed(0))
>>> bool((x_masked[~keep] == 0).all()), tuple(keep.shape)
(True, (4, 12))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hfrisk.model.contract.card import CANONICAL_LEADS

__all__ = [
    "LEAD_SUBSETS",
    "SUBSET_PROBABILITIES",
    "subset_masks",
    "LeadSubsetMasking",
    "batch_lead_mask",
]

LIMB_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF")
LEAD_SUBSETS: tuple[tuple[str, ...], ...] = (
    ("I", "II"),
    ("I", "II", "V2"),
    ("I", "II", "III", "V2"),
    LIMB_LEADS,
    ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
    CANONICAL_LEADS,
)
SUBSET_PROBABILITIES: tuple[float, ...] = (0.1, 0.1, 0.1, 0.1, 0.1, 0.5)


def subset_masks(leads: Sequence[str] = CANONICAL_LEADS, subsets: Sequence[Sequence[str]] = LEAD_SUBSETS) -> np.ndarray:
    """``(len(subsets), len(leads))`` bool: which of ``leads`` each subset keeps.

    Lead names are compared case-insensitively (``aVR`` = ``AVR``). A subset naming a lead that
    ``leads`` lacks raises ``ValueError``: a silently smaller subset would change the augmentation.
    """
    index = {name.lower(): i for i, name in enumerate(leads)}
    masks = np.zeros((len(subsets), len(leads)), dtype=bool)
    for row, subset in enumerate(subsets):
        unknown = [name for name in subset if name.lower() not in index]
        if unknown:
            raise ValueError(f"lead subset {tuple(subset)} names leads not in {tuple(leads)}: {unknown}")
        masks[row, [index[name.lower()] for name in subset]] = True
    return masks


class LeadSubsetMasking:
    """Keep a random lead subset of each ECG (or of the whole batch) and zero the other leads.

    Args:
        leads: the input's lead order (the model card's ``input.leads``).
        p: probability that an ECG (or the batch) is masked at all.
        subsets, probabilities: the subsets to choose from and their probabilities (sum to 1).
        same_mask_per_batch: one draw for the whole batch instead of one per ECG.
    """

    def __init__(
        self,
        leads: Sequence[str] = CANONICAL_LEADS,
        p: float = 0.5,
        subsets: Sequence[Sequence[str]] = LEAD_SUBSETS,
        probabilities: Sequence[float] = SUBSET_PROBABILITIES,
        same_mask_per_batch: bool = False,
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if len(subsets) != len(probabilities):
            raise ValueError("one probability per subset")
        probs = np.asarray(probabilities, dtype=np.float64)
        if (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"subset probabilities must be >= 0 and sum to 1, got {tuple(probabilities)}")
        self.leads = tuple(leads)
        self.p = float(p)
        self.same_mask_per_batch = bool(same_mask_per_batch)
        self.masks = torch.as_tensor(subset_masks(self.leads, subsets))
        self.probabilities = torch.as_tensor(probs)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(batch_size, leads)`` bool on the CPU: True where a lead is kept."""
        draws = 1 if self.same_mask_per_batch else batch_size
        triggered = torch.rand(draws, generator=generator, dtype=torch.float64) < self.p
        choice = torch.multinomial(self.probabilities, draws, replacement=True, generator=generator)
        keep = torch.where(triggered[:, None], self.masks[choice], torch.ones(1, len(self.leads), dtype=torch.bool))
        return keep.expand(batch_size, -1).clone() if self.same_mask_per_batch else keep

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(batch, leads, T)`` with the dropped leads exactly zero, and the kept-lead mask."""
        if x.ndim != 3 or x.shape[1] != len(self.leads):
            raise ValueError(f"expected (batch, {len(self.leads)}, T), got {tuple(x.shape)}")
        keep = self.sample(x.shape[0], generator).to(x.device)
        # where(), not multiplication: a NaN or inf in a dropped lead must not survive as NaN.
        return torch.where(keep[:, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device)), keep


def batch_lead_mask(
    x: torch.Tensor,
    leads: Sequence[str] = CANONICAL_LEADS,
    p: float = 0.5,
    same_mask_per_batch: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One call of :class:`LeadSubsetMasking`; defaults as in fine-tuning (one subset per batch)."""
    return LeadSubsetMasking(leads, p, same_mask_per_batch=same_mask_per_batch)(x, generator)
