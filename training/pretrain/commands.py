"""The ``hfrisk pretrain`` and ``hfrisk probe`` commands.

A plain typer command function: ``hfrisk/cli.py`` registers it
(``app.command("pretrain")(pretrain_command)``), so it is also callable from Python with keyword
arguments. Options mirror :class:`~hfrisk.training.pretrain.config.PretrainConfig` field by field, with
the same defaults (a test compares them); heavy imports happen inside the function, so
``hfrisk --help`` stays fast.

Examples::

    hfrisk pretrain --data-root /data/ptbxl --run-dir runs/pretrain            # the paper's run
    hfrisk pretrain --data-root /data/ptbxl --limit-records 256 --max-epochs 3  # smoke run
    hfrisk pretrain --resume runs/pretrain                                      # continue from last.pt
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

__all__ = ["pretrain_command", "probe_command"]


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
                limit_records=limit_records, keep=keep, text=text, text_encoder=text_encoder, encoder=encoder, loss=loss,
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
                                            "val_cos_shuffled") if k in last},
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
