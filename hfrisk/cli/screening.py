"""``hfrisk screen``: population screening through Triton or in process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NamedTuple, Optional

import typer

from hfrisk.core.config import get_settings

__all__ = ["register"]


def screen(
    sources: Annotated[list[Path], typer.Argument(help="Folders, WFDB records or DICOM files to score.")],
    out: Annotated[Path, typer.Option(help="Output folder: scores.csv/.parquet (one row per window), records.csv/.parquet (one per recording), summary.png.")] = Path("runs/screen"),
    model: Annotated[Optional[Path], typer.Option(help="Model folder or Triton repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    in_process: Annotated[bool, typer.Option("--in-process", help="Score with ONNX Runtime in this process instead of Triton.")] = False,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC address; default HFRISK_TRITON__GRPC_URL.")] = None,
    untrained: Annotated[bool, typer.Option("--untrained", help="Use a randomly initialised network when no model is found (plumbing checks only).")] = False,
    threshold: Annotated[Optional[float], typer.Option(help="Flag at log-risk >= this; default: the flag rule of the settings (HFRISK_STREAM__FLAG_ON: 5-year absolute risk >= HFRISK_STREAM__FLAG_ABSOLUTE_RISK, percentile >= HFRISK_STREAM__FLAG_PERCENTILE, or log-risk >= HFRISK_STREAM__RISK_THRESHOLD) through the model card's risk scale.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Skip recordings already in scores.csv.")] = True,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Processes that read and preprocess the recordings (and, --in-process with one per CPU, score them); default one per CPU, 0: none, all in this process.")] = None,
    hop_s: Annotated[Optional[float], typer.Option(min=0.001, help="Seconds between window starts in long recordings; default the window length (windows side by side).")] = None,
    wait_for_triton_s: Annotated[float, typer.Option(min=0, help="Seconds to wait for Triton and the model to be ready (a server still starting) before giving up with status 2.")] = 30.0,
    device: Annotated[Optional[str], typer.Option(help="With --in-process, where the network runs: cpu, or cuda / cuda:N (ONNX Runtime's CUDA provider: install onnxruntime-gpu); default HFRISK_SCREENING__DEVICE (cpu). With a pool process per CPU each scores on the GPU with its own session; with fewer, this process does. The front end's device is HFRISK_FRONTEND__ARRAY_BACKEND / __DEVICE.")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Recordings each pool process reads, preprocesses (in one call of the batched front end) and scores together: 32 suits a CPU core; a front end on a GPU wants hundreds.")] = 32,
) -> None:
    """Population screening: score every recording (through Triton, or --in-process), write scores, quality, flags and a summary picture."""
    from rich.console import Console
    from rich.table import Table

    from hfrisk.screening import screen as run_screen
    from hfrisk.screening import screening_threads, summarize

    from hfrisk.core.allocator import keep_freed_memory

    settings = get_settings()
    console = Console()
    # This process reads and preprocesses too when there is no pool (--workers 0), and gathers
    # every chunk's arrays when there is one: it keeps what it frees, as the pool's processes do.
    keep_freed_memory(settings.screening.keep_freed_mb)
    if device is not None and not in_process:
        typer.echo("--device applies to --in-process; through Triton the network runs where the served model's "
                   "config puts it (docs/serving.md).", err=True)
        raise typer.Exit(code=2)
    if in_process:
        # Replicable: the pool's processes score too, each with its own session (hfrisk.screening.screen).
        scorer = _in_process_scorer(model or settings.paths.model_repository, settings.paths.model_name, untrained,
                                    threads=screening_threads(workers), replicable=workers != 0,
                                    device=device or settings.screening.device)
    else:
        # The preprocessing pool forks beside the gRPC client's threads; its processes never use gRPC,
        # so gRPC's fork handlers (which log a line per fork when they cannot run) have nothing to do.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        scorer = _triton_scorer(triton_url or settings.triton.grpc_url, model or settings.paths.model_repository,
                                settings.paths.model_name, wait_for_triton_s)
    rule = flag_rule(settings.stream, scorer.card.risk_scale, threshold)
    console.print(f"flag: {rule.text}")
    run_screen(
        sources, scorer, out,
        threshold=rule.log_risk,
        batch_size=batch_size, resume=resume, workers=workers, hop_s=hop_s, chunk_size=chunk_size,
        keep_freed_mb=settings.screening.keep_freed_mb, read_back=False,
    )
    frame, records = write_outputs(out)
    counts = records["status"].value_counts().to_dict()
    console.print(
        f"{len(records)} recordings: {counts.get('scored', 0)} scored, {counts.get('low_quality', 0)} not fit to "
        f"score, {counts.get('refused', 0)} refused; {int(records['flagged'].sum())} flagged. Written to {out}/"
    )
    if len(frame) > len(records):
        windows = frame["status"].value_counts().to_dict()
        console.print(
            f"{len(frame)} windows: {windows.get('scored', 0)} scored, {windows.get('low_quality', 0)} not fit to "
            f"score, {windows.get('refused', 0)} refused; {int(frame['flagged'].sum())} at or above the threshold"
        )
    if scorer.untrained:
        console.print("[bold red]UNTRAINED network: these scores are meaningless.[/bold red]")
    scale = scorer.card.risk_scale
    horizon = f"{scale.absolute_risk.horizon_years:g}-y risk" if scale is not None else "abs. risk"
    table = Table("record", "windows", "log-risk", "max", "HR x", "percentile", horizon, "quality", "bpm", "top lead",
                  "flag", title="Highest risk (median over the scored windows of each recording)")
    if scale is None:
        console.print("The model card has no risk scale: relative risk only (hfrisk risk-scale gives it one).")
    for row in summarize(records):
        table.add_row(
            Path(row["record"]).name, f"{row['windows_scored']}/{row['windows']}", f"{row['median_log_risk']:.2f}",
            f"{row['max_log_risk']:.2f}", f"{row['hazard_ratio']:.2f}",
            _or_dash(row["risk_percentile"], "{:.1f}"), _or_dash(row["absolute_risk"], "{:.1%}"),
            f"{row['quality_score']:.2f}", f"{row['heart_rate_bpm']:.0f}", str(row["top_lead"]),
            "[bold red]FLAG[/bold red]" if row["flagged"] else "",
        )
    console.print(table)



def write_outputs(out: Path):
    """What ``hfrisk screen`` writes beside scores.csv and records.csv once the run is over (the
    Parquet copies of both and the summary picture), from those files as Arrow reads them
    (:func:`hfrisk.screening.read_table`): returns the windows' rows the picture and the counts
    need, and the recordings' rows. The pool's processes wait for all of it; its own function, so
    that benchmarks time the CLI's tail as the CLI runs it (bench.bench_screening_caller)."""
    from pyarrow import parquet

    from hfrisk.screening import RECORDS_FILENAME, SCORES_FILENAME, read_table, write_summary

    scores, records = read_table(out / SCORES_FILENAME), read_table(out / RECORDS_FILENAME, records=True)
    parquet.write_table(scores, out / "scores.parquet")
    parquet.write_table(records, out / "records.parquet")
    frame = scores.select(["record", "window_start_s", "status", "log_risk", "flagged", "lead_attention"]).to_pandas()
    write_summary(frame, out / "summary.png")
    return frame, records.to_pandas()


