"""From a fine-tuned checkpoint to a servable Triton model repository, with the card saying where it came from.

:func:`export_model` loads the checkpoint, writes the card's ``training`` section, exports ONNX,
checks ONNX Runtime against PyTorch on real records (``PARITY_ATOL``) and refuses to go on
otherwise, then writes the repository; the steps: docs/training/finetuning.md.

With a reference cohort (``reference_cohort=``, or :func:`attach_risk_scale` on a model already
exported) the exported model scores that cohort and the card gets its ``risk_scale``: the
cohort's log-risk quantiles (percentiles) and Breslow's baseline survival at a horizon (absolute
risk), computed by :func:`risk_scale_from_cohort`; docs/score-scale.md.

>>> export_model("runs/ft/best.pt", "triton_models", version=2)  # doctest: +SKIP
>>> attach_risk_scale("triton_models", load_cohort("runs/cohort/cohort.csv", "/data/ptbxl"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard
from hfrisk.model.network.onnx_export import (
    PARITY_ATOL,
    ParityReport,
    export_onnx,
    onnx_parity,
    recording_inputs,
    store_weights_float16,
)

import hfrisk
from hfrisk.core.logs import get_logger

from hfrisk.model.contract.risk_scale import (
    DAYS_PER_YEAR,
    DEFAULT_PERCENTILE_GRID,
    AbsoluteRisk,
    ReferenceDistribution,
    RiskScale,
)
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.finetune.checkpoints import load_finetuned
from hfrisk.training.metrics.breslow import BreslowBaseline

__all__ = ["ExportResult", "export_model", "training_section", "risk_scale_from_cohort", "attach_risk_scale",
           "RiskScaleResult", "DEFAULT_HORIZON_DAYS", "top_resolution"]

log = get_logger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the model went, the card it carries and how closely ONNX matched PyTorch."""

    model_dir: Path
    onnx_path: Path
    card: ModelCard
    parity: ParityReport


# Largest output change allowed from storing the weights as float16 (``weights="float16"``): log-risk
# moves ~2e-3 on the bundled model (a hazard ratio off by 0.2 %); more means a weight float16 cannot hold.
FLOAT16_ATOL = 1e-2
WEIGHT_DTYPES = ("float32", "float16")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s,;]+")


def training_section(checkpoint: Path, meta: dict[str, Any], evaluation: dict | None = None) -> dict[str, Any]:
    """The card's ``training`` entry for ``checkpoint`` (its metadata as :func:`load_finetuned` returns it)."""
    extra = meta.get("extra", {})
    provenance = dict(extra.get("provenance", {}))
    data_keys = ("cohort", "time_unit", "n_train", "n_train_events", "n_val", "n_val_events", "run")
    # File names, not paths: the card ships with the model, and a path says where someone's
    # scratch folder was, not what was trained on (the SHA-256 identifies the checkpoint).
    for key in ("cohort", "init"):
        if provenance.get(key):
            provenance[key] = _ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name, str(provenance[key]))
    section: dict[str, Any] = {
        "task": "incident heart failure, Cox proportional hazards (log-hazard, higher = riskier)",
        "data": {k: provenance[k] for k in data_keys if k in provenance},
        "run": {
            "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": _sha256(checkpoint),
            "epoch": meta.get("epoch"),
            "val_harrell_c": extra.get("val_harrell_c"),
            "selection": _selection(meta.get("config", {})),
            "encoder": provenance.get("encoder"),
            "init": provenance.get("init"),
            "init_kind": provenance.get("init_kind"),
            "config": meta.get("config", {}),
        },
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": {"hfrisk": hfrisk.__version__, "torch": torch.__version__},
    }
    for key in ("head_init", "ridge_val_harrell_c", "n_components", "penalty"):
        if key in provenance:
            section["run"][key] = provenance[key]
    sweep = Path(checkpoint).parent / "lr_sweep.json"
    if sweep.is_file():
        # The checkpoint is the one a learning-rate sweep kept (training/finetune/loop.py).
        section["run"]["lr_sweep"] = json.loads(sweep.read_text())
    if evaluation is not None:
        section["evaluation"] = evaluation
    return section


