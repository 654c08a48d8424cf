"""The training subcommands of ``hfrisk``: ``pretrain``, ``probe``, ``finetune``, ``evaluate``, ``export``, ``synthetic-cohort``.

Plain typer command functions: ``hfrisk.cli.app`` registers them (``app.command("pretrain")(pretrain_command)``),
so each is also callable from Python with keyword arguments. ``pretrain``'s options mirror
:class:`~hfrisk.training.pretrain.config.PretrainConfig` field by field, with the same defaults (a test
compares them). Heavy imports happen inside the functions, so ``hfrisk --help`` stays fast.

Examples::

    hfrisk pretrain --data-root /data/ptbxl --run-dir runs/pretrain            # the paper's run
    hfrisk pretrain --data-root /data/ptbxl --limit-records 256 --max-epochs 3  # smoke run
    hfrisk pretrain --resume runs/pretrain                                      # continue from last.pt
    hfrisk finetune runs/synthetic/cohort.csv --init runs/pretrain/best.pt --out runs/finetune
    hfrisk export runs/finetune/best.pt --repo-dir triton_models --version 2
    hfrisk risk-scale runs/synthetic/cohort.csv --model triton_models    # percentile + 5-year risk in the card
    hfrisk evaluate ../shared/data/outcomes/music/subject-info.csv --format music --out runs/music  # real outcomes
    hfrisk synthetic-cohort /data/ptbxl --scenario music-cardiac --event-rate 0.25                  # MUSIC's ECG hazard
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

__all__ = [
    "pretrain_command",
    "probe_command",
    "finetune_command",
    "evaluate_command",
    "export_command",
    "risk_scale_command",
    "synthetic_cohort_command",
]


# --- pretraining --------------------------------------------------------------------------------


def _folds(text: str, option: str) -> tuple[int, ...]:
    """``"1-8"`` or ``"1,2,3"`` (or a mix) → fold numbers."""
    folds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, _, high = part.partition("-")
            folds.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise typer.BadParameter(f"{option} takes fold numbers like 1-8 or 1,2,3; got {text!r}") from None
    return tuple(folds)


def _sources(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """``"500,100,extra"`` → ``("500", "100", "extra")``; None stays None (one release)."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def pretrain_command(
    data_root: Annotated[Optional[Path], typer.Option(help="PTB-XL folder (ptbxl_database.csv, records100/500). Required unless --resume.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder to create; default runs/pretrain-<time>.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue RUN_DIR from its last.pt with its saved configuration "
                                                        "(only --device, --workers, --cache-dir, --progress and --stop-after-epoch apply).")] = None,
    sampling_rate: Annotated[int, typer.Option(help="PTB-XL release to read: 100 or 500 Hz (resampled to the card's rate).")] = 500,
    validated_only: Annotated[bool, typer.Option("--validated-only/--all-reports", help="Only reports validated by a cardiologist (paper).")] = True,
    train_folds: Annotated[str, typer.Option(help="PTB-XL strat_folds to train on, e.g. 1-8.")] = "1-8",
    val_folds: Annotated[str, typer.Option(help="PTB-XL strat_folds to validate on, e.g. 9.")] = "9",
    limit_records: Annotated[Optional[int], typer.Option(min=1, help="At most this many records per split (smoke runs).")] = None,
    keep: Annotated[Literal["fit", "usable"], typer.Option(help="Train on records fit to score, or on all with a usable lead.")] = "fit",
    sources: Annotated[Optional[str], typer.Option(help="Merge sources, one record per ecg_id, first listed wins: e.g. 500,100,extra "
                                                        "(records500, records100, ptbxl-extra). Default: the --sampling-rate release only.")] = None,
    extra_root: Annotated[Optional[Path], typer.Option(help="ptbxl-extra folder (signals_100hz_zscored.npz); default DATA_ROOT/../ptbxl-extra.")] = None,
    exclude_ids: Annotated[Optional[Path], typer.Option(help="File of ecg_ids (one a line, or CSV with ecg_id) kept out of train and validation.")] = None,
    exclude_patients: Annotated[Optional[Path], typer.Option(help="File of PTB-XL patient_ids (one a line, or CSV with patient_id) kept out.")] = None,
    exclude_folds: Annotated[str, typer.Option(help="strat_folds kept out entirely, e.g. 10 (an evaluation's test fold).")] = "",
    exclude_same_patient: Annotated[bool, typer.Option("--exclude-same-patient/--exclude-listed-only",
                                                       help="Also leave out every other record of an excluded record's patient.")] = True,
    text: Annotated[Literal["structured", "raw"], typer.Option(help="Structured SCP statements (paper) or the raw report.")] = "structured",
    text_encoder: Annotated[Optional[str], typer.Option(help="Hugging Face name or folder; default the bundled offline MiniLM.")] = None,
    encoder: Annotated[Literal["dual_attention", "xresnet1d101"], typer.Option(help="ECG encoder.")] = "dual_attention",
    loss: Annotated[Literal["cosine", "infonce"], typer.Option(help="Alignment loss: CLIP-style InfoNCE with identical texts as positives (default), or the paper code's cosine.")] = "infonce",
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (start value when learnt).")] = 0.1,
    learn_temperature: Annotated[bool, typer.Option(help="Learn the InfoNCE temperature.")] = False,
    recon_weight: Annotated[float, typer.Option(help="Weight of the reconstruction MSE.")] = 1.0,
    align_weight: Annotated[float, typer.Option(help="Weight of the alignment loss.")] = 1.0,
    max_epochs: Annotated[int, typer.Option(min=1, help="Epochs; the schedule spans all of them.")] = 300,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    drop_last: Annotated[bool, typer.Option(help="Drop the last incomplete batch of an epoch (kept if there is no full one).")] = True,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    betas: Annotated[tuple[float, float], typer.Option(help="AdamW betas.")] = (0.9, 0.95),
    weight_decay: Annotated[float, typer.Option()] = 0.01,
    warmup_fraction: Annotated[float, typer.Option(help="Share of iterations with linear warm-up.")] = 0.2,
    lead_mask_p: Annotated[float, typer.Option(help="Probability of whole-lead subset masking per ECG.")] = 0.5,
    same_mask_per_batch: Annotated[bool, typer.Option(help="One lead subset for the whole batch.")] = False,
    monitor: Annotated[Literal["val_recon", "val_loss", "val_align"], typer.Option(help="Metric that picks best.pt.")] = "val_recon",
    early_stop_patience: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many epochs without improvement.")] = None,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Snapshot to checkpoints/ every N epochs (0: never).")] = 50,
    seed: Annotated[int, typer.Option()] = 72,
    device: Annotated[str, typer.Option(help="auto (cuda if available), cpu, cuda, cuda:1, ...")] = "auto",
    workers: Annotated[int, typer.Option(min=1, help="Processes for preprocessing on a cache miss.")] = 1,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Cache of model inputs and text embeddings; default under the state dir.")] = None,
    stop_after_epoch: Annotated[Optional[int], typer.Option(min=1, help="Stop after this epoch (resume later with --resume).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Pretrain the ECG encoder on PTB-XL: masked beat reconstruction plus ECG-report alignment (paper §3.1)."""
    from pydantic import ValidationError

    from hfrisk.training.pretrain.config import PretrainConfig
    from hfrisk.training.pretrain.loop import pretrain
    from hfrisk.training.runs.run_dir import RunDir

    runtime = {"device": device, "workers": workers, "cache_dir": cache_dir, "progress": progress}
    try:
        if resume is not None:
            saved = RunDir(resume).read_config() if (resume / RunDir.CONFIG).is_file() else None
            if saved is None:
                raise typer.BadParameter(f"{resume} holds no {RunDir.CONFIG}", param_hint="--resume")
            config = PretrainConfig.from_run_config(saved, **runtime)
            target, resuming = resume, True
        else:
            if data_root is None:
                raise typer.BadParameter("required (or --resume RUN_DIR)", param_hint="--data-root")
            config = PretrainConfig(
                data_root=data_root, sampling_rate=sampling_rate, validated_only=validated_only,
                train_folds=_folds(train_folds, "--train-folds"), val_folds=_folds(val_folds, "--val-folds"),
                limit_records=limit_records, keep=keep, sources=_sources(sources), extra_root=extra_root,
                exclude_ids=exclude_ids, exclude_patients=exclude_patients,
                exclude_folds=_folds(exclude_folds, "--exclude-folds"), exclude_same_patient=exclude_same_patient,
                text=text, text_encoder=text_encoder, encoder=encoder, loss=loss,
                temperature=temperature, learn_temperature=learn_temperature, recon_weight=recon_weight,
                align_weight=align_weight, max_epochs=max_epochs, batch_size=batch_size, drop_last=drop_last, lr=lr,
                betas=betas, weight_decay=weight_decay, warmup_fraction=warmup_fraction,
                lead_mask_p=lead_mask_p, same_mask_per_batch=same_mask_per_batch, monitor=monitor,
                early_stop_patience=early_stop_patience, checkpoint_every=checkpoint_every, seed=seed, **runtime,
            )
            target, resuming = run_dir or Path("runs") / time.strftime("pretrain-%Y%m%d-%H%M%S"), False
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc

    result = pretrain(config, target, resume_run=resuming, stop_after_epoch=stop_after_epoch)
    last = result.history[-1] if result.history else {}
    summary = {
        "run_dir": str(result.run_dir),
        "best_checkpoint": str(result.best_checkpoint),
        "best_epoch": result.best_epoch,
        result.monitor: result.best_value,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "seconds": round(result.seconds, 1),
        "last_epoch": {k: last[k] for k in ("train_loss", "val_loss", "val_recon", "val_align", "val_cos_matched",
                                            "val_cos_shuffled", "val_top1", "val_top5", "val_top1_majority") if k in last},
    }
    typer.echo(json.dumps(summary, indent=2))


def probe_command(
    data_root: Annotated[Path, typer.Argument(help="PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/500).")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Pretraining checkpoint (best.pt); none: only the random encoder.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the result as JSON here (also printed).")] = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Also probe the random encoder the checkpoint started from (same seed).")] = True,
    encoder: Annotated[Literal["dual_attention", "xresnet1d101"], typer.Option(help="Encoder without a checkpoint (else the checkpoint's).")] = "dual_attention",
    seed: Annotated[int, typer.Option(help="Initialisation seed without a checkpoint (else the checkpoint's).")] = 72,
    sampling_rate: Annotated[int, typer.Option(help="PTB-XL release to read: 100 or 500 Hz.")] = 100,
    n_boot: Annotated[int, typer.Option(min=0, help="Bootstrap resamples of the test fold for the AUC interval.")] = 1000,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Cache of model inputs; default under the state dir.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar while preprocessing.")] = True,
) -> None:
    """Linear probe of a frozen encoder on the PTB-XL superclasses: train folds 1-8, C on 9, macro AUC on 10."""
    from hfrisk.training.evaluation.probe import probe_checkpoint

    if sampling_rate not in (100, 500):
        raise typer.BadParameter("sampling-rate must be 100 or 500")
    if checkpoint is not None and not checkpoint.is_file():
        raise typer.BadParameter(f"{checkpoint} is not a file", param_hint="--checkpoint")
    result = probe_checkpoint(data_root, checkpoint, encoder=encoder, seed=seed, sampling_rate=sampling_rate,
                              baseline=baseline, n_boot=n_boot, cache_dir=cache_dir, progress=progress)
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


# --- fine-tuning, evaluation, export -------------------------------------------------------------

_ENCODERS = ("dual_attention", "xresnet1d101")
_SCENARIOS = ("labels", "music-pump-failure", "music-cardiac")
_METHODS = ("finetune", "cox", "both", "floors")


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _config(encoder: str, epochs: Optional[int], batch_size: int, lr: float, alpha: float, lead_mask_prob: float,
            seed: int, device: str, patience: Optional[int], monitor: str = "val_c", head_init: str = "random",
            lr_grid: Optional[str] = None, freeze_encoder: bool = False):
    from hfrisk.training.finetune.config import FinetuneConfig

    grid = tuple(float(v) for v in lr_grid.split(",") if v.strip()) if lr_grid else ()
    return FinetuneConfig(encoder=_check_choice(encoder, _ENCODERS, "encoder"), epochs=epochs, batch_size=batch_size,
                          lr=lr, alpha=alpha, lead_mask_prob=lead_mask_prob, seed=seed, device=device,
                          patience=patience, monitor=_check_choice(monitor, _MONITORS, "monitor"),
                          head_init=_check_choice(head_init, _HEAD_INITS, "head-init"), lr_grid=grid,
                          freeze_encoder=freeze_encoder)


def _load(cohort: Path, records_root: Optional[Path], time_unit: str):
    from hfrisk.training.data.cohort import load_cohort

    # A synthetic cohort's records are relative to the PTB-XL root it names in its JSON.
    if records_root is None:
        spec = cohort.parent / "synthetic_cohort.json"
        if spec.exists():
            root = json.loads(spec.read_text()).get("records_root")
            records_root = Path(root) if root else None
    return load_cohort(cohort, records_root=records_root, time_unit=time_unit)


CohortArg = Annotated[Path, typer.Argument(help="Cohort CSV/Parquet: record, time, event (+ covariates).")]
RecordsRootOpt = Annotated[Optional[Path], typer.Option(help="Folder the cohort's record paths are relative to.")]
_DAYS_PER_YEAR = 365.25
HorizonOpt = Annotated[float, typer.Option(min=0.01, help="Horizon of the absolute risk, in years (the cohort's time is in days).")]
TimeUnitOpt = Annotated[str, typer.Option(help="Unit of the cohort's time column.")]
EncoderOpt = Annotated[str, typer.Option(help="dual_attention (the paper's) or xresnet1d101 (baseline CNN).")]
InitOpt = Annotated[Optional[Path], typer.Option(help="Pretrained (or fine-tuned) checkpoint; none = from scratch.")]
EpochsOpt = Annotated[Optional[int], typer.Option(min=1, help="Epochs; default 100 from a pretrained encoder, 400 from scratch.")]
BatchOpt = Annotated[int, typer.Option(min=2, help="Batch size (paper: 128 for ~800 subjects, 1024 for ~11k).")]
LrOpt = Annotated[float, typer.Option(help="AdamW learning rate.")]
AlphaOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the Cox loss (1 - alpha: reconstruction).")]
LeadMaskOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability that a batch gets a lead subset masked.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
PatienceOpt = Annotated[Optional[int], typer.Option(min=1, help="Stop after this many epochs without a better monitored value.")]
_MONITORS = ("val_c", "val_cox")
_HEAD_INITS = ("random", "ridge_cox")
MonitorOpt = Annotated[str, typer.Option(help="What keeps an epoch and stops early: val_c (validation Harrell C, the paper's) "
                                         "or val_cox (validation Cox partial likelihood).")]
HeadInitOpt = Annotated[str, typer.Option(help="Risk head start: random (the paper's) or ridge_cox (a ridge Cox fit on the "
                                          "frozen embedding, chosen on validation; epoch 0 is then a candidate).")]
LrGridOpt = Annotated[Optional[str], typer.Option(help="Comma-separated learning rates, one fine-tuning each; the best by "
                                                  "--monitor is kept (overrides --lr).")]
FreezeOpt = Annotated[bool, typer.Option("--freeze-encoder", help="Train only the risk head (and the decoder) on a "
                                          "fixed encoder, in eval mode: the frozen-encoder method.")]
CacheOpt = Annotated[Optional[Path], typer.Option(help="Folder for cached model inputs.")]


def finetune_command(
    cohort: CohortArg,
    out: Annotated[Path, typer.Option(help="Run folder: best.pt, last.pt, history.csv.")] = Path("runs/finetune"),
    records_root: RecordsRootOpt = None,
    time_unit: TimeUnitOpt = "days",
    init: InitOpt = None,
    encoder: EncoderOpt = "dual_attention",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 128,
    lr: LrOpt = 1e-4,
    alpha: AlphaOpt = 0.5,
    lead_mask_prob: LeadMaskOpt = 0.5,
    val_frac: Annotated[float, typer.Option(min=0.01, max=0.9, help="Share held out (stratified) to choose the epoch.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split, the batches and the weights.")] = 42,
    device: DeviceOpt = "auto",
    patience: PatienceOpt = None,
    monitor: MonitorOpt = "val_c",
    head_init: HeadInitOpt = "random",
    lr_grid: LrGridOpt = None,
    freeze_encoder: FreezeOpt = False,
    cache_dir: CacheOpt = None,
) -> None:
    """Fine-tune for HF risk on a cohort; keeps the epoch with the best validation C-index (or --monitor)."""
    from hfrisk.training.finetune.loop import finetune

    data = _load(cohort, records_root, time_unit)
    fit_index, val_index = data.inner_split(val_frac, seed)
    config = _config(encoder, epochs, batch_size, lr, alpha, lead_mask_prob, seed, device, patience, monitor, head_init,
                     lr_grid, freeze_encoder)
    result = finetune(config, data.subset(fit_index), data.subset(val_index), out, init, cache_dir=cache_dir,
                      progress=True)
    typer.echo(f"best epoch {result.best_epoch}: validation Harrell C {result.best_val_c:.4f}; "
               f"{len(result.history)} epochs in {result.seconds:.0f} s; checkpoint {result.best_checkpoint}")


def evaluate_command(
    cohort: CohortArg,
    out: Annotated[Path, typer.Option(help="Folder for runs.csv, summary.json and one folder per run.")] = Path("runs/evaluate"),
    cohort_format: Annotated[str, typer.Option("--format", help="cohort (record, time, event + ECG files) or music "
                                               "(MUSIC's subject-info.csv: real outcomes, ECG measurements, no waveforms).")] = "cohort",
    method: Annotated[str, typer.Option(help="finetune (the network), cox (measurements baseline), both, or floors (ridge Cox "
                                        "on principal components of the raw beat and of the untrained network's embedding, "
                                        "plus Cox on age + sex when the cohort has them).")] = "finetune",
    records_root: RecordsRootOpt = None,
    time_unit: TimeUnitOpt = "days",
    test_cohort: Annotated[Optional[Path], typer.Option(help="Fixed-split mode: train on COHORT, test on this cohort.")] = None,
    seeds: Annotated[Optional[list[int]], typer.Option("--seed", help="CV seeds (repeatable); default the paper's 42 2021 2022 2023 2024.")] = None,
    n_folds: Annotated[Optional[int], typer.Option(min=2, help="Folds per seed; default 2 (the paper's), 5 for --format music.")] = None,
    folds: Annotated[str, typer.Option(help="What a fold keeps together: patient (patient_id; a cohort without it: each record), "
                                       "record (the paper's split) or strat_fold (PTB-XL's own ten folds).")] = "patient",
    init: InitOpt = None,
    encoder: EncoderOpt = "dual_attention",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 128,
    lr: LrOpt = 1e-4,
    alpha: AlphaOpt = 0.5,
    lead_mask_prob: LeadMaskOpt = 0.5,
    device: DeviceOpt = "auto",
    patience: PatienceOpt = None,
    monitor: MonitorOpt = "val_c",
    head_init: HeadInitOpt = "random",
    lr_grid: LrGridOpt = None,
    freeze_encoder: FreezeOpt = False,
    n_boot: Annotated[Optional[int], typer.Option(min=0, help="Bootstrap resamples per test fold for metric intervals; default 0 "
                                                  "(--format music: over patients, default 1000).")] = None,
    cache_dir: CacheOpt = None,
    repeats: Annotated[int, typer.Option(min=1, help="--format music: repeats of the K-fold split.")] = 10,
    horizon_years: Annotated[float, typer.Option(min=0.1, help="--format music: horizon of the calibration table.")] = 3.0,
    coefficients_out: Annotated[Optional[Path], typer.Option(help="--format music: also fit on everyone and write the "
                                                             "coefficients JSON the MUSIC scenario of synthetic-cohort reads.")] = None,
) -> None:
    """The paper's protocol: 5 seeds x 2 stratified folds (grouped by patient), inner 80/20 selection, test-fold metrics.

    For a synthetic cohort (oracle_log_hazard.csv beside it) the true hazard is scored on the same folds, as the ceiling.
    With --format music: cross-validated Cox models on MUSIC's real outcomes (docs/training/music.md).
    """
    if _check_choice(cohort_format, ("cohort", "music"), "format") == "music":
        _evaluate_music(cohort, out, seeds, n_folds or 5, repeats, 1000 if n_boot is None else n_boot, horizon_years,
                        coefficients_out)
        return
    n_folds, n_boot = n_folds or 2, n_boot or 0
    from rich.console import Console
    from rich.table import Table

    from hfrisk.training.data.cohort import FOLD_SCHEMES, PAPER_CV_SEEDS
    from hfrisk.training.evaluation.cox_baseline import cohort_measurements, cox_method
    from hfrisk.training.finetune.data import FinetuneData
    from hfrisk.training.finetune.method import finetune_method
    from hfrisk.training.evaluation.protocol import cross_validate, evaluate_fixed_split
    from hfrisk.training.data.synthetic_cohort import ORACLE_FILENAME, oracle_method, read_oracle

    _check_choice(method, _METHODS, "method")
    _check_choice(folds, FOLD_SCHEMES, "folds")
    data = _load(cohort, records_root, time_unit)
    test = _load(test_cohort, records_root, time_unit) if test_cohort else None
    whole = data if test is None else _concat(data, test)
    methods = []
    if method in ("finetune", "both"):
        config = _config(encoder, epochs, batch_size, lr, alpha, lead_mask_prob, 42, device, patience, monitor,
                         head_init, lr_grid, freeze_encoder)
        inputs = FinetuneData.from_cohort(whole, cache_dir=cache_dir)  # preprocessed once for all runs
        methods.append(finetune_method(config, init, inputs=inputs, cohort=whole))
    if method in ("cox", "both"):
        measurements = cohort_measurements(whole, cache=out / "measurements.parquet", progress=True)
        methods.append(cox_method(measurements.set_axis(whole.records)))
    if method == "floors":
        methods.extend(_floor_methods(whole, cache_dir))
    if (cohort.parent / ORACLE_FILENAME).exists():
        methods.append(oracle_method(read_oracle(cohort)))
    console = Console()
    results = []
    for m in methods:
        folder = out / m.name
        if test is None:
            result = cross_validate(data, m, folder, seeds=seeds or PAPER_CV_SEEDS, n_folds=n_folds, by=folds,
                                    n_boot=n_boot)
        else:
            result = evaluate_fixed_split(data, test, m, folder, n_boot=n_boot)
        results.append(result)
    table = Table("method", "runs", "Harrell C mean ± SD", "95% CI", "Uno C", "mean AUC", "IBS", title=str(cohort))
    for result in results:
        metrics = result.summary["metrics"]
        c = metrics.get("harrell_c", {})
        means = [f"{metrics[name]['mean']:.3f}" if name in metrics else "—" for name in ("uno_c", "mean_auc", "ibs")]
        table.add_row(result.method, str(result.summary["n_runs"]),
                      f"{c.get('mean', float('nan')):.4f} ± {c.get('sd', float('nan')):.4f}",
                      f"{c.get('ci_low', float('nan')):.3f}–{c.get('ci_high', float('nan')):.3f}", *means)
    console.print(table)
    if len(results) > 1 and test is None:
        console.print(_paired_table(results))
    console.print(f"results in {out}/<method>/summary.json")


def _floor_methods(cohort, cache_dir: Optional[Path]) -> list:
    from hfrisk.training.evaluation.cox_baseline import CoxBaselineConfig, cox_method
    from hfrisk.training.evaluation.floors import RIDGE_PENALIZERS, principal_components_method
    from hfrisk.training.evaluation.probe import embed, random_encoder
    from hfrisk.training.finetune.data import FinetuneData

    x = FinetuneData.from_cohort(cohort, cache_dir=cache_dir).x.numpy()
    records = cohort.records
    methods = [principal_components_method(x, "ridge_cox_beat_pcs", records=records),
               principal_components_method(embed(random_encoder("dual_attention", seed=72), x),
                                           "ridge_cox_random_embedding_pcs", records=records)]
    if {"age", "sex"} <= set(cohort.table.columns):
        age_sex = cox_method(cohort.table[["age", "sex"]].astype(float).set_axis(records),
                             CoxBaselineConfig(features=("age", "sex"), penalizers=RIDGE_PENALIZERS))
        age_sex.name = "cox_age_sex"
        methods.append(age_sex)
    return methods


def _paired_table(results: list):
    """Every method minus the last one run (the oracle when there is one), on the same folds."""
    from rich.table import Table

    from hfrisk.training.evaluation.comparison import paired_difference

    reference = results[-1]
    view = Table("method", f"ΔC vs {reference.method}", "95% t-CI", "corrected CI (Nadeau-Bengio)", "higher in",
                 title="paired differences of Harrell C on the same folds")
    for result in results[:-1]:
        d = paired_difference(result.runs, reference.runs)
        if d["n"] < 2:
            continue
        view.add_row(result.method, f"{d['mean']:+.4f}", f"{d['ci_low']:+.3f} to {d['ci_high']:+.3f}",
                     f"{d['corrected_ci_low']:+.3f} to {d['corrected_ci_high']:+.3f}", f"{d['wins']}/{d['n']} runs")
    return view


def _evaluate_music(path: Path, out: Path, seeds: Optional[list[int]], n_folds: int, repeats: int, n_boot: int,
                    horizon_years: float, coefficients_out: Optional[Path]) -> None:
    import hashlib
    import sys
    from datetime import datetime, timezone

    from rich.console import Console
    from rich.table import Table

    from hfrisk.training.data.music import MusicError, load_music
    from hfrisk.training.evaluation.music_cox import (DAYS_PER_YEAR, evaluate_music, music_cox_coefficients,
                                                      write_music_cox)

    try:
        table = load_music(path)
    except MusicError as error:
        raise typer.BadParameter(str(error), param_hint="COHORT") from None
    result = evaluate_music(table, n_folds=n_folds, n_repeats=repeats, n_boot=n_boot,
                            horizon_days=horizon_years * DAYS_PER_YEAR, seed=(seeds or [0])[0])
    result.write(out)
    summary = result.summary
    view = Table("endpoint", "features", "events", "CV Harrell C", "95% CI", "apparent C", "calib. slope",
                 f"pred. / obs. by {horizon_years:g} y", title=f"MUSIC {path} ({summary['n_patients']} patients)")
    for name in ("pump_failure", "cardiac"):
        for features, row in summary[name].items():
            if not isinstance(row, dict) or "harrell_c" not in row:
                continue
            calib = result.calibration[(name, features)]
            observed = float((calib["observed"] * calib["n"]).sum() / calib["n"].sum())
            low, high = row.get("harrell_c_ci95", [float("nan")] * 2)
            view.add_row(name, features, str(summary[name]["n_events"]), f"{row['harrell_c']:.3f}", f"{low:.3f}–{high:.3f}",
                         f"{row['apparent_harrell_c']:.3f}", f"{row['calibration']['slope']:.2f}",
                         f"{row['predicted_by_horizon_mean']:.3f} / {observed:.3f}")
    console = Console()
    console.print(view)
    if coefficients_out is not None:
        provenance = {
            "command": "hfrisk " + " ".join(sys.argv[1:]) if sys.argv and "hfrisk" in sys.argv[0] else "hfrisk evaluate --format music",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "data": f"MUSIC subject-info.csv ({summary['n_patients']} patients), PhysioNet doi:10.13026/cec2-9w70 v1.0.0",
            "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        write_music_cox(music_cox_coefficients(table), coefficients_out, provenance=provenance)
        console.print(f"coefficients in {coefficients_out}")
    console.print(f"results in {out}/summary.json, calibration tables and plots beside it")


def _concat(a, b):
    import pandas as pd

    from hfrisk.training.data.cohort import Cohort

    return Cohort(pd.concat([a.table, b.table], ignore_index=True), a.time_unit, a.records_root, a.source)


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuning checkpoint (best.pt).")],
    repo_dir: Annotated[Optional[Path], typer.Option(help="Triton model repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    version: Annotated[int, typer.Option(min=1, help="Triton model version folder.")] = 1,
    model_name: Annotated[Optional[str], typer.Option(help="Model name; default HFRISK_PATHS__MODEL_NAME.")] = None,
    parity_records: Annotated[Optional[list[Path]], typer.Option("--parity-record", help="WFDB record for the ONNX parity check (repeatable); default: the checkpoint's validation records.")] = None,
    evaluation: Annotated[Optional[Path], typer.Option(help="summary.json of `hfrisk evaluate`, copied into the card.")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Triton max_batch_size.")] = 64,
    weights: Annotated[str, typer.Option(help="float32, or float16: weights stored at half the size (outputs move by <= 1e-2, recorded in the card).")] = "float32",
    reference_cohort: Annotated[Optional[Path], typer.Option(help="Cohort (CSV/Parquet: record, time, event) whose log-risks and outcomes give the card's risk scale: percentiles and Breslow absolute risk (docs/score-scale.md).")] = None,
    records_root: RecordsRootOpt = None,
    horizon_years: HorizonOpt = 5.0,
) -> None:
    """Export a fine-tuned checkpoint to ONNX (parity-checked on real records) and a Triton repository."""
    from hfrisk.core.config import get_settings

    from hfrisk.training.export import export_model

    settings = get_settings()
    summary = json.loads(evaluation.read_text())["summary"] if evaluation else None
    result = export_model(
        checkpoint, repo_dir or settings.paths.model_repository, version,
        model_name=model_name or settings.paths.model_name, parity_records=parity_records, evaluation=summary,
        max_batch_size=max_batch_size, weights=weights,
        reference_cohort=_load(reference_cohort, records_root, "days") if reference_cohort else None,
        horizon_days=horizon_years * _DAYS_PER_YEAR,
    )
    typer.echo(f"exported to {result.model_dir}/{version}: ONNX parity {result.parity.worst:.2e} "
               f"(<= {result.parity.atol:g}) on {result.parity.batch_size} real records")
    if result.card.risk_scale is not None:
        typer.echo(f"risk scale: {result.card.risk_scale.describe()}")



def risk_scale_command(
    cohort: Annotated[Path, typer.Argument(help="Reference cohort (CSV/Parquet: record, time in days, event), e.g. the fine-tuning cohort.")],
    model: Annotated[Optional[Path], typer.Option(help="Model folder or Triton repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Model name; default HFRISK_PATHS__MODEL_NAME.")] = None,
    records_root: RecordsRootOpt = None,
    horizon_years: HorizonOpt = 5.0,
    plot: Annotated[Optional[Path], typer.Option(help="Save the calibration plot of the absolute risk on the cohort here.")] = None,
    cohort_name: Annotated[Optional[str], typer.Option(help="What the cohort is, in words, for the card; default its file name and counts.")] = None,
) -> None:
    """Give an exported model's card its risk scale (percentile and absolute risk) from a reference cohort; the model itself is unchanged."""
    from hfrisk.core.config import get_settings

    from hfrisk.training.export import attach_risk_scale

    settings = get_settings()
    result = attach_risk_scale(model or settings.paths.model_repository, _load(cohort, records_root, "days"),
                               horizon_days=horizon_years * _DAYS_PER_YEAR,
                               model_name=model_name or settings.paths.model_name, plot=plot, cohort_name=cohort_name)
    scale = result.card.risk_scale
    calibration = result.card.training["calibration"]
    typer.echo(f"risk scale: {scale.describe()}")
    typer.echo(f"calibration of the {horizon_years:g}-year risk on the same cohort (in-sample): slope "
               f"{calibration['slope']}, calibration-in-the-large {calibration['calibration_in_the_large']}"
               + (f"; plot {plot}" if plot else ""))
    top = result.card.training["top_resolution"]
    typer.echo(f"top {100 * top['share']:g} %: {top['distinct_in_top']} distinct scores among {top['n_top']} subjects; "
               f"largest tie {top['largest_tie']} subjects ({100 * top['largest_tie_share']:.1f} % of the cohort)")


def synthetic_cohort_command(
    ptbxl_root: Annotated[Path, typer.Argument(help="PTB-XL folder (ptbxl_database.csv, records100/ or records500/).")],
    out: Annotated[Path, typer.Option(help="Folder for cohort.csv, oracle_log_hazard.csv, synthetic_cohort.json.")] = Path("runs/synthetic-cohort"),
    sampling_rate: Annotated[int, typer.Option(help="100 or 500 Hz records.")] = 500,
    event_rate: Annotated[float, typer.Option(min=0.001, max=0.9, help="Share of subjects with an observed HF event.")] = 0.03,
    seed: Annotated[int, typer.Option(help="Seed of the simulated outcomes.")] = 0,
    validated_only: Annotated[bool, typer.Option(help="Only records whose report a cardiologist validated.")] = False,
    scenario: Annotated[str, typer.Option(help="labels (hazard of the diagnostic superclasses, age, sex), or "
                                          "music-pump-failure / music-cardiac (MUSIC's Cox model on each record's "
                                          "measured rate, QRS, QTc, its rhythm, conduction, LVH and Q-wave statements, age, sex).")] = "labels",
    measurements_cache: Annotated[Optional[Path], typer.Option(help="music scenarios: parquet cache of the records' measurements.")] = None,
    music_demographics: Annotated[bool, typer.Option("--music-demographics/--ecg-only", help="music scenarios: keep age and sex in "
                                                     "the hazard, or only MUSIC's age- and sex-adjusted ECG terms.")] = True,
) -> None:
    """Simulate HF outcomes on real PTB-XL ECGs from a stated hazard: of their diagnoses (labels) or MUSIC's ECG Cox model."""
    from hfrisk.training.data.ptbxl import PTBXL
    from hfrisk.training.data.synthetic_cohort import synthetic_hf_cohort, write_synthetic_cohort

    _check_choice(scenario, _SCENARIOS, "scenario")
    if sampling_rate not in (100, 500):
        raise typer.BadParameter("sampling-rate must be 100 or 500")
    dataset = PTBXL(ptbxl_root, sampling_rate)
    if validated_only:
        dataset = dataset.validated()
    if scenario == "labels":
        synth = synthetic_hf_cohort(dataset, event_rate=event_rate, seed=seed)
    else:
        from hfrisk.training.data.music_hazard import music_ecg_cohort

        from hfrisk.training.data.music_hazard import MusicHazard

        endpoint = scenario.removeprefix("music-").replace("-", "_")
        hazard = MusicHazard.from_json(endpoint, demographics=music_demographics)
        synth = music_ecg_cohort(dataset, endpoint, event_rate=event_rate, seed=seed, cache=measurements_cache,
                                 hazard=hazard, progress=True)
    path = write_synthetic_cohort(synth, out)
    summary = synth.summary()
    typer.echo(f"{summary['n']} records, {summary['n_events']} events ({100 * summary['event_rate']:.1f} %), "
               f"median follow-up {summary['median_follow_up_days']:.0f} days; oracle Harrell C "
               f"{summary['oracle_harrell_c']:.3f}; hazard {summary['hazard']}; written to {path}")