class FlagRule(NamedTuple):
    log_risk: float
    text: str


def flag_rule(stream, risk_scale, threshold: float | None = None) -> FlagRule:
    """The log-risk a recording is flagged at, and the rule in words: ``threshold`` (a log-risk)
    when given, else the settings' rule through the card's risk scale."""
    if threshold is not None:
        return FlagRule(threshold, f"log-risk >= {threshold:g} (--threshold)")
    raise_at, _ = stream.flag_thresholds(risk_scale)
    if stream.flag_on == "log_risk" or risk_scale is None:
        note = "" if stream.flag_on == "log_risk" else f" (the card has no risk scale for flag_on={stream.flag_on})"
        return FlagRule(raise_at, f"log-risk >= {raise_at:g}{note}")
    if stream.flag_on == "percentile":
        return FlagRule(raise_at, f"percentile >= {stream.flag_percentile:g} in the reference cohort "
                                  f"(log-risk >= {raise_at:.4f})")
    years = risk_scale.absolute_risk.horizon_years
    return FlagRule(raise_at, f"{years:g}-year absolute risk >= {stream.flag_absolute_risk:.1%} "
                              f"(log-risk >= {raise_at:.4f})")


def _or_dash(value, fmt: str) -> str:
    return "-" if value is None or value != value else fmt.format(value)


def _triton_scorer(url: str, model: Path, model_name: str, wait_s: float):
    from hfrisk.model.contract.card import CARD_FILENAME, load_card
    from hfrisk.serving.client import TritonClientError
    from hfrisk.serving.scorers import SyncTritonScorer, find_model_version

    # The card of the served model, never a guessed one: recordings prepared under another
    # contract would be scored without any error.
    try:
        version = find_model_version(model, model_name)
        card = load_card(next((p for p in (version, version.parent) if (p / CARD_FILENAME).is_file()), version))
    except (OSError, ValueError) as err:
        typer.echo(f"no usable model card for the served model in {model} ({err}); export the model there first.",
                   err=True)
        raise typer.Exit(code=2) from err
    try:
        return SyncTritonScorer(url, card, model_name=model_name, ready_timeout_s=wait_s)
    except TritonClientError as err:
        typer.echo(f"Triton at {url} is not ready ({err}); start it with `hfrisk serve` or use --in-process.", err=True)
        raise typer.Exit(code=2) from err


def _in_process_scorer(model: Path, model_name: str, untrained: bool, threads: int | None = None,
                       replicable: bool = False, device: str = "cpu"):
    from hfrisk.serving.scorers import DeviceUnavailable, OnnxScorer, onnx_providers

    try:
        onnx_providers(device)
    except ValueError as err:
        typer.echo(f"--device: {err}", err=True)
        raise typer.Exit(code=2) from err
    options = {"threads": threads, "replicable": replicable, "device": device}
    try:
        try:
            return OnnxScorer.from_model_dir(model, model_name, **options)
        except FileNotFoundError as err:
            if not untrained:
                typer.echo(f"{err}. Train and export a model, or pass --untrained for a plumbing check.", err=True)
                raise typer.Exit(code=2) from err
            return OnnxScorer.untrained(**options)
    except DeviceUnavailable as err:
        typer.echo(f"cannot score on {device}: {err}", err=True)
        raise typer.Exit(code=2) from err


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hfrisk`` app."""
    app.command()(screen)
