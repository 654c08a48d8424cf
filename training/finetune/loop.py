r"""Fine-tuning the network for heart-failure risk (paper §3.2), from pretrained weights or from scratch.

The objective is the paper's

.. math::

    L = \alpha\, L_\mathrm{Cox}(\eta, \delta, T) + (1 - \alpha)\, \mathrm{MSE}(\hat x, x), \qquad \alpha = 0.5

with :math:`\eta` the log-risk (higher = riskier), :func:`~hfrisk.training.finetune.survival_loss.cox_loss`
computed within each batch, and the reconstruction error of the unmasked input :math:`x` taken
over every lead the record has (:func:`~hfrisk.training.pretrain.loop.masked_mse`, as in pretraining:
leads the augmentation dropped are rebuilt from the others). What keeps the in-batch Cox loss meaningful with 1–5 % events:

* :class:`~hfrisk.training.data.sampling.EventStratifiedBatchSampler`: every batch holds events in
  the cohort's proportion;
* ``BatchwiseDropout`` inside the network (one dropout mask per batch);
* whole-lead subset masking with one mask for the whole batch (probability
  ``lead_mask_prob``), so that the subjects a Cox term compares see the same leads.

AdamW (lr 1e-4, weight decay 1e-2), gradient-norm clipping at 100, no scheduler; 100 epochs from
a pretrained encoder, 400 from scratch. After every epoch the model scores the validation part
and the checkpoint with the best validation Harrell C is kept (``best.pt``); ties keep the
earlier epoch.

>>> result = finetune(FinetuneConfig(), fit_cohort, val_cohort, "runs/ft", init="pretrain/best.pt")  # doctest: +SKIP
>>> result.best_epoch, result.best_val_c                                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.network.hfrisk_net import HFRiskNet
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from hfrisk.core.logs import get_logger

from hfrisk.training.data.augment import LeadSubsetMasking
from hfrisk.training.runs.checkpoint import load_checkpoint, save_checkpoint
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.data.dataset import model_inputs
from hfrisk.training.pretrain.loop import masked_mse
from hfrisk.training.evaluation.protocol import harrell_c_or_nan
from hfrisk.training.runs.run_dir import RunDir
from hfrisk.training.data.sampling import EventStratifiedBatchSampler
from hfrisk.training.finetune.survival_loss import cox_loss

__all__ = [
    "FinetuneConfig",
    "FinetuneData",
    "FinetuneResult",
    "finetune",
    "finetune_tensors",
    "finetune_method",
    "predict_log_risk",
    "load_finetuned",
    "STAGE",
]

log = get_logger(__name__)

# Checkpoints are hfrisk.training.runs.checkpoint's; ``extra["stage"]`` tells fine-tuned from pretrained.
STAGE = "finetune"
_PARITY_RECORDS = 8


class FinetuneConfig(BaseModel):
    """Every fine-tuning setting; defaults are the paper's (§3.2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder: Literal["dual_attention", "xresnet1d101"] = "dual_attention"
    # Weight of the Cox loss; 1 - alpha weighs the reconstruction.
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(100.0, gt=0)
    # 128 for UKB-MI (800 subjects), 1024 for UKB-HYP.
    batch_size: int = Field(128, ge=2)
    # None: 100 epochs from a pretrained encoder, 400 from scratch.
    epochs: int | None = Field(None, ge=1)
    epochs_pretrained: int = Field(100, ge=1)
    epochs_scratch: int = Field(400, ge=1)
    # Probability that a batch has a lead subset masked (one mask for the whole batch).
    lead_mask_prob: float = Field(0.5, ge=0.0, le=1.0)
    freeze_encoder: bool = False
    seed: int = 42
    device: str = "auto"
    # Stop when the validation C has not improved for this many epochs (None: never, as the paper).
    patience: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(256, ge=1)

    def resolved_epochs(self, pretrained: bool) -> int:
        if self.epochs is not None:
            return self.epochs
        return self.epochs_pretrained if pretrained else self.epochs_scratch


