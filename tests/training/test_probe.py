"""The linear probe: label alignment on real records, frozen-encoder embeddings, and the probe itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hfrisk.model.contract.card import default_card
from hfrisk.training.runs.checkpoint import save_checkpoint
from hfrisk.training.evaluation.probe import embed, fit_probe, pretrained_encoder, probe_data, random_encoder
from hfrisk.training.data.ptbxl import PTBXL, SUPERCLASSES

ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"


def _labels(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(SUPERCLASSES))) < 0.3).astype(int)
    frame = pd.DataFrame(y, columns=list(SUPERCLASSES), index=pd.Index(np.arange(1, n + 1), name="ecg_id"))
    frame["strat_fold"] = np.arange(n) % 10 + 1
    return frame


def test_probe_finds_label_signal_and_not_noise():
    labels = _labels(600, seed=0)
    y = labels[list(SUPERCLASSES)].to_numpy(float)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(600, 32))
    informative = noise.copy()
    informative[:, : len(SUPERCLASSES)] += 1.5 * y  # each class shifts one feature

    good = fit_probe(informative, labels, n_boot=100)
    chance = fit_probe(noise, labels, n_boot=100)

    assert good.test_macro_auc > 0.85
    assert abs(chance.test_macro_auc - 0.5) < 0.12
    assert good.test_ci_low <= good.test_macro_auc <= good.test_ci_high
    assert good.test_ci_low > chance.test_ci_high
    assert (good.n_train, good.n_val, good.n_test) == (480, 60, 60)
    assert set(good.test_auc) == set(SUPERCLASSES)
    assert good.val_macro_auc == max(good.val_auc_by_c.values())


def test_probe_uses_rows_in_label_order():
    """Embeddings shuffled against their labels carry no signal: the probe must not realign them."""
    labels = _labels(600, seed=2)
    x = np.random.default_rng(3).normal(size=(600, 16))
    x[:, : len(SUPERCLASSES)] += 2.0 * labels[list(SUPERCLASSES)].to_numpy(float)
    shuffled = x[np.random.default_rng(4).permutation(600)]
    assert fit_probe(shuffled, labels, n_boot=0).test_macro_auc < 0.65
    with pytest.raises(ValueError, match="embeddings for"):
        fit_probe(x[:-1], labels)


def test_probe_refuses_a_class_without_training_positive():
    labels = _labels(200, seed=5)
    labels.loc[labels["strat_fold"] <= 8, "HYP"] = 0
    with pytest.raises(ValueError, match="HYP"):
        fit_probe(np.zeros((200, 4)), labels)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The 24-record PTB-XL test copy through the probe's data path (preprocessed once for the module)."""
    ds = PTBXL(ROOT, 100)
    return ds, *probe_data(ds, cache_dir=tmp_path_factory.mktemp("inputs"))


def test_probe_data_aligns_real_records_by_ecg_id(real):
    ds, inputs, labels = real
    ids = inputs.ids.astype(int)
    assert list(labels.index) == list(ids)
    truth = ds.superclass_labels()
    assert (labels[list(SUPERCLASSES)].to_numpy() == truth.loc[ids].to_numpy()).all()
    assert (labels[list(SUPERCLASSES)].sum(axis=1) > 0).all()  # records without a superclass are left out
    assert (labels["strat_fold"].to_numpy() == ds.metadata.loc[ids, "strat_fold"].to_numpy()).all()
    assert inputs.x.shape == (len(ids), 12, default_card().input.length_samples)


def test_embeddings_are_frozen_and_batch_independent(real, tmp_path):
    x = real[1].x[:6]
    net = random_encoder("dual_attention", seed=7)
    z = embed(net, x)
    assert z.shape == (6, 512)
    # Eval mode: a record's embedding does not depend on the rest of its batch.
    np.testing.assert_allclose(embed(net, x, batch_size=2), z, rtol=1e-4, atol=1e-5)
    # Same seed, same random encoder (the baseline is pretraining's starting point).
    np.testing.assert_allclose(embed(random_encoder("dual_attention", seed=7), x), z, rtol=1e-5, atol=1e-6)
    assert not np.allclose(embed(random_encoder("dual_attention", seed=8), x), z)

    # A checkpoint's encoder is what gets probed, under the checkpoint's seed and encoder.
    with torch.no_grad():
        for p in net.encoder.parameters():
            p.add_(0.01)
    path = save_checkpoint(tmp_path / "best.pt", model=net, epoch=3, card=default_card(),
                           config={"encoder": "dual_attention", "seed": 7})
    loaded, config = pretrained_encoder(path)
    assert config["seed"] == 7
    np.testing.assert_allclose(embed(loaded, x), embed(net, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(embed(loaded, x), z)
