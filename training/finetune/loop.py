r"""The fine-tuning loop (paper §3.2): Cox plus reconstruction loss, from pretrained weights or from scratch.

.. math::

    L = \alpha\, L_\mathrm{Cox}(\eta, \delta, T) + (1 - \alpha)\, \mathrm{MSE}(\hat x, x), \qquad \alpha = 0.5

with :math:`\eta` the log-risk (higher = riskier) and the Cox loss computed within each batch.
AdamW (lr 1e-4, weight decay 1e-2), gradient-norm clipping at 100, no scheduler; 100 epochs from
a pretrained encoder, 400 from scratch; ``best.pt`` is the epoch with the best validation Harrell
C (ties keep the earlier), or the best validation Cox loss with ``monitor="val_cox"``. The options
for few events (the head started from a ridge Cox fit, the learning-rate sweep) and what keeps an
in-batch Cox loss meaningful with 1–5 % events are told in docs/training/finetuning.md.

>>> result = finetune(FinetuneConfig(), fit_cohort, val_cohort, "runs/ft", init="pretrain/best.pt")  # doctest: +SKIP
>>> result.best_epoch, result.best_val_c                                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.data.augment import LeadSubsetMasking
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.data.sampling import EventStratifiedBatchSampler
from hfrisk.training.metrics.results import harrell_c_or_nan
from hfrisk.training.finetune.checkpoints import FinetuneCheckpointInfo, FinetuneRunRecord, load_finetuned, load_init
from hfrisk.training.finetune.config import FinetuneConfig
from hfrisk.training.finetune.data import FinetuneData
from hfrisk.training.finetune.head_init import init_head_from_ridge_cox
from hfrisk.training.finetune.survival_loss import cox_loss
from hfrisk.training.pretrain.losses import masked_mse
from hfrisk.training.runs.checkpoint import save_checkpoint
from hfrisk.training.runs.environment import torch_device
from hfrisk.training.runs.run_dir import RunDir

__all__ = ["FinetuneResult", "finetune", "finetune_tensors", "predict_log_risk", "PARITY_RECORDS"]

log = get_logger(__name__)

# Validation records a checkpoint remembers, as real inputs for the export's ONNX parity check.
PARITY_RECORDS = 8


@dataclass
class FinetuneResult:
    """The outcome of one fine-tuning: the chosen checkpoint, its epoch and validation C, the
    per-epoch history, and the network holding the chosen weights (eval mode)."""

    net: HFRiskNet
    best_checkpoint: Path
    best_epoch: int
    best_val_c: float
    history: pd.DataFrame
    run_dir: RunDir
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_val_c": self.best_val_c, "epochs_run": len(self.history),
                "checkpoint": str(self.best_checkpoint), "seconds": self.seconds}


def predict_log_risk(net: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int = 256,
                     device: torch.device | str | None = None) -> np.ndarray:
    """Log-risk ``(n,)`` of inputs ``x`` in eval mode (no dropout, BatchNorm running statistics)."""
    device = torch.device(device) if device is not None else next(net.parameters()).device
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
    was_training = net.training
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out.append(net(x[start : start + batch_size].to(device)).reshape(-1).double().cpu())
    net.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def _monitored(row, monitor: str) -> float:
    """The monitored validation value of an epoch's row, higher is better (NaN where undefined)."""
    return float(row["val_harrell_c"]) if monitor == "val_c" else -float(row["val_cox"])


