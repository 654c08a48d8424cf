r"""Pretraining (paper §3.1): a masked beat autoencoder whose embedding is aligned with report text.

For an ECG median beat :math:`x` with cleaned beat :math:`x_c` and frozen text embedding
:math:`t` (the likelihood-weighted SCP statements, or the raw report):

.. math::

    L = w_r \,\mathrm{MSE}\big(D(E(m \odot x)),\, x_c\big)
      + w_a \, L_\mathrm{align}\big(p_x(E(m \odot x)),\, p_t(t)\big)

with :math:`m` the whole-lead subset mask (:mod:`~hfrisk.training.data.augment`), :math:`E`/:math:`D`
the network's encoder and decoder, :math:`p_x`/:math:`p_t` the projection heads
(:class:`~hfrisk.model.network.hfrisk_net.AlignmentHeads`) and :math:`w_r = w_a = 1`. The MSE runs over the
leads the record has (all of them, masked or not: reconstructing the dropped leads is the point).
:math:`L_\mathrm{align}` is InfoNCE with identical texts as positives by default, or the paper
code's ``CosineEmbeddingLoss(target=+1)`` = mean :math:`1-\cos` (``loss="cosine"``; see
:class:`PretrainConfig` for why InfoNCE is the default).

AdamW (lr 1e-3, betas (0.9, 0.95), weight decay 0.01), linear warm-up over 20 % of the iterations
then cosine decay, stepped per iteration, batch 128, 300 epochs, seed 72. After every epoch the
validation split is scored; ``best.pt`` keeps the epoch with the lowest validation reconstruction
MSE (the paper's validation loss), ``last.pt`` the latest, with every state needed to resume.

>>> cfg = PretrainConfig(data_root="/data/ptbxl", max_epochs=5, limit_records=256)  # doctest: +SKIP
>>> result = pretrain(cfg, "runs/pretrain-smoke")                                 # doctest: +SKIP
>>> net = HFRiskNet.from_card(default_card())                                      # doctest: +SKIP
>>> load_pretrained_encoder(result.best_checkpoint, net)                           # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.network.hfrisk_net import AlignmentHeads, HFRiskNet

from hfrisk.training.data.augment import LeadSubsetMasking
from hfrisk.training.runs.checkpoint import load_checkpoint, resume, save_checkpoint
from hfrisk.training.data.dataset import ModelInputs, ptbxl_inputs
from hfrisk.training.data.ptbxl import PTBXL, SPLIT_FOLDS
from hfrisk.training.runs.run_dir import RunDir
from hfrisk.training.runs.schedule import warmup_cosine_schedule

__all__ = [
    "PretrainConfig",
    "PretrainSplit",
    "PretrainResult",
    "CosineAlignmentLoss",
    "InfoNCELoss",
    "alignment_loss",
    "masked_mse",
    "load_pretraining_data",
    "pretrain",
    "load_pretrained_encoder",
    "seed_everything",
]

log = get_logger(__name__)

# Settings that may change between a run and its resumption: they do not change the numbers.
_RUNTIME_FIELDS = frozenset({"device", "workers", "cache_dir", "progress"})


class PretrainConfig(BaseModel):
    """Every pretraining setting; defaults are the paper's (§3.1) unless a comment says otherwise.

    **Alignment loss.** ``loss="infonce"`` (default) is CLIP's symmetric cross-entropy over the
    batch's ECG–text similarities at temperature ``temperature`` (0.1, learnable with
    ``learn_temperature``). PTB-XL's structured text is a function of the SCP codes and many
    records in a batch share one; that costs nothing (see :class:`InfoNCELoss`), and records with
    similar but different codes act as hard negatives. ``loss="cosine"`` is what
    the released paper code trains with (``CosineEmbeddingLoss``, no negatives). It is not the
    default because it collapses here: on the PTB-XL subset (500 Hz, validated, folds 1-8/9,
    20 epochs, batch 32) both projection heads learnt to map every input to one direction, and a
    matched ECG-text pair was no closer than a shuffled one (cosine 0.998 vs 0.998); InfoNCE kept
    them apart (0.345 vs 0.087). The alignment term then carries information about which report
    goes with which ECG, which is the point of pretraining.

    **Data.** PTB-XL at ``sampling_rate`` from ``data_root``; ``validated_only`` keeps reports
    validated by a cardiologist (the paper's "high quality" subset); ``train_folds`` /
    ``val_folds`` are PTB-XL's stratified folds (1–8 / 9; fold 10 stays untouched for testing).
    ``limit_records`` keeps at most that many records per split, for smoke runs. ``keep`` chooses
    which preprocessed records train (:mod:`~hfrisk.training.data.dataset`): only those fit to score by
    default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- data
    data_root: Path
    sampling_rate: Literal[100, 500] = 500
    validated_only: bool = True
    train_folds: tuple[int, ...] = SPLIT_FOLDS["train"]
    val_folds: tuple[int, ...] = SPLIT_FOLDS["validation"]
    limit_records: int | None = Field(None, ge=1)
    keep: Literal["fit", "usable"] = "fit"
    # --- text side (frozen, embedded once and cached)
    text: Literal["structured", "raw"] = "structured"
    # A Hugging Face name or folder; None = the all-MiniLM-L6-v2 copy bundled for offline use
    # (the paper used emilyalsentzer/Bio_ClinicalBERT, which needs a download).
    text_encoder: str | None = None
    # --- model and objective
    encoder: Literal["dual_attention", "xresnet1d101"] = "dual_attention"
    loss: Literal["cosine", "infonce"] = "infonce"
    temperature: float = Field(0.1, gt=0)
    learn_temperature: bool = False
    recon_weight: float = Field(1.0, ge=0)
    align_weight: float = Field(1.0, ge=0)
    # --- optimisation
    max_epochs: int = Field(300, ge=1)
    batch_size: int = Field(128, ge=1)
    # Drop the last incomplete batch (as the paper's loader), unless the split has no full batch.
    drop_last: bool = True
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.2, ge=0, lt=1)
    # --- augmentation: whole-lead subset masking; one draw per ECG in pretraining
    lead_mask_p: float = Field(0.5, ge=0, le=1)
    same_mask_per_batch: bool = False
    # --- model selection
    monitor: Literal["val_recon", "val_loss", "val_align"] = "val_recon"
    # Stop when ``monitor`` has not improved for this many epochs (None: never, as the paper).
    early_stop_patience: int | None = Field(None, ge=1)
    # Keep a snapshot in checkpoints/ every this many epochs (0: none).
    checkpoint_every: int = Field(50, ge=0)
    # --- run
    seed: int = 72
    device: str = "auto"
    workers: int = Field(1, ge=1)
    # Model inputs and text embeddings; None = under HFRISK_PATHS__STATE_DIR.
    cache_dir: Path | None = None
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        if set(self.train_folds) & set(self.val_folds):
            raise ValueError(f"train_folds {self.train_folds} and val_folds {self.val_folds} overlap")
        if not self.val_folds:
            raise ValueError("val_folds is empty: pretraining selects its checkpoint on validation")
        return self


