"""Model inputs for a set of records, computed once with the shared preprocessing and cached on disk.

Every record goes through :func:`hfrisk.model.frontend.preprocessing.prepare`, the code streaming
and screening run; the result is one ``.npz`` under ``<state_dir>/model_inputs`` keyed by the card,
the record list and a fingerprint of the preprocessing code, so nothing stale is ever read.
``keep`` chooses ``"all"`` rows (aligned with the caller's), ``"usable"`` or ``"fit"`` ones
(docs/training/data.md).

>>> inputs = model_inputs(["tests/data/ecg/ptbxl/records100/00000/00001_lr"], default_card(),
...                       cache_dir="/tmp/inputs", keep="fit")     # doctest: +SKIP
>>> inputs.x.shape, inputs.target.shape, inputs.lead_mask.shape    # doctest: +SKIP
((1, 12, 608), (1, 12, 608), (1, 12))
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.model.frontend import beats, filters, preprocessing, quality
from hfrisk.model.contract import ecg, leads
from hfrisk.model.readers import dispatch as readers, wfdb_io
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.frontend.preprocessing import cleaned_beat, prepare
from hfrisk.model.readers.dispatch import read_ecg

from hfrisk.training.data.ptbxl import PTBXL

__all__ = ["ModelInputs", "model_inputs", "ptbxl_inputs", "default_cache_dir", "Keep"]

log = get_logger(__name__)

Keep = Literal["all", "usable", "fit"]
# Bump when the layout of the cached arrays changes.
_CACHE_FORMAT = 1
# Modules whose code decides the arrays; their source is part of the cache key.
_PIPELINE_MODULES = (preprocessing, beats, filters, quality, leads, readers, wfdb_io, ecg)


@dataclass(frozen=True)
class ModelInputs:
    """Preprocessed records, one row each.

    ``ids`` (N,): record ids (ints, or strings such as paths). ``x`` (N, leads, T) float32: the
    network input. ``target`` (N, leads, T) float32: the cleaned beat to reconstruct.
    ``lead_mask`` (N, leads) bool: leads that carry signal (others are exactly 0 in both arrays).
    ``quality_score`` (N,) float32, ``fit_to_score`` (N,) bool, ``failed`` (N,) bool and
    ``reasons`` (N,) str: the quality reasons (``;``-joined) or, for failed rows, the error.
    """

    ids: np.ndarray
    x: np.ndarray
    target: np.ndarray
    lead_mask: np.ndarray
    quality_score: np.ndarray
    fit_to_score: np.ndarray
    failed: np.ndarray
    reasons: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | Sequence[int]) -> ModelInputs:
        """The rows at ``index`` (positions or a boolean mask)."""
        index = np.asarray(index)
        return ModelInputs(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def select(self, keep: Keep) -> ModelInputs:
        """The rows that ``keep`` allows (see the module docstring)."""
        if keep == "all":
            return self
        if keep == "usable":
            return self.subset(~self.failed & self.lead_mask.any(axis=1))
        if keep == "fit":
            return self.subset(~self.failed & self.fit_to_score)
        raise ValueError(f"keep must be 'all', 'usable' or 'fit', got {keep!r}")

    def positions(self, ids: Sequence[Hashable]) -> np.ndarray:
        """Row of each id in ``ids``; ``KeyError`` for an id that has no row."""
        where = {_id_key(i): row for row, i in enumerate(self.ids)}
        missing = [i for i in ids if _id_key(i) not in where]
        if missing:
            raise KeyError(f"ids without a row: {missing[:10]}")
        return np.array([where[_id_key(i)] for i in ids], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        return {
            "records": len(self),
            "failed": int(self.failed.sum()),
            "unfit": int((~self.failed & ~self.fit_to_score).sum()),
            "fit": int((~self.failed & self.fit_to_score).sum()),
        }


def _id_key(value: Hashable) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def default_cache_dir() -> Path:
    """``<state_dir>/model_inputs`` (``HFRISK_PATHS__STATE_DIR``, default ``~/.cache/hfrisk``)."""
    from hfrisk.core.config import get_settings

    return get_settings().paths.state_dir / "model_inputs"


@lru_cache(maxsize=1)
def _pipeline_fingerprint() -> str:
    """Hash of the preprocessing source and of the numerical libraries it calls."""
    import neurokit2
    import scipy

    digest = hashlib.sha256(f"format={_CACHE_FORMAT};nk={neurokit2.__version__};scipy={scipy.__version__}".encode())
    for module in _PIPELINE_MODULES:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _cache_key(card: ModelCard, ids: Sequence[Hashable], paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(_pipeline_fingerprint().encode())
    # Where preprocessing runs does not change what it makes; leaving that declaration out keeps the
    # key of every card written before it existed.
    digest.update(card.model_dump_json(exclude={"serving"}).encode())
    # Absolute paths: the same relative path from another working directory is another record.
    digest.update(json.dumps([[_id_key(i), os.path.abspath(p)] for i, p in zip(ids, paths)]).encode())
    return digest.hexdigest()


def _as_id_array(ids: Sequence[Hashable]) -> np.ndarray:
    # Integer ids (ecg_id, eid) stay integers; anything else is stored as text (npz needs no pickle).
    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return np.asarray([_id_key(i) for i in ids], dtype=str)


def _prepare_one(path: str, card: ModelCard) -> tuple:
    """``(x, target, lead_mask, score, fit, reasons)`` of one record, or ``(None, error)``."""
    try:
        item = prepare(read_ecg(path), card)
        target = cleaned_beat(item, card)
    except Exception as exc:  # noqa: BLE001 - one bad record must not end a 20-minute pass
        return None, f"{type(exc).__name__}: {exc}"
    q = item.quality
    return item.x, target, item.lead_mask, q.score, q.fit_to_score, ";".join(q.reasons)


def _compute(
    ids: Sequence[Hashable], paths: Sequence[str], card: ModelCard, workers: int, progress: bool
) -> ModelInputs:
    from tqdm import tqdm

    n, n_leads, length = len(paths), len(card.input.leads), card.input.length_samples
    x = np.zeros((n, n_leads, length), np.float32)
    target = np.zeros_like(x)
    lead_mask = np.zeros((n, n_leads), bool)
    score = np.zeros(n, np.float32)
    fit = np.zeros(n, bool)
    failed = np.zeros(n, bool)
    reasons = [""] * n
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_prepare_one, paths, [card] * n, chunksize=16)
    else:
        pool, results = None, map(_prepare_one, paths, [card] * n)
    try:
        for row, result in enumerate(tqdm(results, total=n, desc="preprocessing", unit="rec", disable=not progress)):
            if result[0] is None:
                failed[row], reasons[row] = True, result[1]
                log.warning("dataset.record_failed", id=_id_key(ids[row]), path=paths[row], error=result[1])
                continue
            x[row], target[row], lead_mask[row], score[row], fit[row], reasons[row] = result
    finally:
        if pool is not None:
            pool.shutdown()
    if n and failed.all():
        raise RuntimeError(f"all {n} records failed preprocessing; first error: {reasons[0]}")
    return ModelInputs(_as_id_array(ids), x, target, lead_mask, score, fit, failed, np.asarray(reasons, dtype=str))


def _load(path: Path, key: str) -> ModelInputs | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key:  # a file-name prefix clash: recompute rather than trust it
            return None
        return ModelInputs(**{f.name: data[f.name] for f in fields(ModelInputs)})


def _save(path: Path, key: str, inputs: ModelInputs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a concurrent reader, or a crash, never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, key=np.array(key), **{f.name: getattr(inputs, f.name) for f in fields(inputs)})
    os.replace(tmp, path)


def model_inputs(
    records: Sequence[str | Path],
    card: ModelCard,
    *,
    ids: Sequence[Hashable] | None = None,
    cache_dir: str | Path | None = None,
    keep: Keep = "all",
    use_cache: bool = True,
    workers: int = 1,
    progress: bool = False,
) -> ModelInputs:
    """Preprocess ``records`` (anything :func:`~hfrisk.model.readers.dispatch.read_ecg` reads) under ``card``.

    Args:
        ids: one id per record (default: the paths as given).
        cache_dir: where the ``.npz`` lives (default :func:`default_cache_dir`).
        keep: ``"all"``, ``"usable"`` or ``"fit"`` (module docstring); the cache always holds all.
        use_cache: read and write the cache.
        workers: processes for a cache miss (each record is independent).
        progress: show a progress bar on a cache miss.
    """
    paths = [str(p) for p in records]
    ids = list(ids) if ids is not None else paths
    if len(ids) != len(paths):
        raise ValueError(f"{len(ids)} ids for {len(paths)} records")
    key = _cache_key(card, ids, paths)
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"model_inputs-{key[:20]}.npz"
    inputs = _load(path, key) if use_cache else None
    if inputs is not None:
        log.info("dataset.cache_hit", path=str(path), records=len(inputs))
    else:
        inputs = _compute(ids, paths, card, max(1, int(workers)), progress)
        if use_cache:
            _save(path, key, inputs)
            log.info("dataset.cached", path=str(path), records=len(inputs))
    kept = inputs.select(keep)
    log.info("dataset.inputs", **inputs.counts(), keep=keep, kept=len(kept))
    return kept


def ptbxl_inputs(ds: PTBXL, card: ModelCard, **kwargs) -> ModelInputs:
    """:func:`model_inputs` of every record of a PTB-XL view, with ``ecg_id`` as the id."""
    return model_inputs([ds.record_path(i) for i in ds.ids], card, ids=[int(i) for i in ds.ids], **kwargs)
