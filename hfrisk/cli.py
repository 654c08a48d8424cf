"""The ``hfrisk`` command line. ``hfrisk COMMAND --help`` documents each command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from hfrisk.core.config import get_settings
from hfrisk.core.logs import configure_logging

app = typer.Typer(
    name="hfrisk",
    help="Streaming 12-lead ECG heart-failure risk monitoring (research software, not a medical device).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    log_level: Annotated[Optional[str], typer.Option(help="Log level (default from HFRISK_LOG__LEVEL).")] = None,
    json_logs: Annotated[Optional[bool], typer.Option("--json-logs/--text-logs", help="One JSON object per log line.")] = None,
) -> None:
    settings = get_settings()
    configure_logging(log_level or settings.log.level, settings.log.json_logs if json_logs is None else json_logs)


@app.command()
def card(
    model_dir: Annotated[Optional[Path], typer.Argument(help="A model folder holding model_card.json; default: the built-in card.")] = None,
) -> None:
    """Print the model card: the input contract and the meaning of every output."""
    from hfrisk.model.contract.card import default_card, load_card

    typer.echo((load_card(model_dir) if model_dir else default_card()).to_json())


@app.command()
def inspect(
    record: Annotated[Path, typer.Argument(help="A WFDB record (with or without extension) or a DICOM ECG.")],
    window_start_s: Annotated[float, typer.Option(help="Start of the 10-s window, seconds into the record.")] = 0.0,
    save: Annotated[Optional[Path], typer.Option(help="Write the model input (12 x 608 float32) to this .npy file.")] = None,
) -> None:
    """Read one recording, run the preprocessing and show its leads, beats and quality."""
    import numpy as np
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from hfrisk.model.contract.card import default_card
    from hfrisk.model.contract.errors import ECGInputError
    from hfrisk.model.frontend.preprocessing import prepare
    from hfrisk.model.readers.dispatch import read_ecg

    console = Console()
    card = default_card()
    try:
        ecg = read_ecg(record)
        model_input = prepare(ecg, card, window_start_s=window_start_s)
    except ECGInputError as err:
        console.print(f"[red]cannot use {escape(str(record))}[/red]: {escape(str(err))}")
        raise typer.Exit(code=2) from err
    q = model_input.quality
    console.print(
        f"{record}: {ecg.n_leads} channels at {ecg.fs_hz:g} Hz, {ecg.duration_s:.1f} s; "
        f"{model_input.n_beats} beats, {model_input.heart_rate_bpm:.0f} bpm; quality {q.score:.2f} "
        f"({'fit to score' if q.fit_to_score else 'NOT fit to score: ' + ', '.join(q.reasons)})"
    )
    table = Table("lead", "present", "derived", "min", "max")
    for i, lead in enumerate(card.input.leads):
        row = model_input.x[i]
        table.add_row(
            lead,
            "yes" if model_input.lead_mask[i] else "[red]no[/red]",
            "yes" if lead in model_input.derived_leads else "",
            f"{row.min():.2f}",
            f"{row.max():.2f}",
        )
    console.print(table)
    if save:
        np.save(save, model_input.x)
        console.print(f"model input written to {save}")


@app.command()
def screen(
    sources: Annotated[list[Path], typer.Argument(help="Folders, WFDB records or DICOM files to score.")],
    out: Annotated[Path, typer.Option(help="Output folder (scores.csv, scores.parquet).")] = Path("runs/screen"),
    model: Annotated[Optional[Path], typer.Option(help="Model folder or Triton repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    in_process: Annotated[bool, typer.Option("--in-process", help="Score with ONNX Runtime in this process instead of Triton.")] = False,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC address; default HFRISK_TRITON__GRPC_URL.")] = None,
    untrained: Annotated[bool, typer.Option("--untrained", help="Use a randomly initialised network when no model is found (plumbing checks only).")] = False,
    threshold: Annotated[Optional[float], typer.Option(help="Flag at log-risk >= this; default HFRISK_STREAM__RISK_THRESHOLD.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Skip recordings already in scores.csv.")] = True,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Processes that read and preprocess while this one scores; default one per CPU, 0: none.")] = None,
) -> None:
    """Population screening: score every recording (through Triton, or --in-process), write scores, quality, flags and a summary picture."""
    from rich.console import Console
    from rich.table import Table

    from hfrisk.screening import screen as run_screen
    from hfrisk.screening import screening_threads, summarize, write_summary

    settings = get_settings()
    console = Console()
    if in_process:
        scorer = _in_process_scorer(model or settings.paths.model_repository, settings.paths.model_name, untrained,
                                    threads=screening_threads(workers))
    else:
        # The preprocessing pool forks beside the gRPC client's threads; its processes never use gRPC,
        # so gRPC's fork handlers (which log a line per fork when they cannot run) have nothing to do.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        scorer = _triton_scorer(triton_url or settings.triton.grpc_url, model or settings.paths.model_repository,
                                settings.paths.model_name)
    frame = run_screen(
        sources, scorer, out,
        threshold=settings.stream.risk_threshold if threshold is None else threshold,
        batch_size=batch_size, resume=resume, workers=workers,
    )
    frame.to_parquet(out / "scores.parquet", index=False)
    write_summary(frame, out / "summary.png")
    counts = frame["status"].value_counts().to_dict()
    console.print(
        f"{len(frame)} recordings: {counts.get('scored', 0)} scored, {counts.get('low_quality', 0)} not fit to "
        f"score, {counts.get('refused', 0)} refused; {int(frame['flagged'].sum())} flagged. Written to {out}/"
    )
    if scorer.untrained:
        console.print("[bold red]UNTRAINED network: these scores are meaningless.[/bold red]")
    table = Table("record", "log-risk", "HR x", "quality", "bpm", "top lead", "flag", title="Highest risk")
    for row in summarize(frame):
        table.add_row(
            Path(row["record"]).name, f"{row['log_risk']:.2f}", f"{row['hazard_ratio']:.2f}",
            f"{row['quality_score']:.2f}", f"{row['heart_rate_bpm']:.0f}", str(row["top_lead"]),
            "[bold red]FLAG[/bold red]" if row["flagged"] else "",
        )
    console.print(table)


@app.command()
def serve(
    model_repository: Annotated[Optional[Path], typer.Option(help="Triton model repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    free_ports: Annotated[bool, typer.Option("--free-ports", help="Take free ports instead of HFRISK_TRITON__*_PORT.")] = False,
) -> None:
    """Run the local Triton Inference Server on loopback until Ctrl-C."""
    import signal
    import threading

    from hfrisk.stack.triton_server import TritonServer

    settings = get_settings()
    overrides = {"model_repository": model_repository} if model_repository else {}
    server = TritonServer.from_settings(settings, fixed_ports=not free_ports, **overrides)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        typer.echo(f"triton ready: grpc {server.grpc_url}  http {server.http_url}  metrics {server.metrics_url}")
        try:
            while not stop.wait(1.0):
                if not server.running():
                    typer.echo(f"tritonserver exited; log: {server.log_path}", err=True)
                    raise typer.Exit(code=1)
        except KeyboardInterrupt:
            pass


@app.command()
def replay(
    sources: Annotated[list[Path], typer.Argument(help="WFDB records or folders (PTB-XL folders work) to stream.")],
    beds: Annotated[int, typer.Option(min=1, help="Simulated beds; recordings are dealt out round-robin.")] = 4,
    chunk_s: Annotated[float, typer.Option(help="Seconds of signal per Kafka message.")] = 1.0,
    realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Pace chunks as a live monitor would, or send as fast as possible.")] = True,
    duration_s: Annotated[Optional[float], typer.Option(help="Stop after this many seconds of signal per bed.")] = None,
    max_records: Annotated[Optional[int], typer.Option(help="Stop after this many recordings.")] = None,
    loop: Annotated[bool, typer.Option(help="Start again from the first recording when all are sent.")] = False,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers; default HFRISK_KAFKA__BOOTSTRAP_SERVERS.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Topic; default HFRISK_KAFKA__ECG_TOPIC.")] = None,
    create_topics: Annotated[bool, typer.Option(help="Create the stream's topics first if missing.")] = True,
) -> None:
    """Stream recordings into Kafka as bedside monitors would."""
    from hfrisk.stream.ingest.replay import replay as run_replay
    from hfrisk.stream.ingest.topics import ensure_topics

    settings = get_settings()
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap}) if bootstrap else settings.kafka
    if create_topics:
        ensure_topics(kafka)
    stats = run_replay(
        [str(s) for s in sources], kafka.bootstrap_servers, topic or kafka.ecg_topic,
        beds=beds, chunk_s=chunk_s, realtime=realtime, duration_s=duration_s, max_records=max_records, loop=loop,
    )
    typer.echo(stats.summary())


@app.command()
def up(
    sources: Annotated[Optional[list[Path]], typer.Argument(help="Recordings to replay; default the bundled PTB-XL records.")] = None,
    beds: Annotated[int, typer.Option(min=1, help="Simulated beds.")] = 6,
    workers: Annotated[int, typer.Option(min=1, help="Stream worker processes.")] = 1,
    realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Replay at monitor pace or as fast as possible.")] = False,
    duration_s: Annotated[Optional[float], typer.Option(help="Seconds of signal per bed to replay.")] = None,
    loop: Annotated[bool, typer.Option(help="Replay the recordings again and again.")] = False,
    model_repository: Annotated[Optional[Path], typer.Option(help="Triton model repository; default HFRISK_PATHS__MODEL_REPOSITORY.")] = None,
    view_s: Annotated[float, typer.Option(help="Show the live ward view this long at most (0: none).")] = 300.0,
    foreground: Annotated[bool, typer.Option("--foreground", help="Stop the whole stack when this command ends.")] = False,
) -> None:
    """Start the local stack (Kafka, Redis, Triton, workers, Prometheus), replay a ward, show flagged patients."""
    import time

    from rich.console import Console
    from rich.live import Live

    from hfrisk.core.security import redis_client
    from hfrisk.stack.local import plain_redis_settings, require_model, start_replay, start_stack, stop_stack
    from hfrisk.stream.sinks.redis_sink import RedisSink
    from hfrisk.stack.ward_view import ward_rows, ward_table

    settings = get_settings()
    console = Console()
    repository = model_repository or settings.paths.model_repository
    require_model(repository, settings.paths.model_name)
    sources = sources or [Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500"]
    with console.status("starting Redis, Kafka, Triton, workers and Prometheus…"):
        info = start_stack(settings, model_repository=repository, workers=workers)
    console.print("stack up: " + ", ".join(f"{k} {v}" for k, v in info.urls.items()))
    console.print(f"point other commands at it with: source {info.folder}/stack.env")
    producer = start_replay(settings, info, sources, beds=beds, realtime=realtime, duration_s=duration_s, loop=loop)
    sink = RedisSink(redis_client(plain_redis_settings(settings, info.urls["redis"])), settings.redis.key_prefix)
    try:
        deadline = time.monotonic() + view_s
        last_change, last_count = time.monotonic(), -1
        with Live(ward_table(sink), console=console, refresh_per_second=1, transient=False) as live:
            while time.monotonic() < deadline:
                time.sleep(1.0)
                live.update(ward_table(sink))
                count = sum(r["windows"] + r["low_quality"] for r in ward_rows(sink, 1000))
                if count != last_count:
                    last_change, last_count = time.monotonic(), count
                # Replay finished and the workers have drained: nothing more will change.
                if not producer.running() and not loop and time.monotonic() - last_change > 15:
                    break
        flagged = [r["patient_id"] for r in ward_rows(sink, 1000) if r["flagged"]]
        console.print(f"flagged patients: {', '.join(flagged) if flagged else 'none'}")
    except KeyboardInterrupt:
        pass
    finally:
        if foreground:
            stop_stack(settings)
            console.print("stack stopped")
        else:
            console.print("the stack keeps running (Prometheus, Redis, Triton); stop it with: hfrisk down")


@app.command()
def down() -> None:
    """Stop everything `hfrisk up` started; leaves nothing running."""
    from hfrisk.stack.local import stop_stack

    stopped = stop_stack(get_settings())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no stack is running")


def _triton_scorer(url: str, model: Path, model_name: str):
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
        return SyncTritonScorer(url, card, model_name=model_name)
    except TritonClientError as err:
        typer.echo(f"Triton at {url} is not ready ({err}); start it with `hfrisk serve` or use --in-process.", err=True)
        raise typer.Exit(code=2) from err


def _in_process_scorer(model: Path, model_name: str, untrained: bool, threads: int | None = None):
    from hfrisk.serving.scorers import OnnxScorer

    try:
        return OnnxScorer.from_model_dir(model, model_name, threads=threads)
    except FileNotFoundError as err:
        if not untrained:
            typer.echo(f"{err}. Train and export a model, or pass --untrained for a plumbing check.", err=True)
            raise typer.Exit(code=2) from err
        return OnnxScorer.untrained(threads=threads)


def _register_stage_commands() -> None:
    """Commands whose code lives with its stage (training/, stream/); imported lazily by typer."""
    from hfrisk.training.commands import (
        evaluate_command,
        export_command,
        finetune_command,
        pretrain_command,
        probe_command,
        synthetic_cohort_command,
    )

    app.command("pretrain")(pretrain_command)
    app.command("finetune")(finetune_command)
    app.command("evaluate")(evaluate_command)
    app.command("export")(export_command)
    app.command("synthetic-cohort")(synthetic_cohort_command)
    app.command("probe")(probe_command)

    from hfrisk.stream.worker.command import worker_command

    app.command("worker")(worker_command)

    from hfrisk.dashboards import app as dashboards_app

    app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards as code: write the JSON, push it to a Grafana.")

    from hfrisk.core.pseudonym import app as pseudonym_app

    app.add_typer(pseudonym_app, name="pseudonym", help="Keyed pseudonyms of patient ids (docs/security.md).")


_register_stage_commands()


def main() -> None:  # pragma: no cover - console-script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