def _finetune_once(
    config: FinetuneConfig,
    train: FinetuneData,
    val: FinetuneData,
    run_dir: str | Path | RunDir,
    init: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    provenance: dict[str, Any] | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """One fine-tuning at ``config.lr`` (see :func:`finetune_tensors`)."""
    card = card or default_card()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if train.event.sum() == 0:
        raise ValueError("the training part has no event: the Cox loss is undefined")
    if val.event.sum() == 0:
        raise ValueError("the validation part has no event: checkpoints cannot be chosen by C-index")
    torch.manual_seed(config.seed)
    device = torch_device(config.device)
    net = HFRiskNet.from_card(card, encoder=config.encoder)
    provenance = {**(provenance or {}), "encoder": config.encoder}
    if init is not None:
        provenance.update(load_init(net, init))
    else:
        provenance.update(init=None, init_kind="scratch")
    net.to(device)
    if config.head_init == "ridge_cox":
        provenance.update(init_head_from_ridge_cox(net, train, val))
    if config.freeze_encoder:
        for p in net.encoder.parameters():
            p.requires_grad_(False)
    optimiser = torch.optim.AdamW((p for p in net.parameters() if p.requires_grad), lr=config.lr,
                                  weight_decay=config.weight_decay)
    epochs = config.resolved_epochs(pretrained=init is not None)
    sampler = EventStratifiedBatchSampler(train.event.numpy(), config.batch_size, seed=config.seed)
    # One lead subset per batch: the subjects a Cox term compares see the same leads.
    masking = LeadSubsetMasking(card.input.leads, config.lead_mask_prob, same_mask_per_batch=True)
    generators = {"lead_mask": torch.Generator().manual_seed(config.seed)}
    record = FinetuneRunRecord(config=config, epochs=epochs, provenance=provenance, n_train=len(train),
                               n_train_events=int(train.event.sum()), n_val=len(val),
                               n_val_events=int(val.event.sum()))
    run.write_config(record.model_dump(mode="json"))
    card.save(run.path)
    run.metrics_path.unlink(missing_ok=True)

    def save(path: Path, epoch: int, val_c: float) -> None:
        save_checkpoint(path, model=net, epoch=epoch, config=config.model_dump(mode="json"), card=card,
                        optimizer=optimiser, generators=generators,
                        extra=FinetuneCheckpointInfo(val_harrell_c=val_c, provenance=provenance).model_dump())

    history: list[dict[str, float]] = []
    best_score, best_c, best_epoch, stale = -math.inf, float("nan"), -1, 0

    def validate(epoch: int, means: list[float]) -> dict[str, float]:
        val_risk = predict_log_risk(net, val.x, config.eval_batch_size, device)
        # NaN where no pair is comparable (a tiny validation part): such an epoch is never "best".
        val_c = harrell_c_or_nan(val_risk, val.event.numpy(), val.time.numpy())
        with torch.no_grad():
            val_cox = float(cox_loss(torch.as_tensor(val_risk), val.event, val.time))
        return {"epoch": epoch, "train_loss": means[0], "train_cox": means[1], "train_recon": means[2],
                "val_harrell_c": val_c, "val_cox": val_cox, "seconds": time.perf_counter() - started}

    def consider(row: dict[str, float]) -> bool:
        """Keep ``row``'s weights as best.pt when the monitored value improves (higher is better)."""
        nonlocal best_score, best_c, best_epoch
        score = _monitored(row, config.monitor)
        if not score > best_score:  # NaN never wins
            return False
        best_score, best_c, best_epoch = score, row["val_harrell_c"], int(row["epoch"])
        save(run.best, best_epoch, best_c)
        return True

    started = time.perf_counter()
    if config.head_init == "ridge_cox":
        # Epoch 0 is the ridge start itself: if fine-tuning only makes it worse, it is what is kept.
        start_row = validate(0, [math.nan] * 3)
        history.append(start_row)
        run.append_metrics(start_row)
        consider(start_row)
    epoch_iter: Sequence[int] = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="fine-tune", unit="epoch")
    for epoch in epoch_iter:
        net.train()
        if config.freeze_encoder:
            # Frozen means the features too: in train mode its BatchNorm statistics would drift and
            # its dropout would perturb the embedding the head (and its ridge start) reads.
            net.encoder.eval()
        sampler.set_epoch(epoch)
        # Summed on the device and read once per epoch: no host sync per batch.
        sums = torch.zeros(3, device=device, dtype=torch.float64)
        n_batches = 0
        for batch in sampler:
            if len(batch) < 2:
                continue  # BatchNorm cannot train on one sample, and a Cox term needs a pair
            index = torch.as_tensor(batch)
            x = train.x[index].to(device, non_blocking=True)
            present = train.lead_mask[index].to(device)
            masked, _ = masking(x, generators["lead_mask"])
            out = net.forward_train(masked)
            cox = cox_loss(out.log_risk, train.event[index].to(device), train.time[index].to(device))
            # Every lead the record has, masked ones included: rebuilding dropped leads is what the
            # decoder learnt in pretraining (the target is the unmasked input, paper §3.2).
            recon = masked_mse(out.reconstruction, x, present)
            loss = config.alpha * cox + (1.0 - config.alpha) * recon
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimiser.step()
            sums += torch.stack([loss, cox, recon]).detach().double()
            n_batches += 1
        row = validate(epoch, (sums / max(n_batches, 1)).tolist())
        history.append(row)
        run.append_metrics(row)
        stale = 0 if consider(row) else stale + 1
        log.debug("finetune.epoch", **{k: round(v, 5) for k, v in row.items()})
        if config.patience is not None and stale >= config.patience:
            break
    save(run.last, history[-1]["epoch"], history[-1]["val_harrell_c"])
    if best_epoch < 0:
        # The monitored value was undefined at every epoch: the last epoch is all there is to keep.
        log.warning("finetune.no_validation_c", run_dir=str(run.path))
        best_epoch, best_c = int(history[-1]["epoch"]), float("nan")
        save(run.best, best_epoch, best_c)
    best_net, _ = load_finetuned(run.best, device)
    seconds = time.perf_counter() - started
    log.info("finetune.done", run_dir=str(run.path), best_epoch=best_epoch, best_val_c=round(best_c, 4), lr=config.lr,
             epochs=len(history), seconds=round(seconds, 1))
    return FinetuneResult(best_net, run.best, best_epoch, best_c, pd.DataFrame(history), run, seconds)


