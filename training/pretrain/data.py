"""Pretraining data: PTB-XL train and validation splits as tensors, each ECG with its report-text vector.

ECG inputs come from the shared preprocessing cache (:mod:`~hfrisk.training.data.dataset`), text
vectors from the embedding cache (:mod:`~hfrisk.training.pretrain.text_embeddings`); records
without text are dropped with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.training.data.dataset import ModelInputs, ptbxl_inputs
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.pretrain.config import PretrainConfig

__all__ = ["PretrainSplit", "load_pretraining_data"]

log = get_logger(__name__)


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


def _limited(view: PTBXL, limit: int | None) -> PTBXL:
    return view if limit is None or len(view) <= limit else view.subset(view.ids[:limit])


def _text_embeddings(ds: PTBXL, ids: np.ndarray, config: PretrainConfig, device: str) -> tuple[dict[int, np.ndarray], str]:
    """``ecg_id -> text vector`` for ``ids`` (records without text are left out) and the encoder name."""
    from hfrisk.training.pretrain.text_embeddings import raw_text_embeddings, record_text_embeddings
    from hfrisk.training.pretrain.text_encoder import TextEncoder, resolve_default_encoder

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
