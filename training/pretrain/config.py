"""Every pretraining setting in one typed, frozen object, and the rule for which may change on resume.

Defaults are the paper's (§3.1) unless a comment says otherwise; why InfoNCE rather than the paper
code's cosine loss is the default is told in ``docs/training/pretraining.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hfrisk.training.data.ptbxl import SPLIT_FOLDS

__all__ = ["PretrainConfig", "RUNTIME_FIELDS"]

# Settings that may change between a run and its resumption: they do not change the numbers.
RUNTIME_FIELDS = frozenset({"device", "workers", "cache_dir", "progress"})


class PretrainConfig(BaseModel):
    """Every pretraining setting; defaults are the paper's (§3.1) unless a comment says otherwise.

    **Alignment loss.** ``loss="infonce"`` (default) is CLIP's symmetric cross-entropy at
    ``temperature`` (learnable with ``learn_temperature``); ``loss="cosine"`` is the released paper
    code's ``CosineEmbeddingLoss``, which collapsed on PTB-XL (docs/training/pretraining.md).

    **Data.** PTB-XL at ``sampling_rate`` from ``data_root``, or with ``sources`` several sources
    merged, one record per ``ecg_id`` (``"500"`` > ``"100"`` > ``"extra"``, the ptbxl-extra folder
    ``extra_root``, default ``data_root/../ptbxl-extra``; :mod:`~hfrisk.training.pretrain.corpus`).
    ``exclude_ids`` / ``exclude_patients`` (files of ``ecg_id`` / ``patient_id``) and
    ``exclude_folds`` keep an evaluation's records out of train and validation, with every other
    record of their patients unless ``exclude_same_patient`` is off. ``validated_only`` keeps reports
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
    # None: the one release at ``sampling_rate`` (as before sources existed).
    sources: tuple[Literal["500", "100", "extra"], ...] | None = None
    extra_root: Path | None = None
    exclude_ids: Path | None = None
    exclude_patients: Path | None = None
    exclude_folds: tuple[int, ...] = ()
    exclude_same_patient: bool = True
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
        if self.sources is not None and (not self.sources or len(set(self.sources)) != len(self.sources)):
            raise ValueError(f"sources must name each of 500, 100, extra at most once, got {self.sources}")
        if set(self.val_folds) <= set(self.exclude_folds):
            raise ValueError(f"exclude_folds {self.exclude_folds} removes every validation fold {self.val_folds}")
        if not self.val_folds:
            raise ValueError("val_folds is empty: pretraining selects its checkpoint on validation")
        return self

    @classmethod
    def from_run_config(cls, saved: Mapping[str, Any], **runtime: Any) -> PretrainConfig:
        """The configuration a run folder's ``config.json`` holds, with the :data:`RUNTIME_FIELDS` of ``runtime``.

        ``config.json`` is the configuration plus the run's ``provenance``, which is no setting.
        """
        unknown = set(runtime) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"only {sorted(RUNTIME_FIELDS)} may change on resume, not {sorted(unknown)}")
        settings = {k: v for k, v in saved.items() if k != "provenance"}
        return cls.model_validate(settings | runtime)

    def resume_differences(self, saved: Mapping[str, Any]) -> list[str]:
        """Names of the settings, runtime ones aside, in which this configuration differs from ``saved``
        (a checkpoint's ``config``, JSON form); a run resumes only where there is none."""
        now = self.model_dump(mode="json")
        # A setting newer than the saved run counts as unchanged when it is at its default.
        defaults = {k: f.default for k, f in type(self).model_fields.items() if not f.is_required()}
        old = {k: saved.get(k, _json(defaults.get(k))) for k in set(saved) | set(now)}
        return sorted(k for k in old if k not in RUNTIME_FIELDS and old[k] != now.get(k))


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
