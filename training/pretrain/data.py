"""Pretraining data: PTB-XL train and validation splits as tensors, each ECG with its report-text vector.

The records come from one or several sources, one per ``ecg_id``, minus the excluded ones
(:mod:`~hfrisk.training.pretrain.corpus`). ECG inputs come from the shared preprocessing cache
(:mod:`~hfrisk.training.data.dataset`, one file per source over the records both splits could
use, so changing an exclusion does not preprocess again), text vectors from the embedding cache
(:mod:`~hfrisk.training.pretrain.text_embeddings`); records without text are dropped with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.training.data.dataset import ModelInputs, ptbxl_inputs
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.pretrain import corpus
from hfrisk.training.pretrain.config import PretrainConfig

__all__ = ["PretrainSplit", "PretrainData", "load_pretraining_data"]

log = get_logger(__name__)


@dataclass(frozen=True)
class PretrainSplit:
    """One split as tensors: ``x``/``target`` (n, leads, T), ``lead_mask`` (n, leads), ``text`` (n, d)."""

    ids: np.ndarray
    x: torch.Tensor
    target: torch.Tensor
    lead_mask: torch.Tensor
    text: torch.Tensor
    # The source each row was read from ("500", "100" or "extra").
    source: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device) -> PretrainSplit:
        return PretrainSplit(self.ids, self.x.to(device), self.target.to(device), self.lead_mask.to(device),
                             self.text.to(device), self.source)


@dataclass(frozen=True)
class PretrainData:
    """Both splits, the text encoder's name and what the corpus held (counts per source, exclusions)."""

    train: PretrainSplit
    validation: PretrainSplit
    text_encoder: str
    corpus: dict[str, Any]


def _limited(ids: np.ndarray, limit: int | None) -> np.ndarray:
    return ids if limit is None else ids[:limit]


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


def _split(inputs: ModelInputs, source: np.ndarray, texts: dict[int, np.ndarray], name: str) -> PretrainSplit:
    has_text = np.array([int(i) in texts for i in inputs.ids], dtype=bool)
    if not has_text.all():
        log.warning("pretrain.records_without_text", split=name, n=int((~has_text).sum()))
        inputs, source = inputs.subset(has_text), source[has_text]
    if len(inputs) == 0:
        raise ValueError(f"the {name} split has no usable record (check folds, exclusions, limit_records and data_root)")
    text = np.stack([texts[int(i)] for i in inputs.ids]).astype(np.float32)
    return PretrainSplit(
        inputs.ids,
        torch.from_numpy(np.ascontiguousarray(inputs.x)),
        torch.from_numpy(np.ascontiguousarray(inputs.target)),
        torch.from_numpy(inputs.lead_mask.astype(bool)),
        torch.from_numpy(text),
        np.asarray(source, dtype=str),
    )


def _exclusion(config: PretrainConfig, database) -> set[int]:
    listed = corpus.read_id_file(config.exclude_ids) if config.exclude_ids is not None else set()
    patients = corpus.read_id_file(config.exclude_patients, "patient_id") if config.exclude_patients is not None else set()
    return corpus.excluded_ids(database, ecg_ids=listed, patient_ids=patients, folds=config.exclude_folds,
                               same_patient=config.exclude_same_patient)


def _concat(parts: list[ModelInputs]) -> ModelInputs:
    return ModelInputs(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(ModelInputs)})


def load_pretraining_data(config: PretrainConfig, card: ModelCard, device: str = "cpu") -> PretrainData:
    """Train and validation splits (ECG inputs, targets, text vectors), the text encoder's name and
    the corpus counts.

    ``device`` is where the text model runs on a cache miss.
    """
    from hfrisk.training.data.dataset import ptbxl_inputs
    from hfrisk.training.data.ptbxl_extra import PTBXLExtra, extra_inputs

    order = tuple(config.sources or (str(config.sampling_rate),))
    releases = {s: PTBXL(config.data_root, int(s)) for s in order if s != "extra"}
    extra = None
    if "extra" in order:
        extra = PTBXLExtra(config.extra_root or config.data_root.parent / "ptbxl-extra")
    catalogue = PTBXL.catalogue(config.data_root)
    available = {s: r.ids for s, r in releases.items()}
    if extra is not None:
        known = np.isin(extra.ids, catalogue.ids)
        if not known.all():
            log.warning("pretrain.extra_without_row", n=int((~known).sum()))
        available["extra"] = extra.ids[known]
    chosen = corpus.choose_sources(available, order)
    view = catalogue.subset(chosen)
    if config.validated_only:
        view = view.validated()
    split_ids = {
        "train": _limited(view.folds(config.train_folds).ids, config.limit_records),
        "validation": _limited(view.folds(config.val_folds).ids, config.limit_records),
    }

    # Inputs per source for every record either split could use, before exclusions (stable caches).
    wanted = np.union1d(split_ids["train"], split_ids["validation"])
    cache = config.cache_dir / "model_inputs" if config.cache_dir is not None else None
    parts, part_source = [], []
    for source in order:
        ids = [int(i) for i in wanted if chosen[int(i)] == source]
        if not ids:
            continue
        if source == "extra":
            part = extra_inputs(extra, ids, card, cache_dir=cache, keep="all", progress=config.progress)
        else:
            part = ptbxl_inputs(releases[source].subset(ids), card, cache_dir=cache, keep="all",
                                workers=config.workers, progress=config.progress)
        kept = part.select(config.keep)
        log.info("pretrain.source", source=source, **part.counts(), usable=int((~part.failed & part.lead_mask.any(1)).sum()),
                 keep=config.keep, kept=len(kept))
        parts.append(kept)
        part_source.append(np.full(len(kept), source))
    inputs, source_of = _concat(parts), np.concatenate(part_source)
    row_order = np.argsort(inputs.ids, kind="stable")
    inputs, source_of = inputs.subset(row_order), source_of[row_order]

    excluded = _exclusion(config, catalogue.database)
    dropped = np.isin(inputs.ids, sorted(excluded))
    by_split = {}
    for name, ids in split_ids.items():
        in_split = np.isin(inputs.ids, ids)
        by_split[name] = int((in_split & dropped).sum())
        split_ids[name] = in_split & ~dropped
    log.info("pretrain.excluded", ids_listed_or_implied=len(excluded), train=by_split["train"],
             validation=by_split["validation"])

    all_ids = inputs.ids[split_ids["train"] | split_ids["validation"]].astype(np.int64)
    texts, encoder_name = _text_embeddings(catalogue, all_ids, config, device)
    train = _split(inputs.subset(split_ids["train"]), source_of[split_ids["train"]], texts, "train")
    val = _split(inputs.subset(split_ids["validation"]), source_of[split_ids["validation"]], texts, "validation")
    summary = {
        "sources": list(order),
        "train_by_source": {s: int((train.source == s).sum()) for s in order},
        "val_by_source": {s: int((val.source == s).sum()) for s in order},
        "excluded_train": by_split["train"],
        "excluded_val": by_split["validation"],
        "excluded_ids_sha256": corpus.ids_digest(excluded) if excluded else "",
    }
    log.info("pretrain.corpus", **summary)
    return PretrainData(train, val, encoder_name, summary)
