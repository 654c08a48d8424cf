"""Pretraining on the 24 PTB-XL test records at 100 Hz with the real offline text encoder.

One 2-epoch run (module fixture) is shared by the run-directory and checkpoint tests; the resume
test trains 3 epochs straight and 2 + 1 with a restart. Caches are shared across the module so the
preprocessing and the text model run once.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from hfrisk.model.contract.card import default_card, load_card
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.pretrain import loop as pretrain_module
from hfrisk.training.runs.checkpoint import load_checkpoint
from hfrisk.training.commands import pretrain_command
from hfrisk.training.pretrain.config import PretrainConfig
from hfrisk.training.pretrain.encoder_weights import load_pretrained_encoder
from hfrisk.training.pretrain.losses import CosineAlignmentLoss, InfoNCELoss, masked_mse
from hfrisk.training.pretrain.loop import pretrain
from hfrisk.training.runs.run_dir import RunDir
from hfrisk.training.runs.schedule import WarmupCosine, warmup_cosine_schedule

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base_config(ecg_data_dir, tmp_path_factory) -> PretrainConfig:
    """Folds 1-8 (17 records) train, fold 9 (6 records) validates; batches of 8 give 2 steps an epoch."""
    return PretrainConfig(
        data_root=ecg_data_dir / "ptbxl", sampling_rate=100, max_epochs=2, batch_size=8,
        cache_dir=tmp_path_factory.mktemp("pretrain-cache"), progress=False, checkpoint_every=1,
    )


@pytest.fixture(scope="module")
def two_epochs(base_config, tmp_path_factory):
    return pretrain(base_config, tmp_path_factory.mktemp("runs") / "two-epochs")


# --- schedule and losses ------------------------------------------------------------------------


def test_schedule_warms_up_for_20_percent_then_decays_to_zero():
    factor = WarmupCosine(total_steps=1000, warmup_fraction=0.2)
    values = [factor(s) for s in range(1001)]
    assert values[0] == 0.0
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 200
    assert all(a < b for a, b in zip(values[:200], values[1:201])), "linear warm-up rises"
    assert all(a >= b for a, b in zip(values[200:], values[201:])), "cosine decay falls"
    assert values[600] == pytest.approx(0.5)
    assert values[-1] == pytest.approx(0.0, abs=1e-12)


def test_schedule_steps_the_optimiser_per_iteration():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = warmup_cosine_schedule(optimizer, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_masked_mse_ignores_absent_leads():
    target = torch.zeros(2, 12, 608)
    recon = torch.ones(2, 12, 608)
    present = torch.ones(2, 12, dtype=torch.bool)
    present[:, 3:] = False
    recon[:, 3:] = 100.0  # wrong only where the record has no lead
    assert masked_mse(recon, target, present).item() == pytest.approx(1.0)


def test_cosine_loss_is_one_minus_cosine_and_infonce_prefers_matched_pairs():
    a = torch.randn(6, 128)
    assert CosineAlignmentLoss()(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert CosineAlignmentLoss()(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    infonce = InfoNCELoss(temperature=0.1)
    assert infonce.temperature == pytest.approx(0.1)
    assert infonce(a, a).item() < infonce(a, a.roll(1, dims=0)).item()
    assert [n for n, _ in InfoNCELoss(learnable=True).named_parameters()] == ["log_scale"]
    assert list(InfoNCELoss(learnable=False).parameters()) == []


def test_config_defaults_are_the_papers(tmp_path):
    config = PretrainConfig(data_root=tmp_path)
    assert (config.lr, config.betas, config.weight_decay, config.warmup_fraction) == (1e-3, (0.9, 0.95), 0.01, 0.2)
    assert (config.batch_size, config.max_epochs, config.seed, config.lead_mask_p) == (128, 300, 72, 0.5)
    assert config.loss == "infonce" and config.text == "structured" and config.validated_only
    assert config.train_folds == (1, 2, 3, 4, 5, 6, 7, 8) and config.val_folds == (9,)
    with pytest.raises(ValueError, match="overlap"):
        PretrainConfig(data_root=tmp_path, train_folds=(1, 9), val_folds=(9,))


def test_command_options_mirror_the_config_defaults():
    parameters = inspect.signature(pretrain_command).parameters
    fields = PretrainConfig.model_fields
    parsed_elsewhere = {"data_root", "train_folds", "val_folds", "exclude_folds"}
    for name, field in fields.items():
        if name in parsed_elsewhere:
            continue
        assert name in parameters, f"--{name.replace('_', '-')} is missing from the command"
        assert parameters[name].default == field.default, name


# --- a real run -----------------------------------------------------------------------------------


def test_training_loss_decreases(two_epochs):
    history = two_epochs.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    for row in history:
        for key in ("train_recon", "train_align", "val_loss", "val_recon", "val_align", "val_cos_matched",
                    "val_cos_shuffled", "lr", "epoch_s"):
            assert math.isfinite(row[key]), key
    assert (two_epochs.n_train, two_epochs.n_val) == (17, 6)


def test_run_directory_holds_config_metrics_and_checkpoints(two_epochs, base_config):
    run = RunDir(two_epochs.run_dir)
    saved = run.read_config()
    assert saved["provenance"]["text_dim"] == 384 and saved["provenance"]["n_train"] == 17
    assert PretrainConfig.model_validate({k: v for k, v in saved.items() if k != "provenance"}) == base_config
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2]
    assert run.best.is_file() and run.last.is_file()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    card = load_card(run.path)
    assert card.input == default_card().input and card.training["stage"] == "pretrain"
    best = load_checkpoint(run.best)
    assert best["epoch"] == two_epochs.best_epoch
    assert best["extra"]["best_value"] == pytest.approx(two_epochs.best_value)
    assert best["extra"]["best_value"] == min(row["val_recon"] for row in run.read_metrics())


def test_best_checkpoint_loads_into_a_fresh_network(two_epochs):
    saved = load_checkpoint(two_epochs.best_checkpoint)["model"]
    torch.manual_seed(123)
    net = HFRiskNet.from_card(default_card())
    risk_head_before = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("risk_head.")}
    info = load_pretrained_encoder(two_epochs.best_checkpoint, net)
    assert info["decoder"] and info["tensors"] > 0
    state = net.state_dict()
    for key, value in saved.items():
        if key.startswith(("encoder.", "decoder.")):
            assert torch.equal(state[key], value), key
    for key, value in risk_head_before.items():
        assert torch.equal(state[key], value), "the risk head is not pretrained and must stay as it was"
    with torch.no_grad():
        assert net.eval().reconstruct(torch.randn(2, 12, 608)).shape == (2, 12, 608)


def test_load_pretrained_encoder_refuses_another_input_size(two_epochs):
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained_encoder(two_epochs.best_checkpoint, HFRiskNet(n_leads=12, length_samples=1024))


def test_resume_continues_exactly(base_config, two_epochs, tmp_path):
    config = base_config.model_copy(update={"max_epochs": 3})
    straight = pretrain(config, tmp_path / "straight")
    pretrain(config, tmp_path / "restarted", stop_after_epoch=2)
    resumed = pretrain(config, tmp_path / "restarted", resume_run=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for a, b in zip(straight.history, resumed.history):
        for key in ("train_loss", "train_recon", "train_align", "val_loss", "val_recon", "val_align", "lr"):
            assert a[key] == pytest.approx(b[key], abs=1e-6, rel=0), (a["epoch"], key)
    weights_a = load_checkpoint(straight.last_checkpoint)["model"]
    weights_b = load_checkpoint(resumed.last_checkpoint)["model"]
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], atol=1e-6, rtol=0)


def test_resume_refuses_a_changed_configuration(base_config, two_epochs):
    changed = base_config.model_copy(update={"lr": 5e-4})
    with pytest.raises(ValueError, match="lr"):
        pretrain(changed, two_epochs.run_dir, resume_run=True)


def test_identical_texts_do_not_change_infonce_gradients():
    """Duplicate report texts in a batch act as one text: counting them as positives changes nothing."""
    torch.manual_seed(0)
    e_ecg = torch.randn(4, 8, requires_grad=True)
    e_text = torch.randn(4, 8)
    e_text[1] = e_text[0]  # records 0 and 1 share a report
    loss = InfoNCELoss(temperature=0.1)
    value = loss(e_ecg, e_text)
    (grad,) = torch.autograd.grad(value, e_ecg)
    same = torch.eye(4)
    same[0, 1] = same[1, 0] = 1.0
    targets = same / same.sum(1, keepdim=True)
    a, b = torch.nn.functional.normalize(e_ecg, dim=-1), torch.nn.functional.normalize(e_text, dim=-1)
    logits = a @ b.T * 10.0
    multi = 0.5 * (torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.T, targets))
    (multi_grad,) = torch.autograd.grad(multi, e_ecg)
    torch.testing.assert_close(value, multi)
    torch.testing.assert_close(grad, multi_grad)


def test_infonce_with_learnt_temperature_runs(base_config, tmp_path):
    config = base_config.model_copy(update={"loss": "infonce", "learn_temperature": True, "max_epochs": 1})
    result = pretrain(config, tmp_path / "infonce")
    row = result.history[0]
    assert math.isfinite(row["train_align"]) and math.isfinite(row["val_align"])
    assert row["temperature"] != pytest.approx(0.1, abs=1e-9), "a learnt temperature moves"
    assert load_checkpoint(result.last_checkpoint)["criterion"]["log_scale"].numel() == 1


def test_early_stop_after_patience_epochs_without_improvement(base_config, tmp_path, monkeypatch):
    real_validate = pretrain_module._validate
    scores = iter([1.0, 2.0, 3.0, 4.0, 5.0])

    def worsening(model, data, config):
        return real_validate(model, data, config) | {"val_recon": next(scores)}

    monkeypatch.setattr(pretrain_module, "_validate", worsening)
    config = base_config.model_copy(update={"max_epochs": 5, "early_stop_patience": 2})
    result = pretrain(config, tmp_path / "early")
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 1
    again = pretrain(config, tmp_path / "early", resume_run=True)
    assert again.stopped_early and again.epochs_run == 3, "a stopped run stays stopped when resumed"
    assert [row["epoch"] for row in again.history] == [1, 2, 3]


def test_command_runs_and_resumes(base_config, tmp_path):
    runner = CliRunner()
    import typer

    app = typer.Typer()
    app.command("pretrain")(pretrain_command)
    app.command("noop")(lambda: None)  # two commands, so "pretrain" stays a sub-command
    common = ["--cache-dir", str(base_config.cache_dir), "--no-progress"]
    first = runner.invoke(app, ["pretrain", "--data-root", str(base_config.data_root), "--sampling-rate", "100",
                                "--batch-size", "8", "--max-epochs", "2", "--stop-after-epoch", "1",
                                "--run-dir", str(tmp_path / "cli"), *common])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["pretrain", "--resume", str(tmp_path / "cli"), *common])
    assert resumed.exit_code == 0, resumed.output
    lines = resumed.stdout.splitlines()
    summary = json.loads("\n".join(lines[lines.index("{"):]))  # log lines before it may hold braces too
    assert summary["epochs_run"] == 2 and summary["n_train"] == 17
    assert [row["epoch"] for row in RunDir(tmp_path / "cli").read_metrics()] == [1, 2]


# --- stored form of the run state -----------------------------------------------------------------


def test_progress_is_stored_as_the_plain_dict_older_checkpoints_hold():
    from hfrisk.training.pretrain.state import PretrainProgress, PretrainProvenance

    provenance = {"text_encoder": "minilm", "text_dim": 384, "n_train": 17, "n_val": 6, "steps_per_epoch": 2}
    # What a checkpoint written before the `stopped_early` flag (and the provenance's `corpus`) holds in its `extra`.
    old = {"best_value": 0.5, "best_epoch": 3, "monitor": "val_recon", "metrics": {"epoch": 4, "val_recon": 0.6},
           "provenance": provenance}
    progress = PretrainProgress.model_validate(old)
    assert progress.stopped_early is False and progress.provenance == PretrainProvenance(**provenance)
    assert progress.model_dump() == old | {"stopped_early": False, "provenance": provenance | {"corpus": {}}}


def test_from_run_config_drops_provenance_and_takes_only_runtime_settings(base_config, tmp_path):
    saved = base_config.model_dump(mode="json") | {"provenance": {"text_dim": 384}}
    config = PretrainConfig.from_run_config(saved, device="cpu", workers=2, cache_dir=tmp_path, progress=False)
    assert config == base_config.model_copy(update={"device": "cpu", "workers": 2, "cache_dir": tmp_path})
    assert config.resume_differences(base_config.model_dump(mode="json")) == []
    assert config.resume_differences(base_config.model_dump(mode="json") | {"lr": 0.1}) == ["lr"]
    with pytest.raises(ValueError, match="may change on resume"):
        PretrainConfig.from_run_config(saved, lr=0.1)
