"""The risk head started from a ridge Cox fit: the fit matches lifelines, the head outputs it, never
saturates, and fine-tuning keeps the start (epoch 0) when nothing beats it; the learning-rate sweep
keeps the best run by the monitored validation value."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.finetune.config import FinetuneConfig
from hfrisk.training.finetune.data import FinetuneData
from hfrisk.training.finetune.head_init import embed, fit_ridge_cox, fit_ridge_direction, write_linear_head
from hfrisk.training.finetune.loop import finetune_tensors, predict_log_risk
from hfrisk.training.metrics.results import harrell_c_or_nan
from hfrisk.training.runs.run_dir import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _survival(log_hazard: np.ndarray, rng: np.random.Generator, censor_scale: float = 2.0):
    event_time = rng.exponential(np.exp(-log_hazard))
    censor = rng.exponential(censor_scale, size=len(log_hazard))
    return (event_time <= censor).astype(int), np.minimum(event_time, censor)


@pytest.mark.parametrize("penalizer", [0.01, 0.1, 1.0])
def test_ridge_cox_matches_lifelines_penalised_fit(penalizer):
    # lifelines minimises -loglik/n + penalizer/2 |b|^2 on features scaled to unit (ddof=1) SD; the
    # Cox loss here is a mean over D events, so the same optimum has penalty = penalizer * n / D.
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 3))
    x = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
    event, time = _survival(x @ np.array([0.8, -0.5, 0.0]), rng)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(T=time, E=event)
    reference = CoxPHFitter(penalizer=penalizer).fit(frame, "T", "E").params_.to_numpy()
    ours = fit_ridge_cox(x, event, time, penalizer * n / event.sum())
    np.testing.assert_allclose(ours, reference, atol=2e-4)


def _embedding_cohort(seed: int, n: int, dim: int = 512):
    """Low-rank embeddings (8 latent factors mixed into 512 features, plus noise), as an encoder's
    are; three of the factors carry the hazard."""
    mixing = np.random.default_rng(99).normal(size=(8, dim))
    offset = np.random.default_rng(98).normal(size=dim)
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    embedding = latent @ mixing + 0.5 * rng.normal(size=(n, dim)) + offset
    event, time = _survival(latent[:, :4] @ np.array([0.9, -0.6, 0.4, 0.0]), rng)
    return embedding, event, time


def test_head_outputs_the_ridge_score_and_never_saturates():
    train, train_event, train_time = _embedding_cohort(0, 600)
    val, val_event, val_time = _embedding_cohort(1, 300)
    fit = fit_ridge_direction(train, train_event, train_time, val, val_event, val_time)
    assert fit.val_c > 0.65  # the hazard is found, on records the fit did not see
    net = HFRiskNet()
    write_linear_head(net, fit, train)
    head = net.risk_head.eval()
    with torch.no_grad():
        out = head(torch.as_tensor(val, dtype=torch.float32)).reshape(-1).double().numpy()
    score = fit.score(val) - fit.score(train).mean()
    np.testing.assert_allclose(out, score, atol=1e-3 * score.std())
    assert harrell_c_or_nan(out, val_event, val_time) == pytest.approx(fit.val_c, abs=1e-3)
    # Far beyond the training range, in both directions, every input still gets its own score: the
    # head is strictly increasing in the ridge score (the old head was flat wherever its units were off).
    step = fit.direction / np.linalg.norm(fit.direction) * np.sqrt(fit.var)
    reach = np.linspace(-200.0, 200.0, 401)
    extreme = fit.mean + reach[:, None] * step * 1.0
    with torch.no_grad():
        far = head(torch.as_tensor(extreme, dtype=torch.float32)).reshape(-1).double().numpy()
    assert np.all(np.diff(far) > 0)


def _easy_data(n: int, seed: int) -> FinetuneData:
    """Noise ECGs whose QRS-region amplitude is the log-hazard (as in test_finetune.py)."""
    rng = np.random.default_rng(seed)
    marker = rng.normal(size=n)
    x = 0.3 * rng.normal(size=(n, 12, 608)).astype(np.float32)
    x[:, :, 250:350] += marker[:, None, None]
    event, time = _survival(2.0 * marker, rng, censor_scale=1.5)
    return FinetuneData.from_arrays(x, np.ones((n, 12), bool), event.astype(bool), time)


def test_finetuning_from_the_ridge_start_keeps_epoch_zero_as_a_candidate(tmp_path):
    train, val = _easy_data(64, 0), _easy_data(48, 1)
    config = FinetuneConfig(epochs=2, batch_size=32, lr=1e-4, lead_mask_prob=0.0, head_init="ridge_cox",
                            monitor="val_cox")
    result = finetune_tensors(config, train, val, tmp_path / "run")
    history = result.history
    assert list(history["epoch"]) == [0, 1, 2]
    # The ridge start is scored before any step, and the kept epoch has the lowest validation Cox loss.
    assert result.best_epoch == int(history.loc[history["val_cox"].idxmin(), "epoch"])
    record = RunDir(tmp_path / "run").read_config()
    assert record["provenance"]["head_init"] == "ridge_cox"
    start_c = float(history.loc[history["epoch"] == 0, "val_harrell_c"].iloc[0])
    assert start_c > 0.6  # the untrained encoder's embedding already carries the marker


def test_learning_rate_sweep_keeps_the_best_run(tmp_path):
    train, val = _easy_data(48, 2), _easy_data(32, 3)
    config = FinetuneConfig(epochs=2, batch_size=24, lead_mask_prob=0.0, lr_grid=(1e-5, 3e-3))
    result = finetune_tensors(config, train, val, tmp_path / "sweep")
    sweep = json.loads((tmp_path / "sweep" / "lr_sweep.json").read_text())
    assert [r["lr"] for r in sweep["runs"]] == [1e-5, 3e-3]
    best = max(sweep["runs"], key=lambda r: (r["score"], -r["lr"]))
    assert sweep["chosen_lr"] == best["lr"]
    assert result.best_val_c == pytest.approx(best["best_val_c"])
    # The copied best.pt is the chosen run's: it scores the validation part with the C it reported.
    from hfrisk.training.finetune.checkpoints import load_finetuned

    net, meta = load_finetuned(tmp_path / "sweep" / "best.pt")
    assert meta["config"]["lr"] == best["lr"]
    c = harrell_c_or_nan(predict_log_risk(net, val.x), val.event.numpy(), val.time.numpy())
    assert c == pytest.approx(best["best_val_c"])


def test_embedding_is_the_encoder_output_in_eval_mode():
    net = HFRiskNet()
    x = torch.randn(5, 12, 608)
    net.eval()
    with torch.no_grad():
        expected = net.embed(x).double().numpy()
    net.train()
    np.testing.assert_allclose(embed(net, x, batch_size=2), expected, rtol=1e-4)  # batch size changes float rounding
    assert net.training  # left as it was found
