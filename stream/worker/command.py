"""``hfrisk worker``: run one stream worker (Kafka chunks -> Triton -> Redis) until stopped.

Registered on the ``hfrisk`` command line as ``worker``; also runnable on its own as
``python -m hfrisk.stream.worker.command [OPTIONS]`` (what the integration tests start and kill).
Everything not given as an option comes from :class:`hfrisk.core.config.Settings` (``HFRISK_*``
environment variables): Kafka, Redis and Triton addresses, topics, hop, batch size and timeout,
alert thresholds, metrics port.

SIGTERM/SIGINT stop it cleanly; messages processed since the last checkpoint are simply
delivered again to whoever takes the partitions next (see :mod:`hfrisk.stream.worker.pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["worker_command", "load_worker_card", "exit_after_teardown"]

# Once Faust has stopped (offsets committed, buffers saved), how long the rest of the process's
# teardown (metrics server, preprocessing pool, library threads at interpreter exit) may take.
EXIT_TEARDOWN_S = 10.0


def exit_after_teardown(timeout_s: float) -> None:
    """Make sure the process ends within ``timeout_s`` from now, with the exit status it is ending with.

    Called when the Faust worker has returned: everything that matters is committed or will be
    redelivered, so a process still alive after ``timeout_s`` is only stuck in some library's
    teardown (a gRPC poller thread joined at interpreter exit, for one). A supervisor would have
    to SIGKILL it, and a rolling restart would wait for that; instead the Python stacks are dumped
    to stderr (for the bug report) and the process leaves at once.
    """
    import faulthandler
    import os
    import sys
    import threading

    exc = sys.exc_info()[1]
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0 if exc is None else 1

    def leave() -> None:
        from hfrisk.core.logs import get_logger

        get_logger("hfrisk.worker").error("worker stopped but its process did not exit; leaving now",
                                          seconds=timeout_s, exit_code=code)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)

    timer = threading.Timer(timeout_s, leave)
    timer.daemon = True  # daemon threads keep running while the interpreter waits on the others
    timer.start()


def load_worker_card(card_path: Path | None, settings):
    """The model card: ``card_path``, else the one the Triton repository serves, else the default."""
    from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card

    if card_path is not None:
        return load_card(card_path)
    served = Path(settings.paths.model_repository) / settings.paths.model_name / CARD_FILENAME
    return load_card(served) if served.is_file() else default_card()


def worker_command(
    web_port: Annotated[int, typer.Option(help="Port of Faust's status web server (bound to 127.0.0.1).")] = 6066,
    metrics_port: Annotated[
        Optional[int], typer.Option(help="Prometheus /metrics port (default HFRISK_STREAM__METRICS_PORT; 0: off).")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics endpoint binds to.")] = "127.0.0.1",
    app_id: Annotated[
        str, typer.Option(help="Faust app id = Kafka consumer group shared by the workers.")
    ] = "hfrisk-worker",
    prep_workers: Annotated[
        int, typer.Option(help="Processes running the preprocessing (0: a thread of the worker itself).")
    ] = 1,
    card: Annotated[
        Optional[Path], typer.Option(help="Model card JSON (default: the served repository's, else built-in).")
    ] = None,
    checkpoint_interval_s: Annotated[
        float, typer.Option(help="Seconds between saving patient buffers to Redis and committing offsets.")
    ] = 2.0,
    session_timeout_s: Annotated[
        Optional[float], typer.Option(help="Seconds before a vanished worker's partitions move (Faust default 60).")
    ] = None,
    noop_model: Annotated[
        bool, typer.Option("--noop-model", help="Skip Triton: log-risk 0 for every window (benchmarks only).")
    ] = False,
    create_topics: Annotated[
        bool, typer.Option("--create-topics/--no-create-topics", help="Create missing stream topics first.")
    ] = True,
    wait_for_triton_s: Annotated[
        float, typer.Option(help="Wait this long for Triton before consuming (0: start at once; batches wait anyway).")
    ] = 0.0,
    retry_max_s: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Longest wait between retries while Triton, Redis or Kafka is unreachable: a batch resumes "
            "at most this long after the server is back.",
        ),
    ] = 2.0,
) -> None:
    """Consume ECG chunks, score 10-s windows on Triton, write results to Redis, alerts to Kafka."""
    import asyncio

    import faust

    from hfrisk.core.config import get_settings
    from hfrisk.core.logs import get_logger
    from hfrisk.serving.client import RiskClient, TritonClientError
    from hfrisk.stream.worker.app import create_app
    from hfrisk.stream.worker.metrics import StreamMetrics
    from hfrisk.stream.scoring.batch import Backoff, NoopScorer, Preprocessor, TritonScorer
    from hfrisk.stream.ingest.topics import ensure_topics
    from hfrisk.stream.worker.pipeline import FaustPublisher, StreamWorker, WorkerOptions, install_agents

    log = get_logger("hfrisk.worker")
    settings = get_settings()
    model_card = load_worker_card(card, settings)
    if create_topics:
        ensure_topics(settings.kafka)

    metrics = StreamMetrics()
    # Retrying a down server every couple of seconds costs nothing, while a long cap (10 s) was
    # most of the recovery time after a 10-s outage (docs/reliability.md).
    backoff = Backoff(first_s=0.2, max_s=retry_max_s)
    if noop_model:
        log.warning("--noop-model: windows are NOT scored by the model (log-risk 0); benchmarks only")
        scorer = NoopScorer(model_card, on_latency=metrics.triton_latency.observe)
    else:
        client = RiskClient.from_settings(settings, card=model_card)
        scorer = TritonScorer(client, backoff=backoff, on_latency=metrics.triton_latency.observe)
        if wait_for_triton_s > 0:
            async def wait() -> None:
                async with RiskClient.from_settings(settings, card=model_card) as probe:
                    await probe.wait_ready(timeout_s=wait_for_triton_s)

            try:
                asyncio.run(wait())
            except TritonClientError as exc:
                log.warning("triton not ready yet; batches will wait for it", error=str(exc))

    # Before the event loop and any gRPC thread exist: the pool's processes start clean.
    preprocessor = Preprocessor(model_card, workers=prep_workers)
    preprocessor.warm_up()
    app = create_app(settings, app_id=app_id, web_port=web_port, session_timeout_s=session_timeout_s)
    worker = StreamWorker.from_settings(
        settings,
        card=model_card,
        preprocessor=preprocessor,
        scorer=scorer,
        publisher=FaustPublisher(app, settings.kafka),
        metrics=metrics,
        options=WorkerOptions(
            checkpoint_interval_s=checkpoint_interval_s, backoff=backoff,
            max_message_bytes=settings.kafka.max_message_bytes,
            batches_in_flight=settings.stream.batches_in_flight,
        ),
    )
    install_agents(app, worker, settings)
    port = settings.stream.metrics_port if metrics_port is None else metrics_port
    if port:
        metrics.serve(port, metrics_host)
    log.info(
        "worker starting", app_id=app_id, bootstrap=settings.kafka.bootstrap_servers, topic=settings.kafka.ecg_topic,
        redis=settings.redis.url, triton=None if noop_model else settings.triton.grpc_url, metrics_port=port,
        batch_size=settings.stream.batch_size, prep_workers=prep_workers, model=model_card.name,
    )
    try:
        # Faust's own DEBUG output is a flood; hfrisk's DEBUG (per-batch timings) keeps Faust at INFO.
        faust_level = "info" if settings.log.level.upper() == "DEBUG" else settings.log.level.lower()
        faust.Worker(app, loglevel=faust_level, quiet=True, redirect_stdouts=False).execute_from_commandline()
    finally:
        exit_after_teardown(EXIT_TEARDOWN_S)
        metrics.close()
        preprocessor.close()


def main() -> None:
    from hfrisk.core.config import get_settings
    from hfrisk.core.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log.level, settings.log.json_logs)
    typer.run(worker_command)


if __name__ == "__main__":
    main()
