"""Fine-tuning: runs from scratch and from saved encoder weights, learns an easy hazard, keeps the best epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hfrisk.model.contract.card import default_card
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.runs.checkpoint import save_checkpoint
from hfrisk.training.finetune.checkpoints import load_finetuned
from hfrisk.training.finetune.config import FinetuneConfig
from hfrisk.training.finetune.data import FinetuneData
from hfrisk.training.finetune.loop import finetune, finetune_tensors, predict_log_risk
from hfrisk.training.finetune.method import finetune_method
from hfrisk.training.metrics import HarrellC
from hfrisk.training.evaluation.protocol import cross_validate
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.runs.run_dir import RunDir
from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic():
    """The 24 real PTB-XL test records with simulated outcomes, split 16 / 8 with events in both."""
    synth = synthetic_hf_cohort(PTBXL(PTBXL_ROOT, 500), event_rate=0.25, seed=0)
    fit_index, val_index = synth.cohort.inner_split(frac=1 / 3, seed=0)
    return synth.cohort.subset(fit_index), synth.cohort.subset(val_index)


def _easy_data(n: int, seed: int) -> FinetuneData:
    """Noise ECGs whose QRS-region amplitude is the log-hazard: an easy signal to learn."""
    rng = np.random.default_rng(seed)
    marker = rng.normal(size=n)
    x = 0.3 * rng.normal(size=(n, 12, 608)).astype(np.float32)
    x[:, :, 250:350] += marker[:, None, None]
    event_time = rng.exponential(np.exp(-2.0 * marker)) * 100
    censor = rng.uniform(0, 150, n)
    return FinetuneData.from_arrays(x, np.ones((n, 12), bool), event_time <= censor, np.minimum(event_time, censor))


def test_sign_convention_higher_log_risk_for_earlier_events_gives_c_above_half():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 1, 1, 0, 1])
    assert HarrellC()(-time, event, time) == 1.0  # earliest event = highest log-risk
    assert HarrellC()(time, event, time) == 0.0


def test_learns_an_easy_hazard_and_keeps_the_best_validation_epoch(tmp_path):
    train, val = _easy_data(48, 0), _easy_data(24, 1)
    config = FinetuneConfig(epochs=4, batch_size=24, lr=1e-3, lead_mask_prob=0.0)
    result = finetune_tensors(config, train, val, tmp_path)
    history = result.history
    assert len(history) == 4
    assert history["train_cox"].iloc[-1] < history["train_cox"].iloc[0]
    # The chosen checkpoint is the epoch with the best validation C (the first such epoch).
    assert result.best_val_c == history["val_harrell_c"].max()
    assert result.best_epoch == int(history.loc[history["val_harrell_c"].idxmax(), "epoch"])
    assert result.best_val_c > 0.7  # higher log-risk for the riskier marker: the sign is right
    run = RunDir(tmp_path)
    net, meta = load_finetuned(run.best)
    assert meta["epoch"] == result.best_epoch and meta["extra"]["val_harrell_c"] == result.best_val_c
    again = HarrellC()(predict_log_risk(net, val.x), val.event.numpy(), val.time.numpy())
    assert again == pytest.approx(result.best_val_c)
    assert run.last.exists() and [row["epoch"] for row in run.read_metrics()] == [1, 2, 3, 4]


def test_from_scratch_on_real_records(synthetic, tmp_path):
    fit, val = synthetic
    result = finetune(FinetuneConfig(epochs=2, batch_size=8), fit, val, tmp_path / "run", cache_dir=tmp_path / "inputs")
    assert len(result.history) == 2 and np.isfinite(result.history["train_loss"]).all()
    _, meta = load_finetuned(result.best_checkpoint)
    provenance = meta["extra"]["provenance"]
    assert provenance["init_kind"] == "scratch"
    assert provenance["n_train"] == len(fit) and provenance["n_val_events"] == val.n_events
    assert FinetuneConfig().resolved_epochs(pretrained=False) == 400
    assert FinetuneConfig().resolved_epochs(pretrained=True) == 100


def test_from_a_saved_encoder_state(synthetic, tmp_path):
    fit, val = synthetic
    torch.manual_seed(123)
    pretrained = HFRiskNet()
    # Saved the way pretraining saves its best.pt.
    saved = save_checkpoint(tmp_path / "pretrained.pt", model=pretrained, epoch=7, config={}, card=default_card())
    # A learning rate of ~0 leaves the weights where the initialisation put them.
    config = FinetuneConfig(epochs=2, batch_size=8, lr=1e-12, weight_decay=0.0)
    result = finetune(config, fit, val, tmp_path / "run", init=saved, cache_dir=tmp_path / "inputs")
    loaded = result.net.encoder.stem[0].weight.detach().cpu()
    torch.testing.assert_close(loaded, pretrained.encoder.stem[0].weight.detach(), atol=1e-6, rtol=0)
    scratch = HFRiskNet().encoder.stem[0].weight.detach()
    assert not torch.allclose(loaded, scratch)
    _, meta = load_finetuned(result.best_checkpoint)
    assert meta["extra"]["provenance"]["init_kind"] == "pretrained"
    assert meta["extra"]["provenance"]["init_epoch"] == 7
    assert meta["extra"]["provenance"]["init"] == str(saved)


def test_xresnet_encoder_trains(tmp_path):
    train, val = _easy_data(16, 2), _easy_data(8, 3)
    result = finetune_tensors(FinetuneConfig(encoder="xresnet1d101", epochs=1, batch_size=8), train, val, tmp_path)
    assert result.net.encoder_name == "xresnet1d101" and len(result.history) == 1


def test_a_frozen_encoder_keeps_its_weights_and_statistics_while_the_head_learns(tmp_path):
    train, val = _easy_data(48, 5), _easy_data(24, 6)
    config = FinetuneConfig(epochs=3, batch_size=24, lr=1e-3, freeze_encoder=True)
    torch.manual_seed(config.seed)  # the start the loop builds from scratch
    start = HFRiskNet.from_card(default_card(), encoder=config.encoder)
    result = finetune_tensors(config, train, val, tmp_path)
    before, after = start.state_dict(), result.net.state_dict()
    encoder = [k for k in before if k.startswith("encoder.")]
    # The BatchNorm running statistics too: in train mode they would follow the training batches.
    assert any("running_mean" in k for k in encoder)
    for k in encoder:
        torch.testing.assert_close(after[k].cpu(), before[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(after[k].cpu(), before[k]) for k in before if k.startswith("risk_head."))
    assert finetune_method(config).name == "finetune_dual_attention_scratch_frozen"


def test_finetune_method_plugs_into_the_protocol(tmp_path):
    data = _easy_data(48, 4)
    from hfrisk.training.data.cohort import Cohort

    cohort = Cohort(pd.DataFrame({"record": [f"r{i}" for i in range(48)], "time": data.time.numpy(),
                                  "event": data.event.numpy()}))
    method = finetune_method(FinetuneConfig(epochs=1, batch_size=16), inputs=data, cohort=cohort)
    result = cross_validate(cohort, method, tmp_path, seeds=(42,), progress=False)
    assert len(result.runs) == 2 and result.runs["val_harrell_c"].notna().all()
    assert RunDir(tmp_path / "seed42-fold0").best.exists()


def test_finetune_method_preprocesses_real_records_once(tmp_path):
    cohort = synthetic_hf_cohort(PTBXL(PTBXL_ROOT, 500), event_rate=0.25, seed=0).cohort
    method = finetune_method(FinetuneConfig(epochs=1, batch_size=8), cache_dir=tmp_path / "inputs")
    result = cross_validate(cohort, method, tmp_path / "cv", seeds=(42,), progress=False)
    assert len(result.runs) == 2 and np.isfinite(result.runs["harrell_c"]).all()
    assert len(list((tmp_path / "inputs").glob("*.npz"))) == 1  # both folds share one preprocessing pass


def test_run_record_and_checkpoint_info_keep_their_stored_form():
    from hfrisk.training.finetune.checkpoints import STAGE, FinetuneCheckpointInfo, FinetuneRunRecord, is_finetuned

    config = FinetuneConfig(epochs=3)
    record = FinetuneRunRecord(config=config, epochs=3, provenance={"init_kind": "scratch"}, n_train=10,
                               n_train_events=2, n_val=5, n_val_events=1)
    assert record.model_dump(mode="json") == {
        "stage": STAGE, "config": config.model_dump(mode="json"), "epochs": 3, "provenance": {"init_kind": "scratch"},
        "n_train": 10, "n_train_events": 2, "n_val": 5, "n_val_events": 1}
    info = FinetuneCheckpointInfo(val_harrell_c=0.7, provenance={"n_train": 10})
    assert info.model_dump() == {"stage": STAGE, "val_harrell_c": 0.7, "provenance": {"n_train": 10}}
    assert is_finetuned({"extra": info.model_dump()}) and not is_finetuned({"extra": {"best_epoch": 1}})
    assert FinetuneRunRecord.model_validate(record.model_dump(mode="json")) == record
