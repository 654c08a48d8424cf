"""ptbxl-extra: PTB-XL records that a third party band-passed (0.5–40 Hz), z-scored per lead and
decimated to 100 Hz, stored as one array file. Labels and reports are PTB-XL's, joined on ``ecg_id``.

The arrays are per-lead z-scores, not millivolts. They still give the model the same input as the
raw record: the front end filters (linear) and z-scores each lead of the median beat, so a
per-lead scale drops out, and the quality gate's millivolt thresholds (flat line 0.01 mV over 2 s,
lead off beyond 15 mV) sit far from a unit-variance lead. On the 158 records that are also in
``ptbxl/records100`` the z-scored arrays, read as if in mV, gave fit inputs for all 158 and a
median per-lead correlation of 0.998 (10th percentile 0.994) with the raw records' inputs
(docs/training/pretraining.md). So :meth:`PTBXLExtra.ecg` hands the arrays over unscaled, with
``units="mV"`` and ``metadata["zscored"] = True``; never use their amplitudes as millivolts.

>>> extra = PTBXLExtra("../shared/data/ecg/ptbxl-extra")        # doctest: +SKIP
>>> inputs = extra_inputs(extra, extra.ids[:8], default_card())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.training.data import dataset

__all__ = ["PTBXLExtra", "extra_inputs", "SIGNALS_FILE", "PTBXL_LEADS"]

log = get_logger(__name__)

SIGNALS_FILE = "signals_100hz_zscored.npz"
PTBXL_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


class PTBXLExtra:
    """The records of one ``signals_100hz_zscored.npz`` (``signals`` (n, 12, T) in PTB-XL lead
    order, ``ecg_id`` (n,)), at ``fs_hz`` (100)."""

    def __init__(self, root: str | Path, fs_hz: float = 100.0):
        self.root = Path(root)
        self.path = self.root / SIGNALS_FILE
        if not self.path.is_file():
            raise FileNotFoundError(f"no {SIGNALS_FILE} in {self.root}")
        with np.load(self.path, allow_pickle=False) as data:
            self.signals = data["signals"]
            ids = data["ecg_id"].astype(np.int64)
        if self.signals.ndim != 3 or self.signals.shape[:2] != (len(ids), len(PTBXL_LEADS)):
            raise ValueError(f"{self.path}: signals {self.signals.shape} do not match {len(ids)} ids x 12 leads")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{self.path}: repeated ecg_id")
        self.fs_hz = float(fs_hz)
        self._row = {int(i): r for r, i in enumerate(ids)}
        self.ids = np.sort(ids)
        log.info("ptbxl_extra.loaded", root=str(self.root), records=len(ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, ecg_id: object) -> bool:
        return int(ecg_id) in self._row  # type: ignore[call-overload]

    def ecg(self, ecg_id: int) -> ECG:
        """The record as an :class:`ECG` whose samples are the stored z-scores (see the module docstring)."""
        samples = self.signals[self._row[int(ecg_id)]].astype(np.float32)
        return ECG(samples, self.fs_hz, PTBXL_LEADS, source=f"ptbxl-extra:{int(ecg_id)}",
                   metadata={"zscored": True})

    def fingerprint(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.signals).tobytes())
        digest.update(np.asarray(sorted(self._row.items())).tobytes())
        return digest.hexdigest()


def _prepare(extra: PTBXLExtra, ecg_id: int, card: ModelCard) -> tuple:
    from hfrisk.model.frontend.preprocessing import cleaned_beat, prepare

    try:
        item = prepare(extra.ecg(ecg_id), card)
        target = cleaned_beat(item, card)
    except Exception as exc:  # noqa: BLE001 - one bad record must not end the pass
        return None, f"{type(exc).__name__}: {exc}"
    q = item.quality
    return item.x, target, item.lead_mask, q.score, q.fit_to_score, ";".join(q.reasons)


def extra_inputs(
    extra: PTBXLExtra,
    ids: Sequence[int],
    card: ModelCard,
    *,
    cache_dir: str | Path | None = None,
    keep: dataset.Keep = "all",
    progress: bool = False,
) -> dataset.ModelInputs:
    """Model inputs of ``ids`` (rows in that order), cached like :func:`~hfrisk.training.data.dataset.model_inputs`:
    one ``.npz`` keyed by the preprocessing code, the card, the array file's content and the ids."""
    from tqdm import tqdm

    ids = [int(i) for i in ids]
    digest = hashlib.sha256()
    for part in (dataset._pipeline_fingerprint(), card.model_dump_json(), extra.fingerprint(), repr(ids)):
        digest.update(part.encode())
    key = digest.hexdigest()
    path = Path(cache_dir if cache_dir is not None else dataset.default_cache_dir()) / f"extra_inputs-{key[:20]}.npz"
    inputs = dataset._load(path, key)
    if inputs is None:
        n, n_leads, length = len(ids), len(card.input.leads), card.input.length_samples
        x = np.zeros((n, n_leads, length), np.float32)
        target = np.zeros_like(x)
        lead_mask = np.zeros((n, n_leads), bool)
        score, fit, failed = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        reasons = [""] * n
        for row, ecg_id in enumerate(tqdm(ids, desc="preprocessing ptbxl-extra", unit="rec", disable=not progress)):
            result = _prepare(extra, ecg_id, card)
            if result[0] is None:
                failed[row], reasons[row] = True, result[1]
                log.warning("ptbxl_extra.record_failed", ecg_id=ecg_id, error=result[1])
                continue
            x[row], target[row], lead_mask[row], score[row], fit[row], reasons[row] = result
        inputs = dataset.ModelInputs(np.asarray(ids, np.int64), x, target, lead_mask, score, fit, failed,
                                     np.asarray(reasons, dtype=str))
        dataset._save(path, key, inputs)
        log.info("ptbxl_extra.cached", path=str(path), records=len(inputs))
    kept = inputs.select(keep)
    log.info("ptbxl_extra.inputs", **inputs.counts(), keep=keep, kept=len(kept))
    return kept