def _selection(config: dict[str, Any]) -> str:
    if config.get("monitor") == "val_cox":
        return "epoch with the lowest validation Cox loss (negative partial log-likelihood)"
    return "epoch with the best validation Harrell C"


def _parity_inputs(parity: np.ndarray | Sequence[str | Path] | None, meta: dict, card: ModelCard) -> np.ndarray:
    if isinstance(parity, np.ndarray):
        return parity.astype(np.float32)
    records = list(parity) if parity is not None else meta.get("extra", {}).get("provenance", {}).get("parity_records", [])
    records = [Path(r) for r in records if Path(f"{r}.hea").exists() or Path(r).exists()]
    if not records:
        raise ValueError(
            "no real records for the parity check: pass parity_records (WFDB records), or export a "
            "checkpoint whose validation records are still on disk"
        )
    return recording_inputs(records, card)


def export_model(
    checkpoint: str | Path,
    repo_dir: str | Path,
    version: int = 1,
    card: ModelCard | None = None,
    *,
    model_name: str = "hfrisk",
    parity_records: np.ndarray | Sequence[str | Path] | None = None,
    evaluation: dict | None = None,
    atol: float = PARITY_ATOL,
    weights: str = "float32",
    reference_cohort: Cohort | None = None,
    horizon_days: float | None = None,
    **serving_options,
) -> ExportResult:
    """Export the fine-tuned ``checkpoint`` to ``repo_dir/model_name/version`` (steps in the module docstring).

    ``card`` defaults to the card the checkpoint was trained with; its ``version`` becomes
    ``str(version)`` and its ``training`` section is replaced. ``serving_options`` go to
    :class:`~hfrisk.serving.model_repository.ServingOptions` (``max_batch_size=32`` …).
    ``weights="float16"`` stores the weights at half the size (:func:`store_weights_float16`) once
    the float32 graph has passed the parity check; the card's ``training.weights`` records how far
    that moved the outputs from PyTorch (at most :data:`FLOAT16_ATOL`).
    ``reference_cohort``: the cohort whose log-risks and outcomes give the card's ``risk_scale``
    (:func:`attach_risk_scale`, at ``horizon_days``, default :data:`DEFAULT_HORIZON_DAYS`).
    Raises :class:`~hfrisk.model.network.onnx_export.ParityError` when ONNX Runtime and PyTorch disagree.
    """
    if weights not in WEIGHT_DTYPES:
        raise ValueError(f"weights must be one of {WEIGHT_DTYPES}, not {weights!r}")
    from hfrisk.serving.model_repository import write_model_repository

    checkpoint = Path(checkpoint)
    net, meta = load_finetuned(checkpoint, "cpu")
    trained_card = ModelCard.model_validate(meta["card"])
    base = card or trained_card
    if (len(base.input.leads), base.input.length_samples) != (len(trained_card.input.leads), trained_card.input.length_samples):
        raise ValueError("the card's input differs from the one the checkpoint was trained with")
    inputs = _parity_inputs(parity_records, meta, base)
    with tempfile.TemporaryDirectory(prefix="hfrisk-export-") as tmp:
        onnx_path = export_onnx(net, Path(tmp) / "model.onnx", base, save_card=False)
        report = onnx_parity(onnx_path, net, inputs, atol=atol).check()
        training = training_section(checkpoint, meta, evaluation)
        training["parity"] = {"max_abs_diff": report.max_abs_diff, "atol": atol, "n_records": report.batch_size}
        if weights == "float16":
            store_weights_float16(onnx_path)
            rounded = onnx_parity(onnx_path, net, inputs, atol=FLOAT16_ATOL).check()
            training["weights"] = {"dtype": "float16", "max_abs_diff": rounded.max_abs_diff, "atol": FLOAT16_ATOL,
                                   "n_records": rounded.batch_size}
        final = base.model_copy(update={"version": str(version), "training": training})
        model_dir = write_model_repository(onnx_path, final, repo_dir, model_name=model_name, version=version,
                                           **serving_options)
    if reference_cohort is not None:
        final = attach_risk_scale(model_dir, reference_cohort, horizon_days=horizon_days or DEFAULT_HORIZON_DAYS,
                                  model_name=model_name).card
    log.info("export.done", model_dir=str(model_dir), version=version, parity_worst=report.worst)
    return ExportResult(model_dir, model_dir / str(version) / "model.onnx", final, report)


