"""The pretraining loop (paper §3.1): epochs of masked reconstruction plus alignment, validation, checkpoints, resume.

AdamW (lr 1e-3, betas (0.9, 0.95), weight decay 0.01), linear warm-up over 20 % of the iterations
then cosine decay, stepped per iteration, batch 128, 300 epochs, seed 72. After every epoch the
validation split is scored; ``best.pt`` keeps the epoch with the lowest validation ``monitor``
(reconstruction MSE by default), ``last.pt`` the latest, with every state needed to resume
exactly. The objective is in :mod:`~hfrisk.training.pretrain.losses`; docs/training/pretraining.md
tells the whole story.

>>> cfg = PretrainConfig(data_root="/data/ptbxl", max_epochs=5, limit_records=256)  # doctest: +SKIP
>>> result = pretrain(cfg, "runs/pretrain-smoke")                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.network.hfrisk_net import AlignmentHeads, HFRiskNet
from hfrisk.training.data.augment import LeadSubsetMasking
from hfrisk.training.pretrain.config import PretrainConfig
from hfrisk.training.pretrain.data import PretrainSplit, load_pretraining_data
from hfrisk.training.pretrain.losses import InfoNCELoss, alignment_loss, masked_mse
from hfrisk.training.pretrain.state import PretrainProgress, PretrainProvenance
from hfrisk.training.runs.checkpoint import load_checkpoint, resume, save_checkpoint
from hfrisk.training.runs.environment import seed_everything, torch_device
from hfrisk.training.runs.run_dir import RunDir
from hfrisk.training.runs.schedule import warmup_cosine_schedule

__all__ = ["PretrainResult", "pretrain", "retrieval"]

log = get_logger(__name__)


@dataclass
class PretrainResult:
    """Where the run is and how it went. ``best_value`` is the ``monitor`` metric at ``best_epoch``."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]
    n_train: int
    n_val: int
    seconds: float


def _steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    full, rest = divmod(n, batch_size)
    return full if (drop_last and full) else full + bool(rest)


def _batches(n: int, batch_size: int, drop_last: bool, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(_steps_per_epoch(n, batch_size, drop_last))]


class _Model(nn.Module):
    """Network, projection heads and loss under one roof, for the optimiser and ``train()``/``eval()``."""

    def __init__(self, net: HFRiskNet, heads: AlignmentHeads, criterion: nn.Module):
        super().__init__()
        self.net, self.heads, self.criterion = net, heads, criterion

    def trained_parameters(self) -> list[nn.Parameter]:
        # The risk head is not part of pretraining; leaving it out keeps it at its initialisation.
        modules = (self.net.encoder, self.net.decoder, self.heads, self.criterion)
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def losses(self, x: torch.Tensor, target: torch.Tensor, present: torch.Tensor, text: torch.Tensor):
        embedding = self.net.embed(x)
        reconstruction = self.net.decoder(embedding)
        e_ecg, e_text = self.heads(embedding, text)
        return masked_mse(reconstruction, target, present), self.criterion(e_ecg, e_text), e_ecg, e_text


def _train_epoch(
    model: _Model, data: PretrainSplit, config: PretrainConfig, optimizer, scheduler, masking: LeadSubsetMasking,
    shuffle: torch.Generator, augment: torch.Generator, desc: str,
) -> dict[str, float]:
    from tqdm import tqdm

    model.train()
    device = data.x.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    seen = 0
    bar = tqdm(_batches(len(data), config.batch_size, config.drop_last, shuffle), desc=desc, unit="batch",
               disable=not config.progress, leave=False)
    for step, index in enumerate(bar):
        index = index.to(device)
        x, _ = masking(data.x[index], generator=augment)
        recon, align, _, _ = model.losses(x, data.target[index], data.lead_mask[index], data.text[index])
        loss = config.recon_weight * recon + config.align_weight * align
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = len(index)
        sums += torch.stack([loss.detach(), recon.detach(), align.detach()]).double() * n
        seen += n
        if step % 10 == 0:  # .item() waits for the GPU; every step would slow it down
            bar.set_postfix(loss=f"{loss.item():.4f}")
    means = (sums / max(seen, 1)).tolist()
    return {"train_loss": means[0], "train_recon": means[1], "train_align": means[2]}


