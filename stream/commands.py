"""``hfrisk worker``: run one stream worker (Kafka chunks -> Triton -> Redis) until stopped.

Registered on the ``hfrisk`` command line as ``worker``; also runnable on its own as
``python -m hfrisk.stream.commands [OPTIONS]`` (what the integration tests start and kill).
Everything not given as an option comes from :class:`hfrisk.config.Settings` (``HFRISK_*``
environment variables): Kafka, Redis and Triton addresses, topics, hop, batch size and timeout,
alert thresholds, metrics port.

SIGTERM/SIGINT stop it cleanly; messages processed since the last checkpoint are simply
delivered again to whoever takes the partitions next (see :mod:`hfrisk.stream.worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["worker_command", "load_worker_card"]


def load_worker_card(card_path: Path | None, settings):
    """The model card: ``card_path``, else the one the Triton repository serves, else the default."""
    from ..model.card import CARD_FILENAME, default_card, load_card

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
) -> None:
    """Consume ECG chunks, score 10-s windows on Triton, write results to Redis, alerts to Kafka."""
    import asyncio

    import faust

    from ..config import get_settings
    from ..logs import get_logger
    from ..serving.client import RiskClient, TritonClientError
    from .app import create_app
    from .metrics import StreamMetrics
    from .scoring_batch import NoopScorer, Preprocessor, TritonScorer
    from .topics import ensure_topics
    from .worker import FaustPublisher, StreamWorker, WorkerOptions, install_agents

    log = get_logger("hfrisk.worker")
    settings = get_settings()
    model_card = load_worker_card(card, settings)
    if create_topics:
        ensure_topics(settings.kafka)

    metrics = StreamMetrics()
    if noop_model:
        log.warning("--noop-model: windows are NOT scored by the model (log-risk 0); benchmarks only")
        scorer = NoopScorer(model_card, on_latency=metrics.triton_latency.observe)
    else:
        client = RiskClient.from_settings(settings, card=model_card)
        scorer = TritonScorer(client, on_latency=metrics.triton_latency.observe)
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
            checkpoint_interval_s=checkpoint_interval_s, max_message_bytes=settings.kafka.max_message_bytes
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
        metrics.close()
        preprocessor.close()


def main() -> None:
    from ..config import get_settings
    from ..logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log.level, settings.log.json_logs)
    typer.run(worker_command)


if __name__ == "__main__":
    main()
