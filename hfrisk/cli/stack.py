"""``hfrisk serve``, ``replay``, ``up`` and ``down``: the local servers and a replayed ward."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hfrisk.core.config import get_settings
from hfrisk.core.logs import get_logger

__all__ = ["register"]

log = get_logger(__name__)


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


def replay(
    sources: Annotated[list[Path], typer.Argument(help="WFDB records or folders (PTB-XL folders work) to stream.")],
    beds: Annotated[int, typer.Option(min=1, help="Simulated beds; recordings are dealt out round-robin.")] = 4,
    chunk_s: Annotated[float, typer.Option(help="Seconds of signal per Kafka message.")] = 1.0,
    realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Pace chunks as a live monitor would, or send as fast as possible.")] = True,
    duration_s: Annotated[Optional[float], typer.Option(help="Stop after this many seconds of signal per bed.")] = None,
    max_records: Annotated[Optional[int], typer.Option(help="Stop after this many recordings.")] = None,
    loop: Annotated[bool, typer.Option(help="Start again from the first recording when all are sent.")] = False,
    stagger_s: Annotated[Optional[float], typer.Option(min=0.0, help="Spread the beds' starts over this many seconds (default one chunk); the worker's hop (5 s) spreads their windows as a ward's monitors would be.")] = None,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers; default HFRISK_KAFKA__BOOTSTRAP_SERVERS.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Topic; default HFRISK_KAFKA__ECG_TOPIC.")] = None,
    linger_ms: Annotated[Optional[int], typer.Option(min=0, help="How long the producer holds a chunk for company (Kafka's linger.ms); default HFRISK_KAFKA__REPLAY_LINGER_MS (20).")] = None,
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
        stagger_s=stagger_s, linger_ms=linger_ms,
    )
    typer.echo(stats.summary())


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
    gateway: Annotated[Optional[list[str]], typer.Option(help="Also start this gateway: hl7 (MLLP) or fhir (HTTP); repeatable (docs/interop.md).")] = None,
) -> None:
    """Start the local stack (Kafka, Redis, Triton, workers, Prometheus), replay a ward, show flagged patients."""
    import time

    from rich.console import Console
    from rich.live import Live

    from hfrisk.core.security import redis_client
    from hfrisk.stack.backlog import GroupBacklog
    from hfrisk.stack.local import plain_redis_settings, require_model, start_replay, start_stack, stop_stack
    from hfrisk.stream.sinks.redis_sink import RedisSink
    from hfrisk.stack.ward_view import ward_rows, ward_table

    settings = get_settings()
    console = Console()
    repository = model_repository or settings.paths.model_repository
    require_model(repository, settings.paths.model_name)
    sources = sources or [Path(__file__).resolve().parents[2] / "tests" / "data" / "ecg" / "ptbxl" / "records500"]
    with console.status("starting Redis, Kafka, Triton, workers and Prometheus…"):
        info = start_stack(settings, model_repository=repository, workers=workers)
    if gateway:
        from hfrisk.stack.local import start_gateways

        with console.status(f"starting gateways {', '.join(gateway)}…"):
            try:
                start_gateways(info, gateway, model_repository=repository)
            except BaseException:
                stop_stack(settings)  # as start_stack does: nothing left half-started
                raise
    console.print("stack up: " + ", ".join(f"{k} {v}" for k, v in info.urls.items()))
    console.print(f"point other commands at it with: source {info.folder}/stack.env")
    producer = start_replay(settings, info, sources, beds=beds, realtime=realtime, duration_s=duration_s, loop=loop)
    sink = RedisSink(redis_client(plain_redis_settings(settings, info.urls["redis"])), settings.redis.key_prefix)
    try:
        backlog = GroupBacklog(info.urls["kafka"], settings.kafka.ecg_topic, settings.stream.app_id)
    except Exception as err:  # the view still ends after a quiet quarter minute
        log.debug("could not connect to read the workers' backlog", error=str(err))
        backlog = None
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
                if producer.running() or loop:
                    continue
                # Replay finished and the workers have acknowledged every chunk (each after its
                # windows were written): nothing more will change. Without an answer from Kafka,
                # a quarter minute without a new window says the same.
                if _drained(backlog) or time.monotonic() - last_change > 15:
                    live.update(ward_table(sink))  # the last windows may have landed since the update above
                    break
        flagged = [r["patient_id"] for r in ward_rows(sink, 1000) if r["flagged"]]
        console.print(f"flagged patients: {', '.join(flagged) if flagged else 'none'}")
    except KeyboardInterrupt:
        pass
    finally:
        if backlog is not None:
            backlog.close()
        if foreground:
            stop_stack(settings)
            console.print("stack stopped")
        else:
            console.print("the stack keeps running (Prometheus, Redis, Triton); stop it with: hfrisk down")


def _drained(backlog) -> bool:
    """The workers' group has committed every chunk message (False when Kafka cannot say)."""
    if backlog is None:
        return False
    try:
        return backlog.remaining() == 0
    except Exception as err:  # a broker that does not answer leaves the quiet-period rule
        log.debug("could not read the workers' backlog", error=str(err))
        return False


def down() -> None:
    """Stop everything `hfrisk up` started; leaves nothing running."""
    from hfrisk.stack.local import stop_stack

    stopped = stop_stack(get_settings())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no stack is running")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hfrisk`` app."""
    app.command()(serve)
    app.command()(replay)
    app.command()(up)
    app.command()(down)