# Five years: the horizon heart-failure risk scores are usually stated at (PCP-HF, the Framingham
# HF score use 10, MUSIC 3-5); inside the 3-7-year follow-up of hfrisk's simulated cohorts.
DEFAULT_HORIZON_DAYS = 5 * DAYS_PER_YEAR


def risk_scale_from_cohort(
    log_risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    cohort: str,
    percentiles: Sequence[float] = DEFAULT_PERCENTILE_GRID,
) -> RiskScale:
    """The card's ``risk_scale`` from a cohort's log-risks (as the served model outputs them) and outcomes.

    The reference quantiles are Hazen's (``np.percentile(method="hazen")``), under which a sorted
    value sits at its mid-rank percentile; the baseline is Breslow's :math:`S_0(h) = \exp(-\hat
    H_0(h))` for the uncentred log-risk (:class:`~hfrisk.training.metrics.BreslowBaseline`). The
    horizon must lie inside the follow-up: someone must still be at risk there.
    """
    log_risk = np.asarray(log_risk, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    if not (len(log_risk) == len(time) == len(event)) or len(log_risk) == 0:
        raise ValueError("log_risk, time and event need one entry per subject")
    if not np.all(np.isfinite(log_risk)):
        raise ValueError("log_risk must be finite")
    if not np.any(time >= horizon_days):
        raise ValueError(f"no subject is followed to the horizon ({horizon_days:g} days; longest {time.max():g}): "
                         "the baseline there would be an extrapolation")
    # Quantiles are kept unrounded: a served score equal to a tied reference value must land on the
    # tie (its mid-rank), not just above it.
    grid = np.asarray(percentiles, dtype=np.float64)
    quantiles = np.percentile(log_risk, grid, method="hazen")
    baseline = BreslowBaseline().fit(log_risk, event, time)
    s0 = float(np.exp(-baseline.cumulative_hazard([horizon_days])[0]))
    n, n_events = len(log_risk), int(event.sum())
    return RiskScale(
        reference=ReferenceDistribution(cohort=cohort, n=n, percentiles=tuple(float(p) for p in grid),
                                        log_risk=tuple(float(q) for q in quantiles)),
        absolute_risk=AbsoluteRisk(cohort=cohort, n=n, n_events=n_events, horizon_days=float(horizon_days),
                                   baseline_survival=s0),
    )


def top_resolution(log_risk: np.ndarray, share: float = 0.10) -> dict[str, float | int]:
    """How well the top ``share`` of a cohort's scores is ranked: how many subjects it holds, how many
    distinct scores, and the largest group sharing one score (the whole cohort's, and its share).

    A saturated risk head gives many inputs one identical maximum score; a ward list or a "top 5 %"
    flag then cannot order them (docs/score-scale.md).
    """
    log_risk = np.asarray(log_risk, dtype=np.float64)
    if log_risk.size == 0:
        raise ValueError("no scores")
    n_top = max(1, int(np.ceil(share * log_risk.size)))
    top = np.sort(log_risk)[::-1][:n_top]
    _, counts = np.unique(log_risk, return_counts=True)
    return {"share": float(share), "n_top": n_top, "distinct_in_top": int(np.unique(top).size),
            "largest_tie": int(counts.max()), "largest_tie_share": round(float(counts.max() / log_risk.size), 6)}


@dataclass(frozen=True)
class RiskScaleResult:
    """The card with its new ``risk_scale``, the cohort's log-risks (NaN where not fit to score)
    and the calibration table of the absolute risk at the horizon on that cohort."""

    card: ModelCard
    log_risk: np.ndarray
    calibration: Any


def attach_risk_scale(
    model_dir: str | Path,
    cohort: Cohort,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    model_name: str = "hfrisk",
    cohort_name: str | None = None,
    plot: str | Path | None = None,
    n_bins: int = 10,
    cache_dir: str | Path | None = None,
) -> RiskScaleResult:
    """Score ``cohort`` with the exported model in ``model_dir`` and write the card's ``risk_scale``.

    Records are prepared under the model's own card; those not fit to score (quality gate) are
    left out, as the service would not score them. The card is rewritten beside the model and in
    its version folder; nothing else of the model changes. Its ``training`` section gains
    ``absolute_risk`` (what :func:`hfrisk.gateway.risk_assessment.absolute_risk` reads) and
    ``calibration`` (slope, intercept, calibration-in-the-large of the absolute risk on this same
    cohort, so in-sample). ``plot``: also save the calibration plot there. ``cache_dir``: where the
    prepared model inputs are cached (:func:`~hfrisk.training.data.dataset.model_inputs`).
    """
    from hfrisk.serving.scorers import OnnxScorer, find_model_version
    from hfrisk.training.data.dataset import model_inputs
    from hfrisk.training.metrics.calibration import calibration_summary, calibration_table, plot_calibration

    version_dir = find_model_version(model_dir, model_name)
    top_dir = version_dir.parent
    scorer = OnnxScorer.from_model_dir(version_dir)
    # Prepared under the card without a scale, so the cached inputs do not depend on the scale.
    prep_card = scorer.card.model_copy(update={"risk_scale": None})
    inputs = model_inputs(cohort.record_paths(), prep_card, keep="all", cache_dir=cache_dir)
    usable = np.asarray(inputs.fit_to_score, dtype=bool) & ~np.asarray(inputs.failed, dtype=bool)
    log_risk = np.full(len(cohort), np.nan)
    x = inputs.x[usable]
    scores = [scorer.score(x[i:i + 256])["log_risk"].reshape(-1) for i in range(0, len(x), 256)]
    log_risk[usable] = np.concatenate(scores) if scores else []
    name = cohort_name or f"{Path(cohort.source).name} ({len(cohort)} records, {cohort.n_events} events)"
    scale = risk_scale_from_cohort(log_risk[usable], cohort.time[usable], cohort.event[usable],
                                   horizon_days=horizon_days, cohort=name)
    predicted = scale.absolute_risk_at_horizon(log_risk[usable])
    table = calibration_table(predicted, cohort.event[usable], cohort.time[usable], t=horizon_days, n_bins=n_bins)
    summary = calibration_summary(table)
    if plot is not None:
        plot_calibration(table, plot)
    training = dict(scorer.card.training)
    training["absolute_risk"] = {"horizon_days": scale.absolute_risk.horizon_days,
                                 "baseline_survival": scale.absolute_risk.baseline_survival}
    training["calibration"] = {
        "horizon_days": float(horizon_days), "n_bins": n_bins, "in_sample": True,
        "n_scored": int(usable.sum()), "n_not_scored": int((~usable).sum()),
        **{k: (None if not np.isfinite(v) else round(float(v), 6)) for k, v in summary.items()},
    }
    training["top_resolution"] = top_resolution(log_risk[usable])
    card = scorer.card.model_copy(update={"risk_scale": scale, "training": training})
    card = ModelCard.model_validate(card.model_dump())  # the validators run on the whole card again
    for folder in (version_dir, top_dir):
        if (folder / CARD_FILENAME).is_file() or folder == version_dir:
            card.save(folder / CARD_FILENAME)
    log.info("export.risk_scale", model_dir=str(top_dir), scored=int(usable.sum()), s0=scale.absolute_risk.baseline_survival,
             horizon_days=horizon_days, calibration_slope=summary["slope"])
    return RiskScaleResult(card, log_risk, table)
