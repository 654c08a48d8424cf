"""Whole-lead subset masking: the subsets, their frequencies, and that dropped leads are exactly zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.training.data.augment import (
    LEAD_SUBSETS,
    SUBSET_PROBABILITIES,
    LeadSubsetMasking,
    batch_lead_mask,
    subset_masks,
)

torch.set_num_threads(1)


def test_subsets_are_the_papers():
    masks = subset_masks(CANONICAL_LEADS)
    kept = [tuple(np.array(CANONICAL_LEADS)[m]) for m in masks]
    assert kept == [
        ("I", "II"),
        ("I", "II", "V2"),
        ("I", "II", "III", "V2"),
        ("I", "II", "III", "aVR", "aVL", "aVF"),
        ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
        CANONICAL_LEADS,
    ]
    assert SUBSET_PROBABILITIES == (0.1, 0.1, 0.1, 0.1, 0.1, 0.5)


def test_subset_naming_an_unknown_lead_is_refused():
    with pytest.raises(ValueError, match="V7"):
        subset_masks(CANONICAL_LEADS, [("I", "V7")])


def _category(keep: torch.Tensor) -> np.ndarray:
    """Index of the subset each kept-lead row equals (5 = all 12)."""
    masks = torch.as_tensor(subset_masks(CANONICAL_LEADS))
    match = (keep[:, None, :] == masks[None]).all(-1)
    assert bool(match.any(-1).all()), "every mask must be one of the subsets"
    return match.int().argmax(-1).numpy()


def test_per_sample_subset_frequencies_match_the_paper():
    n = 20_000
    keep = LeadSubsetMasking(p=0.5).sample(n, torch.Generator().manual_seed(7))
    observed = np.bincount(_category(keep), minlength=6)
    # Untriggered draws keep all 12 leads too: 0.5 + 0.5 * 0.5 = 0.75; each subset 0.5 * 0.1.
    expected = n * np.array([0.05, 0.05, 0.05, 0.05, 0.05, 0.75])
    statistic = float(((observed - expected) ** 2 / expected).sum())
    assert statistic < chi2.ppf(0.999, df=5), (observed, expected)


def test_dropped_leads_are_exactly_zero_and_kept_leads_untouched():
    x = torch.randn(256, 12, 608) + 3.0  # no real sample is 0
    masked, keep = LeadSubsetMasking(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    assert bool((masked.permute(0, 2, 1)[~keep[:, None, :].expand(-1, 608, -1)] == 0).all())
    assert torch.equal(masked[keep], x[keep])
    assert bool((~keep).any()), "p=1 must drop leads in some ECGs"
    # Non-finite values in a dropped lead must not leak through as NaN.
    x_nan = x.clone()
    x_nan[:, 0] = float("nan")
    masked, keep = LeadSubsetMasking(p=1.0)(x_nan, generator=torch.Generator().manual_seed(0))
    assert not torch.isnan(masked[~keep]).any()


def test_same_mask_per_batch_masks_every_ecg_alike():
    masking = LeadSubsetMasking(p=0.5, same_mask_per_batch=True)
    generator = torch.Generator().manual_seed(3)
    n_masked = 0
    for _ in range(2000):
        keep = masking.sample(16, generator)
        assert bool((keep == keep[0]).all())
        n_masked += int(not keep[0].all())
    assert abs(n_masked / 2000 - 0.25) < 0.04


def test_p_zero_never_masks_and_generator_makes_draws_repeatable():
    x = torch.randn(64, 12, 608)
    out, keep = LeadSubsetMasking(p=0.0)(x, generator=torch.Generator().manual_seed(1))
    assert bool(keep.all()) and torch.equal(out, x)
    a = LeadSubsetMasking(p=0.5).sample(64, torch.Generator().manual_seed(5))
    b = LeadSubsetMasking(p=0.5).sample(64, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_batch_lead_mask_defaults_to_one_subset_per_batch():
    x = torch.ones(32, 12, 608)
    out, keep = batch_lead_mask(x, p=1.0, generator=torch.Generator().manual_seed(2))
    assert bool((keep == keep[0]).all())
    assert torch.equal(out.sum(-1) > 0, keep)


def test_wrong_lead_count_is_refused():
    with pytest.raises(ValueError, match="12"):
        LeadSubsetMasking()(torch.zeros(2, 8, 608))


def test_probabilities_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        LeadSubsetMasking(probabilities=(0.2,) * 6, subsets=LEAD_SUBSETS)