@dataclass(frozen=True)
class PretrainSplit:
    """One split as tensors: ``x``/``target`` (n, leads, T), ``lead_mask`` (n, leads), ``text`` (n, d)."""

    ids: np.ndarray
    x: torch.Tensor
    target: torch.Tensor
    lead_mask: torch.Tensor
    text: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device) -> PretrainSplit:
        return PretrainSplit(self.ids, self.x.to(device), self.target.to(device), self.lead_mask.to(device), self.text.to(device))


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


# --- losses -------------------------------------------------------------------------------------


def masked_mse(reconstruction: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """MSE over the leads a record has (``present`` (batch, leads) bool).

    Absent leads are excluded, not compared with their zero target: the decoder ends in an
    InstanceNorm, so it cannot output a flat lead, and would be penalised for leads no one recorded.
    """
    weight = present.to(reconstruction.dtype)[:, :, None]
    squared = (reconstruction - target).square() * weight
    return squared.sum() / (weight.sum() * reconstruction.shape[-1]).clamp(min=1.0)


class CosineAlignmentLoss(nn.Module):
    """``CosineEmbeddingLoss(margin=0)`` with target +1: mean ``1 - cos(e_ecg, e_text)``."""

    def forward(self, e_ecg: torch.Tensor, e_text: torch.Tensor) -> torch.Tensor:
        target = torch.ones(e_ecg.shape[0], device=e_ecg.device, dtype=e_ecg.dtype)
        return F.cosine_embedding_loss(e_ecg, e_text, target, margin=0.0)


class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE over a batch: ECG *i* should match text *i* against the batch's others.

    ``logits = cos(e_ecg_i, e_text_j) / T``; the loss is the mean of the ECG→text and text→ECG
    cross-entropies. ``T`` starts at ``temperature``; with ``learnable=True`` its log-inverse is a
    parameter (as in CLIP, clamped so that ``1/T <= 100``).

    Records with identical report text are not false negatives in disguise: identical texts give
    identical logit columns, and the softmax treats them as one text with their summed mass, so
    loss and gradients equal those of counting them all as positives (only the floor rises by
    ``log(copies)``).
    """

    _MAX_LOG_SCALE = math.log(100.0)

    def __init__(self, temperature: float = 0.1, learnable: bool = False):
        super().__init__()
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().clamp(max=self._MAX_LOG_SCALE).exp())

    def forward(self, e_ecg: torch.Tensor, e_text: torch.Tensor) -> torch.Tensor:
        a, b = F.normalize(e_ecg, dim=-1), F.normalize(e_text, dim=-1)
        logits = a @ b.T * self.log_scale.clamp(max=self._MAX_LOG_SCALE).exp()
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def alignment_loss(config: PretrainConfig) -> nn.Module:
    """The alignment criterion ``config.loss`` names."""
    if config.loss == "cosine":
        return CosineAlignmentLoss()
    return InfoNCELoss(config.temperature, config.learn_temperature)


# --- data ---------------------------------------------------------------------------------------


def _limited(view: PTBXL, limit: int | None) -> PTBXL:
    return view if limit is None or len(view) <= limit else view.subset(view.ids[:limit])


def _text_embeddings(ds: PTBXL, ids: np.ndarray, config: PretrainConfig, device: str) -> tuple[dict[int, np.ndarray], str]:
    """``ecg_id -> text vector`` for ``ids`` (records without text are left out) and the encoder name."""
    from hfrisk.training.pretrain.text_encoder import (
        TextEncoder,
        raw_text_embeddings,
        record_text_embeddings,
        resolve_default_encoder,
    )

    encoder = TextEncoder(config.text_encoder or resolve_default_encoder(), device=device, progress=config.progress)
    cache_dir = config.cache_dir / "text_embeddings" if config.cache_dir is not None else None
    view = ds.subset(ids)
    if config.text == "structured":
        codes = view.codes_per_record(include_zero=True)
        usable = {i: c for i, c in codes.items() if c}
        if len(usable) < len(codes):
            log.warning("pretrain.records_without_codes", n=len(codes) - len(usable))
        text_ids, vectors = record_text_embeddings(usable, view.statements, encoder, cache_dir=cache_dir)
    else:
        reports = view.reports()
        reports = reports[reports.str.len() > 0]
        if len(reports) < len(view):
            log.warning("pretrain.records_without_report", n=len(view) - len(reports))
        text_ids, vectors = raw_text_embeddings(reports, encoder, cache_dir=cache_dir)
    return {int(i): v for i, v in zip(text_ids, vectors)}, encoder.name


def _split(inputs: ModelInputs, texts: dict[int, np.ndarray], name: str) -> PretrainSplit:
    has_text = np.array([int(i) in texts for i in inputs.ids], dtype=bool)
    if not has_text.all():
        log.warning("pretrain.records_without_text", split=name, n=int((~has_text).sum()))
        inputs = inputs.subset(has_text)
    if len(inputs) == 0:
        raise ValueError(f"the {name} split has no usable record (check folds, limit_records and data_root)")
    text = np.stack([texts[int(i)] for i in inputs.ids]).astype(np.float32)
    return PretrainSplit(
        inputs.ids,
        torch.from_numpy(np.ascontiguousarray(inputs.x)),
        torch.from_numpy(np.ascontiguousarray(inputs.target)),
        torch.from_numpy(inputs.lead_mask.astype(bool)),
        torch.from_numpy(text),
    )


def load_pretraining_data(
    config: PretrainConfig, card: ModelCard, device: str = "cpu"
) -> tuple[PretrainSplit, PretrainSplit, str]:
    """Train and validation splits (ECG inputs, targets, text vectors) and the text encoder's name.

    ECG inputs come from the shared preprocessing cache, text vectors from the embedding cache;
    ``device`` is where the text model runs on a cache miss.
    """
    ds = PTBXL(config.data_root, config.sampling_rate)
    if config.validated_only:
        ds = ds.validated()
    views = {
        "train": _limited(ds.folds(config.train_folds), config.limit_records),
        "validation": _limited(ds.folds(config.val_folds), config.limit_records),
    }
    cache = config.cache_dir / "model_inputs" if config.cache_dir is not None else None
    inputs = {
        name: ptbxl_inputs(view, card, cache_dir=cache, keep=config.keep, workers=config.workers, progress=config.progress)
        for name, view in views.items()
    }
    all_ids = np.concatenate([inputs["train"].ids, inputs["validation"].ids]).astype(np.int64)
    texts, encoder_name = _text_embeddings(ds, all_ids, config, device)
    return _split(inputs["train"], texts, "train"), _split(inputs["validation"], texts, "validation"), encoder_name


# --- the loop -----------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); make cuDNN deterministic (cheap for this model)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


@torch.no_grad()
def _validate(model: _Model, data: PretrainSplit, config: PretrainConfig) -> dict[str, float]:
    """Unmasked validation: reconstruction MSE, alignment loss, and matched vs shuffled cosine.

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
    return {
        "val_loss": config.recon_weight * val_recon + config.align_weight * val_align,
        "val_recon": val_recon,
        "val_align": val_align,
        "val_cos_matched": float(matched.mean()),
        "val_cos_shuffled": float(shuffled.mean()) if n > 1 else float("nan"),
        "val_cos_shuffled_distinct_text": float(shuffled[distinct].mean()) if bool(distinct.any()) else float("nan"),
    }


def _check_resumable(saved: dict[str, Any], config: PretrainConfig) -> None:
    now = config.model_dump(mode="json")
    changed = sorted(k for k in set(saved) | set(now) if k not in _RUNTIME_FIELDS and saved.get(k) != now.get(k))
    if changed:
        raise ValueError(f"cannot resume: the configuration differs from the saved run in {changed}")


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
    device = _device(config.device)
    checkpoint = None
    if resume_run:
        if not run.last.is_file():
            raise FileNotFoundError(f"nothing to resume: {run.last} does not exist")
        checkpoint = load_checkpoint(run.last)
        _check_resumable(checkpoint["config"], config)

    seed_everything(config.seed)
    train, val, text_encoder = load_pretraining_data(config, card, device=str(device))
    train, val = train.to(device), val.to(device)
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

    provenance = {"text_encoder": text_encoder, "text_dim": text_dim, "n_train": len(train), "n_val": len(val),
                  "steps_per_epoch": steps}
    best_value, best_epoch, start_epoch, stopped_early = math.inf, 0, 1, False
    if checkpoint is not None:
        resume(checkpoint, model=net, heads=model.heads, criterion=model.criterion, optimizer=optimizer,
               scheduler=scheduler, generators=generators)
        extra = checkpoint["extra"]
        best_value, best_epoch, start_epoch = extra["best_value"], extra["best_epoch"], checkpoint["epoch"] + 1
        # A run that stopped early is finished: resuming it must not train on past its stopping point.
        stopped_early = bool(extra.get("stopped_early", False))
        run.truncate_metrics(checkpoint["epoch"])
        log.info("pretrain.resumed", run_dir=str(run.path), epoch=checkpoint["epoch"], best_epoch=best_epoch)
    else:
        run.write_config(config.model_dump(mode="json") | {"provenance": provenance})
        run.truncate_metrics(0)
    card = card.model_copy(update={"training": {"stage": "pretrain", "dataset": "PTB-XL", **provenance,
                                                "loss": config.loss, "text": config.text}})
    card.save(run.path)
    log.info("pretrain.start", device=str(device), epochs=config.max_epochs, **provenance)

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
                     extra={"best_value": best_value, "best_epoch": best_epoch, "monitor": config.monitor,
                            "metrics": row, "provenance": provenance, "stopped_early": stopped_early})
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


