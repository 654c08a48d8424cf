"""EventStratifiedBatchSampler: coverage, stratification and determinism, as properties."""

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import hfrisk.training.data.sampling as sampling
from hfrisk.training.data.sampling import EventStratifiedBatchSampler
from hfrisk.training.finetune.survival_loss import cox_loss

cohorts = st.integers(1, 400).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n)
        | st.lists(st.integers(0, 24).map(lambda k: k == 0), min_size=n, max_size=n),  # rare events, as in HF
        st.integers(1, 70),
        st.integers(0, 2**31 - 1),
        st.integers(0, 500),
    )
)


def check_stratified(batches, events):
    """Each batch's event count is within one of its size times the overall event share."""
    n_events, n_batches = events.sum(), len(batches)
    for batch in batches:
        expected = len(batch) * n_events / len(events)
        assert abs(events[batch].sum() - expected) < 1
        if n_events >= n_batches:
            assert events[batch].sum() >= 1


@settings(max_examples=150, deadline=None)
@given(cohorts)
def test_every_index_once_per_epoch_with_stratified_batches(cohort):
    events_list, batch_size, seed, epoch = cohort
    events = np.array(events_list)
    sampler = EventStratifiedBatchSampler(events, batch_size, seed)
    sampler.set_epoch(epoch)
    batches = list(sampler)

    assert len(batches) == len(sampler) == -(-len(events) // batch_size)
    assert sorted(i for batch in batches for i in batch) == list(range(len(events)))
    sizes = [len(batch) for batch in batches]
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    check_stratified(batches, events)


@settings(max_examples=150, deadline=None)
@given(cohorts)
def test_drop_last_gives_full_disjoint_stratified_batches(cohort):
    events_list, batch_size, seed, epoch = cohort
    events = np.array(events_list)
    sampler = EventStratifiedBatchSampler(events, batch_size, seed, drop_last=True)
    sampler.set_epoch(epoch)
    batches = list(sampler)

    assert len(batches) == len(sampler) == len(events) // batch_size
    assert all(len(batch) == batch_size for batch in batches)
    used = [i for batch in batches for i in batch]
    assert len(set(used)) == len(used)
    check_stratified(batches, events)


def test_deterministic_per_seed_and_epoch():
    events = np.random.default_rng(0).random(500) < 0.05

    def epoch_batches(seed, epoch):
        sampler = EventStratifiedBatchSampler(events, 64, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(42, 3) == epoch_batches(42, 3)
    assert epoch_batches(42, 3) != epoch_batches(42, 4)
    assert epoch_batches(42, 3) != epoch_batches(2021, 3)
    sampler = EventStratifiedBatchSampler(events, 64, 42)
    assert list(sampler) == list(sampler)  # without set_epoch, iterating again repeats the epoch


def test_drop_last_leaves_out_a_different_remainder_each_epoch():
    events = np.zeros(100, dtype=bool)
    events[:10] = True
    sampler = EventStratifiedBatchSampler(events, 30, seed=7, drop_last=True)
    left_out = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        left_out.append(frozenset(range(100)) - {i for batch in sampler for i in batch})
    assert all(len(s) == 10 for s in left_out) and len(set(left_out)) > 1


def test_paper_sized_cohort_has_events_in_every_batch():
    # UKB-MI: 800 subjects, about 32 HF events, batch size 128 (paper 3.2).
    events = np.zeros(800, dtype=bool)
    events[np.random.default_rng(1).choice(800, 32, replace=False)] = True
    for seed in (42, 2021, 2022, 2023, 2024):
        counts = [int(events[batch].sum()) for batch in EventStratifiedBatchSampler(events, 128, seed)]
        assert len(counts) == 7 and set(counts) <= {4, 5} and sum(counts) == 32


def test_drives_a_dataloader_whose_batches_all_give_a_cox_loss():
    n = 300
    rng = np.random.default_rng(2)
    event = torch.tensor(rng.random(n) < 0.04)
    dataset = TensorDataset(torch.randn(n, 3), event, torch.tensor(rng.exponential(size=n)))
    loader = DataLoader(dataset, batch_sampler=EventStratifiedBatchSampler(event, 64, seed=0))
    seen = 0
    for x, batch_event, batch_time in loader:
        assert batch_event.any()
        assert cox_loss(x[:, 0], batch_event, batch_time).item() > 0
        seen += len(x)
    assert seen == n


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0/1"):
        EventStratifiedBatchSampler([0, 2, 1], 2, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        EventStratifiedBatchSampler([0, 1, 1], 0, seed=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        EventStratifiedBatchSampler([[0, 1]], 1, seed=0)
    assert list(EventStratifiedBatchSampler([0, 1], 5, seed=0, drop_last=True)) == []


def test_docstring_examples_run():
    assert doctest.testmod(sampling).failed == 0
