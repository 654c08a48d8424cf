"""Linear probe of a frozen ECG encoder on the PTB-XL diagnostic superclasses: what pretraining learnt.

Logistic regressions on the frozen 512-d embedding (folds 1–8 train, C chosen on 9, macro AUC on
10), for the pretrained encoder and for the random initialisation it started from, whose
difference is what pretraining learnt (docs/training/evaluation.md).

>>> result = probe_checkpoint("/data/ptbxl", "runs/pretrain/best.pt")   # doctest: +SKIP
>>> result["pretrained"]["test_macro_auc"], result["random"]["test_macro_auc"]   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.model.network.hfrisk_net import HFRiskNet

from hfrisk.training.data.dataset import ModelInputs, ptbxl_inputs
from hfrisk.training.data.ptbxl import PTBXL, SPLIT_FOLDS, SUPERCLASSES

__all__ = [
    "ProbeResult",
    "probe_data",
    "embed",
    "random_encoder",
    "pretrained_encoder",
    "fit_probe",
    "probe_checkpoint",
    "DEFAULT_CS",
]

log = get_logger(__name__)

# Inverse L2 strengths tried on the validation fold: 512 features on a few hundred records
# need strong shrinkage, so the grid reaches far below sklearn's default of 1.
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


class ProbeResult(BaseModel):
    """One probe: chosen ``C``, validation and test macro AUC (with a bootstrap interval), per class AUC."""

    encoder: str
    c: float
    val_macro_auc: float
    test_macro_auc: float
    test_ci_low: float
    test_ci_high: float
    test_auc: dict[str, float]
    n_train: int
    n_val: int
    n_test: int
    positives_test: dict[str, int]
    val_auc_by_c: dict[str, float] = {}
    n_boot: int = 0

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


def probe_data(ds: PTBXL, card: ModelCard | None = None, *, cache_dir: str | Path | None = None,
               progress: bool = False) -> tuple[ModelInputs, pd.DataFrame]:
    """Model inputs and labels of the records with a superclass and a usable lead, aligned by ``ecg_id``.

    Returns ``(inputs, labels)``: ``labels`` has the :data:`SUPERCLASSES` columns plus
    ``strat_fold``, indexed by ``ecg_id`` in the row order of ``inputs``.
    """
    labels = ds.superclass_labels()
    labelled = labels.index[labels[list(SUPERCLASSES)].sum(axis=1) > 0]
    inputs = ptbxl_inputs(ds.subset(labelled), card or default_card(), cache_dir=cache_dir, keep="usable",
                          progress=progress)
    ids = inputs.ids.astype(np.int64)
    table = labels.loc[ids].copy()
    table["strat_fold"] = ds.metadata.loc[ids, "strat_fold"].astype(int).to_numpy()
    log.info("probe.data", records=len(ds), labelled=len(labelled), usable=len(ids))
    return inputs, table


@torch.no_grad()
def embed(net: HFRiskNet, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The frozen encoder's 512-d embedding of every row of ``x`` (eval mode: BatchNorm uses running stats)."""
    net.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    out = [net.embed(x[i:i + batch_size]).cpu().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 512))


def random_encoder(encoder: str = "dual_attention", seed: int = 72, card: ModelCard | None = None) -> HFRiskNet:
    """The network as :func:`~hfrisk.training.pretrain.loop.pretrain` initialises it under ``seed``."""
    from hfrisk.training.runs.environment import seed_everything

    seed_everything(seed)
    return HFRiskNet.from_card(card or default_card(), encoder=encoder)


def pretrained_encoder(checkpoint: str | Path, card: ModelCard | None = None) -> tuple[HFRiskNet, dict[str, Any]]:
    """The network with a pretraining checkpoint's encoder; also returns the run's config (seed, encoder)."""
    from hfrisk.training.runs.checkpoint import load_checkpoint
    from hfrisk.training.pretrain.encoder_weights import load_pretrained_encoder

    state = load_checkpoint(checkpoint)
    config = state["config"]
    net = random_encoder(config.get("encoder", "dual_attention"), int(config.get("seed", 72)), card)
    load_pretrained_encoder(checkpoint, net, state=state)
    return net, config


def _macro_auc(y: np.ndarray, scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """Mean AUC over the classes with both labels present in ``y`` (an absent class has no AUC)."""
    from sklearn.metrics import roc_auc_score

    per_class = {}
    for j, name in enumerate(SUPERCLASSES):
        if 0 < y[:, j].sum() < len(y):
            per_class[name] = float(roc_auc_score(y[:, j], scores[:, j]))
    return (float(np.mean(list(per_class.values()))) if per_class else float("nan")), per_class


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)))
    return model.fit(x, y)