def load_pretrained_encoder(path: str | Path, net: HFRiskNet, state: Any = None) -> dict[str, Any]:
    """Copy the encoder and decoder weights of a pretraining checkpoint into ``net`` (for fine-tuning).

    Accepts a :func:`pretrain` checkpoint (``best.pt``/``last.pt``), a ``{"state_dict": ...}`` file
    or a bare state dict. Every encoder tensor of ``net`` must be found with the same shape (a
    checkpoint for another lead set or length raises); the decoder is copied when both have one.
    The risk head is left as it is: pretraining never trains it. ``state``: the file's contents
    when the caller has already read them (``path`` then only names it). Returns what was loaded.
    """
    if state is None:
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        weights, epoch = state["model"], state.get("epoch")
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        weights, epoch = state["state_dict"], state.get("epoch")
    else:
        weights, epoch = state, None
    own = net.state_dict()
    wanted = [k for k in own if k.startswith("encoder.") or (k.startswith("decoder.") and net.decoder is not None)]
    missing = [k for k in wanted if k.startswith("encoder.") and k not in weights]
    mismatched = [k for k in wanted if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or mismatched:
        raise ValueError(
            f"{path} does not fit this network: {len(missing)} encoder tensors missing (e.g. {missing[:3]}), "
            f"{len(mismatched)} with another shape (e.g. {mismatched[:3]})"
        )
    loaded = {k: weights[k] for k in wanted if k in weights}
    net.load_state_dict(loaded, strict=False)
    decoder = any(k.startswith("decoder.") for k in loaded)
    log.info("pretrain.encoder_loaded", path=str(path), tensors=len(loaded), decoder=decoder, epoch=epoch)
    return {"path": str(path), "tensors": len(loaded), "decoder": decoder, "epoch": epoch}