def retrieval(e_ecg: torch.Tensor, e_text: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    """ECG→text retrieval among the distinct texts of a set: how often a record's own text ranks first
    (``top1``) or in the first five (``top5``), and the mean reciprocal rank.

    ``e_ecg``/``e_text`` (n, d) are the projected embeddings, ``text`` (n, t) the text vectors that
    say which records share a text (identical structured reports are one candidate). ``top1_majority``
    is what always answering the most frequent text scores, ``texts`` the number of candidates.
    The ``*_popular`` figures rank the texts by how many records share them, the same for every
    ECG: the bar an encoder has to clear to add anything about the individual ECG (a collapsed
    encoder scores about them). Ties count in the record's favour.
    """
    distinct, inverse = torch.unique(text, dim=0, return_inverse=True)
    k = distinct.shape[0]
    candidates = torch.zeros(k, e_text.shape[1], dtype=e_text.dtype, device=e_text.device).index_copy(0, inverse, e_text)
    candidates = F.normalize(candidates, dim=-1)
    sims = F.normalize(e_ecg, dim=-1) @ candidates.T
    counts = torch.bincount(inverse, minlength=k)
    ranks = {"": (sims > sims.gather(1, inverse[:, None])).sum(1),
             "_popular": (counts[None, :] > counts[inverse][:, None]).sum(1)}
    out = {}
    for suffix, rank in ranks.items():
        out |= {f"top1{suffix}": float((rank == 0).float().mean()), f"top5{suffix}": float((rank < 5).float().mean()),
                f"mrr{suffix}": float((1.0 / (rank + 1).float()).mean())}
    return out | {"top1_majority": out["top1_popular"], "texts": float(k)}


@torch.no_grad()
def _validate(model: _Model, data: PretrainSplit, config: PretrainConfig) -> dict[str, float]:
    """Unmasked validation: reconstruction MSE, alignment loss, matched vs shuffled cosine and
    ECG→text retrieval among the validation set's distinct texts (:func:`retrieval`).

    The shuffled pairs use a fixed derangement, so the figure is comparable across epochs; the
    ``distinct_text`` variant only counts pairs whose texts differ (identical structured texts make
    a "shuffled" pair a true match).
    """
    model.eval()
    recon_sum = align_sum = 0.0
    weight_sum = 0.0
    e_ecg_all, e_text_all = [], []
    for start in range(0, len(data), config.batch_size):
        sl = slice(start, start + config.batch_size)
        present = data.lead_mask[sl]
        recon, align, e_ecg, e_text = model.losses(data.x[sl], data.target[sl], present, data.text[sl])
        weight = float(present.sum()) * data.x.shape[-1]
        recon_sum += float(recon) * weight
        weight_sum += weight
        align_sum += float(align) * present.shape[0]
        e_ecg_all.append(F.normalize(e_ecg, dim=-1))
        e_text_all.append(F.normalize(e_text, dim=-1))
    e_ecg, e_text = torch.cat(e_ecg_all), torch.cat(e_text_all)
    n = len(data)
    order = torch.from_numpy(np.random.default_rng(0).permutation(n)).to(e_ecg.device)
    partner = order.roll(1)
    matched = (e_ecg * e_text).sum(-1)
    shuffled = (e_ecg[order] * e_text[partner]).sum(-1)
    distinct = (data.text[order] != data.text[partner]).any(-1)
    val_recon = recon_sum / max(weight_sum, 1.0)
    val_align = align_sum / n
    found = retrieval(e_ecg, e_text, data.text)
    return {
        "val_loss": config.recon_weight * val_recon + config.align_weight * val_align,
        "val_recon": val_recon,
        "val_align": val_align,
        "val_cos_matched": float(matched.mean()),
        "val_cos_shuffled": float(shuffled.mean()) if n > 1 else float("nan"),
        "val_cos_shuffled_distinct_text": float(shuffled[distinct].mean()) if bool(distinct.any()) else float("nan"),
        "val_top1": found["top1"],
        "val_top5": found["top5"],
        "val_mrr": found["mrr"],
        "val_top5_popular": found["top5_popular"],
        "val_mrr_popular": found["mrr_popular"],
        "val_top1_majority": found["top1_majority"],
        "val_texts": found["texts"],
    }


def pretrain(
    config: PretrainConfig,
    run_dir: str | Path | RunDir,
    *,
    resume_run: bool = False,
    stop_after_epoch: int | None = None,
    card: ModelCard | None = None,
) -> PretrainResult:
    """Pretrain per ``config``, writing the run to ``run_dir``.

    Args:
        resume_run: continue from ``run_dir/last.pt`` (same configuration, except
            device/workers/cache_dir/progress); the result equals an uninterrupted run's.
        stop_after_epoch: stop after this epoch although the schedule spans ``config.max_epochs``
            (for time-limited jobs; resume later with ``resume_run=True``).
        card: the input contract (default :func:`~hfrisk.model.contract.card.default_card`).
    """
    started = time.perf_counter()
    card = card or default_card()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    device = torch_device(config.device)
    checkpoint = None
    if resume_run:
        if not run.last.is_file():
            raise FileNotFoundError(f"nothing to resume: {run.last} does not exist")
        checkpoint = load_checkpoint(run.last)
        changed = config.resume_differences(checkpoint["config"])
        if changed:
            raise ValueError(f"cannot resume: the configuration differs from the saved run in {changed}")

    seed_everything(config.seed)
    data = load_pretraining_data(config, card, device=str(device))
    train, val, text_encoder = data.train.to(device), data.validation.to(device), data.text_encoder
    text_dim = int(train.text.shape[1])

    # Re-seed after data loading, so the initial weights do not depend on what was cached.
    seed_everything(config.seed)
    net = HFRiskNet.from_card(card, encoder=config.encoder)
    model = _Model(net, AlignmentHeads(text_dim=text_dim), alignment_loss(config)).to(device)
    optimizer = torch.optim.AdamW(
        model.trained_parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    steps = _steps_per_epoch(len(train), config.batch_size, config.drop_last)
    scheduler = warmup_cosine_schedule(optimizer, steps * config.max_epochs, config.warmup_fraction)
    masking = LeadSubsetMasking(card.input.leads, config.lead_mask_p, same_mask_per_batch=config.same_mask_per_batch)
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator().manual_seed(config.seed + 1),
    }

    provenance = PretrainProvenance(text_encoder=text_encoder, text_dim=text_dim, n_train=len(train),
                                    n_val=len(val), steps_per_epoch=steps, corpus=data.corpus)
    best_value, best_epoch, start_epoch, stopped_early = math.inf, 0, 1, False
    if checkpoint is not None:
        resume(checkpoint, model=net, heads=model.heads, criterion=model.criterion, optimizer=optimizer,
               scheduler=scheduler, generators=generators)
        progress = PretrainProgress.model_validate(checkpoint["extra"])
        best_value, best_epoch, start_epoch = progress.best_value, progress.best_epoch, checkpoint["epoch"] + 1
        stopped_early = progress.stopped_early
        run.truncate_metrics(checkpoint["epoch"])
        log.info("pretrain.resumed", run_dir=str(run.path), epoch=checkpoint["epoch"], best_epoch=best_epoch)
    else:
        run.write_config(config.model_dump(mode="json") | {"provenance": provenance.model_dump()})
        run.truncate_metrics(0)
    card = card.model_copy(update={"training": {"stage": "pretrain", "dataset": "PTB-XL", **provenance.model_dump(),
                                                "loss": config.loss, "text": config.text}})
    card.save(run.path)
    log.info("pretrain.start", device=str(device), epochs=config.max_epochs, **provenance.model_dump())

    last_epoch = stop_after_epoch if stop_after_epoch is not None else config.max_epochs
    last_epoch = start_epoch - 1 if stopped_early else min(last_epoch, config.max_epochs)
    epoch = start_epoch - 1
    for epoch in range(start_epoch, last_epoch + 1):
        epoch_started = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch}
        row |= _train_epoch(model, train, config, optimizer, scheduler, masking, generators["shuffle"],
                            generators["augment"], desc=f"epoch {epoch}/{config.max_epochs}")
        row["lr"] = scheduler.get_last_lr()[0]
        if isinstance(model.criterion, InfoNCELoss):
            row["temperature"] = model.criterion.temperature
        row |= _validate(model, val, config)
        row["epoch_s"] = time.perf_counter() - epoch_started
        improved = row[config.monitor] < best_value
        if improved:
            best_value, best_epoch = row[config.monitor], epoch
        row["best_epoch"] = best_epoch
        run.append_metrics(row)
        log.info("pretrain.epoch", **{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})

        patience = config.early_stop_patience
        stopped_early = patience is not None and epoch - best_epoch >= patience
        state = dict(model=net, heads=model.heads, criterion=model.criterion, optimizer=optimizer, scheduler=scheduler,
                     epoch=epoch, config=config.model_dump(mode="json"), card=card, generators=generators,
                     extra=PretrainProgress(best_value=best_value, best_epoch=best_epoch, monitor=config.monitor,
                                            metrics=row, provenance=provenance,
                                            stopped_early=stopped_early).model_dump())
        if improved:
            save_checkpoint(run.best, **state)
        save_checkpoint(run.last, **state)
        if config.checkpoint_every and epoch % config.checkpoint_every == 0:
            shutil.copyfile(run.last, run.snapshot(epoch))
        if stopped_early:
            log.info("pretrain.early_stop", epoch=epoch, best_epoch=best_epoch, patience=patience)
            break

    seconds = time.perf_counter() - started
    log.info("pretrain.done", run_dir=str(run.path), best_epoch=best_epoch, best_value=best_value, seconds=round(seconds, 1))
    return PretrainResult(
        run_dir=run.path, best_checkpoint=run.best, last_checkpoint=run.last, best_epoch=best_epoch,
        best_value=best_value, monitor=config.monitor, epochs_run=epoch, stopped_early=stopped_early,
        history=run.read_metrics(), n_train=len(train), n_val=len(val), seconds=seconds,
    )