def finetune_tensors(
    config: FinetuneConfig,
    train: FinetuneData,
    val: FinetuneData,
    run_dir: str | Path | RunDir,
    init: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    provenance: dict[str, Any] | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune on tensors; :func:`finetune` is the same from cohorts. See the module docstring.

    ``run_dir`` gets :class:`~hfrisk.training.runs.run_dir.RunDir`'s layout: ``config.json``,
    ``model_card.json``, ``metrics.jsonl`` (one row per epoch, 1-based; epoch 0 is the ridge
    start when ``config.head_init == "ridge_cox"``), ``best.pt`` and ``last.pt``
    (:mod:`hfrisk.training.runs.checkpoint` files with ``extra.stage = "finetune"``).

    With ``config.lr_grid``, one fine-tuning per learning rate goes to ``run_dir/lr-<lr>/``; the
    one whose kept epoch has the best monitored validation value is copied to ``run_dir`` (its
    ``best.pt``, ``last.pt``, ``metrics.jsonl``, ``config.json``), and ``lr_sweep.json`` lists them all.
    """
    if not config.lr_grid:
        return _finetune_once(config, train, val, run_dir, init, card=card, provenance=provenance, progress=progress)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    results: list[tuple[float, float, FinetuneResult]] = []
    for lr in config.lr_grid:
        result = _finetune_once(config.model_copy(update={"lr": lr, "lr_grid": ()}), train, val,
                                run.path / f"lr-{lr:g}", init, card=card, provenance=provenance, progress=progress)
        score = _monitored(result.history.set_index("epoch").loc[result.best_epoch], config.monitor)
        results.append((lr, score, result))
        log.info("finetune.lr_done", lr=lr, monitor=config.monitor, score=round(score, 5), best_epoch=result.best_epoch)
    finite = [r for r in results if np.isfinite(r[1])]
    # Ties go to the smaller learning rate (the grid's order otherwise): the gentler change of the start.
    lr, _, chosen = max(finite or results, key=lambda r: (r[1] if np.isfinite(r[1]) else -math.inf, -r[0]))
    for name in ("best.pt", "last.pt", "metrics.jsonl", "config.json", "model_card.json"):
        if (chosen.run_dir.path / name).exists():
            shutil.copyfile(chosen.run_dir.path / name, run.path / name)
    sweep = [{"lr": r[0], "monitor": config.monitor, "score": r[1], "best_epoch": r[2].best_epoch,
              "best_val_c": r[2].best_val_c, "epochs_run": len(r[2].history), "seconds": r[2].seconds} for r in results]
    (run.path / "lr_sweep.json").write_text(json.dumps({"chosen_lr": lr, "runs": sweep}, indent=2))
    log.info("finetune.lr_chosen", lr=lr, monitor=config.monitor, run_dir=str(run.path))
    return FinetuneResult(chosen.net, run.best, chosen.best_epoch, chosen.best_val_c, chosen.history, run,
                          sum(r[2].seconds for r in results))


def finetune(
    config: FinetuneConfig,
    cohort_train: Cohort,
    cohort_val: Cohort,
    run_dir: str | Path,
    init: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune on ``cohort_train``, keep the epoch with the best Harrell C on ``cohort_val``.

    ``init``: ``None`` trains from scratch (400 epochs by default); a pretraining checkpoint
    copies its encoder and decoder (100 epochs); a fine-tuning checkpoint continues from it.
    The checkpoint records the data (cohort source, sizes, events) for the model card.
    """
    card = card or default_card()
    provenance = {
        "cohort": cohort_train.source,
        "time_unit": cohort_train.time_unit,
        "n_train": len(cohort_train),
        "n_train_events": cohort_train.n_events,
        "n_val": len(cohort_val),
        "n_val_events": cohort_val.n_events,
        # Real inputs for the export's ONNX parity check.
        "parity_records": [str(p.resolve()) for p in cohort_val.record_paths()[:PARITY_RECORDS]],
    }
    train = FinetuneData.from_cohort(cohort_train, card, cache_dir)
    val = FinetuneData.from_cohort(cohort_val, card, cache_dir)
    return finetune_tensors(config, train, val, run_dir, init, card=card, provenance=provenance, progress=progress)