@dataclass(frozen=True)
class FinetuneData:
    """Model inputs and outcomes of one cohort part, as tensors.

    ``x`` ``(n, leads, T)`` float32 (the card's input), ``lead_mask`` ``(n, leads)`` bool (True
    where the record has the lead), ``event`` ``(n,)`` 0/1 and ``time`` ``(n,)``. The
    reconstruction target is ``x`` itself (paper §3.2: MSE(decoder(z), x)).
    """

    x: torch.Tensor
    lead_mask: torch.Tensor
    event: torch.Tensor
    time: torch.Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if not (self.lead_mask.shape[0] == self.event.shape[0] == self.time.shape[0] == n):
            raise ValueError("x, lead_mask, event and time must have the same length")
        if self.x.ndim != 3 or self.lead_mask.shape != self.x.shape[:2]:
            raise ValueError(f"x must be (n, leads, T) and lead_mask (n, leads), got {tuple(self.x.shape)}, "
                             f"{tuple(self.lead_mask.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_arrays(cls, x, lead_mask, event, time) -> FinetuneData:
        return cls(
            torch.as_tensor(np.asarray(x, dtype=np.float32)),
            torch.as_tensor(np.asarray(lead_mask, dtype=bool)),
            torch.as_tensor(np.array(event, dtype=np.int64)),  # copies: cohort arrays may be read-only
            torch.as_tensor(np.array(time, dtype=np.float64)),
        )

    @classmethod
    def from_cohort(cls, cohort: Cohort, card: ModelCard | None = None, cache_dir: str | Path | None = None) -> FinetuneData:
        """Model inputs of every record of ``cohort`` with its outcomes, one row per cohort row.

        Inputs come from :func:`hfrisk.training.data.dataset.model_inputs` (the card's preprocessing,
        cached under ``cache_dir``, default ``<state_dir>/model_inputs``). Records the
        preprocessing refuses stay as all-zero rows, so rows still line up with the cohort; they
        are counted in a warning.
        """
        inputs = model_inputs(cohort.record_paths(), card or default_card(), cache_dir=cache_dir, keep="all")
        if inputs.failed.any():
            log.warning("finetune.records_failed", failed=int(inputs.failed.sum()), records=len(inputs),
                        first=str(inputs.reasons[inputs.failed][0]))
        return cls.from_arrays(inputs.x, inputs.lead_mask, cohort.event, cohort.time)


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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def _load_init(net: HFRiskNet, init: str | Path) -> dict[str, Any]:
    """Initialise ``net`` from a checkpoint: a fine-tuned one (all weights) or a pretrained one
    (encoder and decoder, through :func:`hfrisk.training.pretrain.loop.load_pretrained_encoder`)."""
    path = Path(init)
    try:
        state = load_checkpoint(path)
    except ValueError:
        state = None
    if state is not None and state.get("extra", {}).get("stage") == STAGE:
        net.load_state_dict(state["model"])
        return {"init": str(path), "init_kind": "finetuned"}
    from hfrisk.training.pretrain.loop import load_pretrained_encoder

    loaded = load_pretrained_encoder(path, net)
    return {"init": str(path), "init_kind": "pretrained", "init_epoch": loaded.get("epoch"),
            "init_decoder": loaded.get("decoder")}


def load_finetuned(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[HFRiskNet, dict[str, Any]]:
    """The network of a fine-tuning checkpoint (eval mode) and the checkpoint without its weights.

    ``meta["extra"]`` holds ``stage``, ``val_harrell_c`` and ``provenance`` (data, initialisation).
    """
    state = load_checkpoint(checkpoint)
    if state.get("extra", {}).get("stage") != STAGE:
        raise ValueError(f"{checkpoint} is not a fine-tuning checkpoint (extra.stage != {STAGE!r})")
    card = ModelCard.model_validate(state["card"])
    net = HFRiskNet.from_card(card, encoder=state["config"]["encoder"])
    net.load_state_dict(state["model"])
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}
    return net.to(device).eval(), meta


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
    ``model_card.json``, ``metrics.jsonl`` (one row per epoch, 1-based), ``best.pt`` and
    ``last.pt`` (:mod:`hfrisk.training.runs.checkpoint` files with ``extra.stage = "finetune"``).
    """
    card = card or default_card()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if train.event.sum() == 0:
        raise ValueError("the training part has no event: the Cox loss is undefined")
    if val.event.sum() == 0:
        raise ValueError("the validation part has no event: checkpoints cannot be chosen by C-index")
    torch.manual_seed(config.seed)
    device = _device(config.device)
    net = HFRiskNet.from_card(card, encoder=config.encoder)
    provenance = {**(provenance or {}), "encoder": config.encoder}
    if init is not None:
        provenance.update(_load_init(net, init))
    else:
        provenance.update(init=None, init_kind="scratch")
    net.to(device)
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
    run.write_config({"stage": STAGE, "config": config.model_dump(mode="json"), "epochs": epochs,
                      "provenance": provenance, "n_train": len(train), "n_train_events": int(train.event.sum()),
                      "n_val": len(val), "n_val_events": int(val.event.sum())})
    card.save(run.path)
    run.metrics_path.unlink(missing_ok=True)

    def save(path: Path, epoch: int, val_c: float) -> None:
        save_checkpoint(path, model=net, epoch=epoch, config=config.model_dump(mode="json"), card=card,
                        optimizer=optimiser, generators=generators,
                        extra={"stage": STAGE, "val_harrell_c": val_c, "provenance": provenance})

    history: list[dict[str, float]] = []
    best_c, best_epoch, stale = -math.inf, -1, 0
    started = time.perf_counter()
    epoch_iter: Sequence[int] = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="fine-tune", unit="epoch")
    for epoch in epoch_iter:
        net.train()
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
        val_risk = predict_log_risk(net, val.x, config.eval_batch_size, device)
        # NaN where no pair is comparable (a tiny validation part): such an epoch is never "best".
        val_c = harrell_c_or_nan(val_risk, val.event.numpy(), val.time.numpy())
        means = (sums / max(n_batches, 1)).tolist()
        with torch.no_grad():
            val_cox = float(cox_loss(torch.as_tensor(val_risk), val.event, val.time))
        row = {"epoch": epoch, "train_loss": means[0], "train_cox": means[1], "train_recon": means[2],
               "val_harrell_c": val_c, "val_cox": val_cox, "seconds": time.perf_counter() - started}
        history.append(row)
        run.append_metrics(row)
        if val_c > best_c:
            best_c, best_epoch, stale = val_c, epoch, 0
            save(run.best, epoch, val_c)
        else:
            stale += 1
        log.debug("finetune.epoch", **{k: round(v, 5) for k, v in row.items()})
        if config.patience is not None and stale >= config.patience:
            break
    save(run.last, history[-1]["epoch"], history[-1]["val_harrell_c"])
    if best_epoch < 0:
        # The validation C was undefined at every epoch: the last epoch is all there is to keep.
        log.warning("finetune.no_validation_c", run_dir=str(run.path))
        best_epoch, best_c = int(history[-1]["epoch"]), float("nan")
        save(run.best, best_epoch, best_c)
    best_net, _ = load_finetuned(run.best, device)
    seconds = time.perf_counter() - started
    log.info("finetune.done", run_dir=str(run.path), best_epoch=best_epoch, best_val_c=round(best_c, 4),
             epochs=len(history), seconds=round(seconds, 1))
    return FinetuneResult(best_net, run.best, best_epoch, best_c, pd.DataFrame(history), run, seconds)


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
        "parity_records": [str(p.resolve()) for p in cohort_val.record_paths()[:_PARITY_RECORDS]],
    }
    train = FinetuneData.from_cohort(cohort_train, card, cache_dir)
    val = FinetuneData.from_cohort(cohort_val, card, cache_dir)
    return finetune_tensors(config, train, val, run_dir, init, card=card, provenance=provenance, progress=progress)


def finetune_method(
    config: FinetuneConfig | None = None,
    init: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    cache_dir: str | Path | None = None,
    inputs: FinetuneData | None = None,
    cohort: Cohort | None = None,
):
    """Fine-tuning as a :mod:`~hfrisk.training.evaluation.protocol` method (one network per run, seeded by the split).

    Model inputs are looked up by record: in ``inputs`` (made from ``cohort``) when given,
    otherwise preprocessed once for all the records the first split shows (training and test
    fold together: the whole cohort under the paper's splits) and reused by the other runs.
    """
    from hfrisk.training.evaluation.protocol import MethodResult

    config = config or FinetuneConfig()
    card = card or default_card()
    if (inputs is None) != (cohort is None):
        raise ValueError("pass inputs together with the cohort they were made from")
    table: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if inputs is not None:
        table.update({r: (inputs.x[i], inputs.lead_mask[i]) for i, r in enumerate(cohort.records)})

    def ensure(split) -> None:
        missing = [c for c in (split.train, split.test) if any(r not in table for r in c.records)]
        if not missing:
            return
        if inputs is not None:
            raise KeyError("the split has records that the given inputs do not cover")
        union = Cohort(pd.concat([c.table for c in missing]).drop_duplicates("record").sort_values("record"),
                       split.train.time_unit, split.train.records_root, split.train.source)
        data = FinetuneData.from_cohort(union, card, cache_dir)
        table.update({r: (data.x[i], data.lead_mask[i]) for i, r in enumerate(union.records)})

    def data_of(part: Cohort) -> FinetuneData:
        x = torch.stack([table[r][0] for r in part.records])
        lead_mask = torch.stack([table[r][1] for r in part.records])
        return FinetuneData(x, lead_mask, torch.as_tensor(np.array(part.event)), torch.as_tensor(np.array(part.time)))

    def method(split, run_dir: Path) -> MethodResult:
        run_config = config.model_copy(update={"seed": split.seed})
        ensure(split)
        train_all = data_of(split.train)
        fit_rows, val_rows = torch.as_tensor(split.fit_index), torch.as_tensor(split.val_index)

        def rows(data: FinetuneData, index: torch.Tensor) -> FinetuneData:
            return FinetuneData(data.x[index], data.lead_mask[index], data.event[index], data.time[index])

        provenance = {"cohort": split.train.source, "run": split.name, "time_unit": split.train.time_unit,
                      "n_train": len(split.fit_index), "n_train_events": int(train_all.event[fit_rows].sum()),
                      "n_val": len(split.val_index), "n_val_events": int(train_all.event[val_rows].sum()),
                      "parity_records": [str(p.resolve()) for p in split.val.record_paths()[:_PARITY_RECORDS]]}
        result = finetune_tensors(run_config, rows(train_all, fit_rows), rows(train_all, val_rows), run_dir, init,
                                  card=card, provenance=provenance)
        device = next(result.net.parameters()).device
        return MethodResult(
            train_risk=predict_log_risk(result.net, train_all.x, config.eval_batch_size, device),
            test_risk=predict_log_risk(result.net, data_of(split.test).x, config.eval_batch_size, device),
            info={**result.summary(), "val_harrell_c": result.best_val_c},
        )

    method.name = f"finetune_{config.encoder}_{'pretrained' if init else 'scratch'}"  # type: ignore[attr-defined]
    return method