def _bootstrap(y: np.ndarray, scores: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    if n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        value, _ = _macro_auc(y[rows], scores[rows])
        if np.isfinite(value):
            values.append(value)
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def fit_probe(
    embeddings: np.ndarray,
    labels: pd.DataFrame,
    *,
    encoder: str = "encoder",
    train_folds: Sequence[int] = SPLIT_FOLDS["train"],
    val_folds: Sequence[int] = SPLIT_FOLDS["validation"],
    test_folds: Sequence[int] = SPLIT_FOLDS["test"],
    cs: Sequence[float] = DEFAULT_CS,
    n_boot: int = 1000,
    seed: int = 0,
) -> ProbeResult:
    """One-vs-rest logistic regression on ``embeddings`` (rows aligned with ``labels``).

    Trained on ``train_folds``; ``C`` chosen by validation macro AUC; the model trained on the
    training folds (not refitted) is scored on ``test_folds``.
    """
    if len(embeddings) != len(labels):
        raise ValueError(f"{len(embeddings)} embeddings for {len(labels)} label rows")
    y = labels[list(SUPERCLASSES)].to_numpy(dtype=np.int64)
    fold = labels["strat_fold"].to_numpy()
    train, val, test = (np.isin(fold, list(f)) for f in (train_folds, val_folds, test_folds))
    if not (train.any() and val.any() and test.any()):
        raise ValueError(f"empty split: {int(train.sum())} train, {int(val.sum())} val, {int(test.sum())} test records")
    # One-vs-rest cannot fit a class without a positive training record.
    missing = [n for j, n in enumerate(SUPERCLASSES) if y[train, j].sum() == 0]
    if missing:
        raise ValueError(f"superclasses without a positive training record: {missing}")
    by_c, models = {}, {}
    for c in cs:
        models[c] = _fit(embeddings[train], y[train], c)
        by_c[c], _ = _macro_auc(y[val], models[c].predict_proba(embeddings[val]))
    best = max(cs, key=lambda c: (by_c[c], -c))  # ties: the stronger shrinkage
    scores = models[best].predict_proba(embeddings[test])
    macro, per_class = _macro_auc(y[test], scores)
    low, high = _bootstrap(y[test], scores, n_boot, seed)
    result = ProbeResult(
        encoder=encoder, c=float(best), val_macro_auc=by_c[best], test_macro_auc=macro, test_ci_low=low,
        test_ci_high=high, test_auc=per_class, n_train=int(train.sum()), n_val=int(val.sum()),
        n_test=int(test.sum()), positives_test={n: int(y[test, j].sum()) for j, n in enumerate(SUPERCLASSES)},
        val_auc_by_c={f"{c:g}": v for c, v in by_c.items()}, n_boot=n_boot,
    )
    log.info("probe.done", encoder=encoder, c=best, val_macro_auc=round(by_c[best], 4), test_macro_auc=round(macro, 4))
    return result


def probe_checkpoint(
    data_root: str | Path,
    checkpoint: str | Path | None,
    *,
    encoder: str = "dual_attention",
    seed: int = 72,
    sampling_rate: int = 100,
    baseline: bool = True,
    n_boot: int = 1000,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Probe a pretraining checkpoint and (``baseline``) the random encoder it started from.

    Without a checkpoint only the random encoder (``encoder``, ``seed``) is probed. The flattened
    input beat is always probed too (``input``), as the reference of a linear map without encoder.
    Returns a JSON-ready dict: ``pretrained``, ``random`` and ``input`` (:class:`ProbeResult`), the
    data counts, and the seconds it took.
    """
    started = time.perf_counter()
    ds = PTBXL(data_root, sampling_rate)
    inputs, labels = probe_data(ds, cache_dir=cache_dir, progress=progress)
    out: dict[str, Any] = {"data_root": str(data_root), "sampling_rate": sampling_rate, "n_records": len(labels),
                           "checkpoint": str(checkpoint) if checkpoint else None}
    if checkpoint is not None:
        net, config = pretrained_encoder(checkpoint)
        encoder, seed = config.get("encoder", encoder), int(config.get("seed", seed))
        out["pretrained"] = fit_probe(embed(net, inputs.x), labels, encoder=f"{encoder} pretrained",
                                      n_boot=n_boot).to_json()
    if baseline or checkpoint is None:
        net = random_encoder(encoder, seed)
        out["random"] = fit_probe(embed(net, inputs.x), labels, encoder=f"{encoder} random init (seed {seed})",
                                  n_boot=n_boot).to_json()
    # The same probe on the flattened input beat itself: what a linear map of the input already gets.
    flat = inputs.x.reshape(len(inputs.x), -1).astype(np.float64)
    out["input"] = fit_probe(flat, labels, encoder="flattened input beat (no encoder)", n_boot=n_boot).to_json()
    out.update(encoder=encoder, seed=seed, seconds=round(time.perf_counter() - started, 1))
    return out
