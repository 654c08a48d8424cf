"""``hfrisk worker``: run one stream worker (Kafka chunks -> Triton -> Redis) until stopped.

Registered on the ``hfrisk`` command line as ``worker``; also runnable on its own as
``python -m hfrisk.stream.worker.command [OPTIONS]`` (what the integration tests start and kill).
Every setting is a field of :class:`hfrisk.core.config.StreamSettings` (``HFRISK_STREAM__*``);
an option given on the command line overrides it. Kafka, Redis and Triton come from the other
sections of :class:`~hfrisk.core.config.Settings`.

SIGTERM/SIGINT stop it cleanly; messages processed since the last checkpoint are simply
delivered again to whoever takes the partitions next (docs/stream-worker.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# At module level, not in exit_after_teardown's timer: an import during interpreter shutdown can
# fail ("can't register atexit after shutdown") and leave the stuck process alive.
from hfrisk.core.logs import get_logger

__all__ = ["worker_command", "load_worker_card", "ModelCardMissing", "exit_after_teardown"]

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
        get_logger("hfrisk.worker").error("worker stopped but its process did not exit; leaving now",
                                          seconds=timeout_s, exit_code=code)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)

    timer = threading.Timer(timeout_s, leave)
    timer.daemon = True  # daemon threads keep running while the interpreter waits on the others
    timer.start()


class ModelCardMissing(RuntimeError):
    """No usable model card for the worker: it must not score windows under a contract it guessed."""


def load_worker_card(card_path: Path | None, settings, *, builtin_card: bool = False):
    """The model card: ``card_path``, else the one the Triton repository serves beside the model.

    Raises :class:`ModelCardMissing` when that card is missing or unreadable, unless
    ``builtin_card`` asks for the built-in default card in place of a missing served one
    (plumbing checks only: a served model trained under another card would be fed the wrong input).
    """
    from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card

    served = Path(settings.paths.model_repository) / settings.paths.model_name / CARD_FILENAME
    path = card_path if card_path is not None else served
    if card_path is None and builtin_card and not served.is_file():
        return default_card()
    try:
        return load_card(path)
    except FileNotFoundError as exc:
        hint = "" if card_path is not None else (
            " (export a model into the repository, give --card, or --builtin-card for a plumbing check)"
        )
        raise ModelCardMissing(f"no model card at {path}{hint}") from exc
    except (OSError, ValueError) as exc:  # unreadable, not JSON, or not a card (pydantic's error is a ValueError)
        raise ModelCardMissing(f"model card {path} is unusable: {type(exc).__name__}: {exc}") from exc


def worker_preprocessor(stream, card):
    """The worker's preprocessing pool, as ``stream`` (:class:`~hfrisk.core.config.StreamSettings`) configures it."""
    from hfrisk.stream.scoring.batch import Preprocessor, shared_memory_for_batch

    # A batch of batch_size chunks completes at most that many windows while chunks are shorter
    # than the hop (monitors send 1-s chunks).
    budget_mb, block_bytes = shared_memory_for_batch(card, stream.batch_size, stream.prep_workers, stream.part_windows)
    shared_mb = budget_mb if stream.prep_shared_mb is None else stream.prep_shared_mb
    return Preprocessor(card, workers=stream.prep_workers, shared_mb=shared_mb, block_bytes=block_bytes,
                        part_windows=stream.part_windows, keep_freed_mb=stream.keep_freed_mb)


def _override(settings, **options):
    """``settings`` with the options given on the command line (not None) in its ``stream`` section."""
    given = {name: value for name, value in options.items() if value is not None}
    stream = settings.stream.model_validate(settings.stream.model_dump() | given)
    return settings.model_copy(update={"stream": stream})


def worker_command(
    web_port: Annotated[
        Optional[int], typer.Option(help="Port of Faust's status web server, on 127.0.0.1 [HFRISK_STREAM__WEB_PORT: 6066].")
    ] = None,
    metrics_port: Annotated[
        Optional[int], typer.Option(help="Prometheus /metrics port, 0: off [HFRISK_STREAM__METRICS_PORT: 8003].")
    ] = None,
    metrics_host: Annotated[
        Optional[str], typer.Option(help="Address the metrics endpoint binds to [HFRISK_STREAM__METRICS_HOST: 127.0.0.1].")
    ] = None,
    app_id: Annotated[
        Optional[str],
        typer.Option(help="Faust app id = Kafka consumer group shared by the workers [HFRISK_STREAM__APP_ID: hfrisk-worker]."),
    ] = None,
    prep_workers: Annotated[
        Optional[int],
        typer.Option(min=0, help="Processes running the preprocessing, 0: a thread of the worker "
                     "[HFRISK_STREAM__PREP_WORKERS: 1]."),
    ] = None,
    preprocess_on: Annotated[
        Optional[str],
        typer.Option(help="Where the front end runs: 'worker' (the process pool, then model inputs to Triton) or "
                     "'server' (raw windows to <model>_raw, preprocessed on the model's device; docs/serving.md) "
                     "[HFRISK_STREAM__PREPROCESS_ON: worker]."),
    ] = None,
    card: Annotated[
        Optional[Path],
        typer.Option(help="Model card JSON [HFRISK_STREAM__CARD_PATH; default: the served repository's]."),
    ] = None,
    builtin_card: Annotated[
        Optional[bool],
        typer.Option("--builtin-card/--no-builtin-card",
                     help="With no card served, use the built-in default card instead of stopping "
                     "(plumbing checks only) [HFRISK_STREAM__BUILTIN_CARD: no]."),
    ] = None,
    checkpoint_interval_s: Annotated[
        Optional[float],
        typer.Option(help="Seconds between saving patient buffers to Redis and committing offsets "
                     "[HFRISK_STREAM__CHECKPOINT_INTERVAL_S: 5]."),
    ] = None,
    idle_patient_s: Annotated[
        Optional[float],
        typer.Option(help="Seconds without a chunk after which a patient's saved buffer leaves memory (its next "
                     "chunk restores it); 0: never [HFRISK_STREAM__IDLE_PATIENT_S: 600]."),
    ] = None,
    session_timeout_s: Annotated[
        Optional[float],
        typer.Option(help="Seconds before a vanished worker's partitions move "
                     "[HFRISK_STREAM__SESSION_TIMEOUT_S; default: Faust's 60]."),
    ] = None,
    noop_model: Annotated[
        Optional[bool],
        typer.Option("--noop-model/--no-noop-model",
                     help="Skip Triton: log-risk 0 for every window, benchmarks only [HFRISK_STREAM__NOOP_MODEL: no]."),
    ] = None,
    noop_prep: Annotated[
        Optional[bool],
        typer.Option("--noop-prep/--no-noop-prep",
                     help="Skip preprocessing (no process pool): every window fit, model input all zeros; "
                     "benchmarks only [HFRISK_STREAM__NOOP_PREP: no]."),
    ] = None,
    create_topics: Annotated[
        Optional[bool],
        typer.Option("--create-topics/--no-create-topics",
                     help="Create missing stream topics first [HFRISK_STREAM__CREATE_TOPICS: yes]."),
    ] = None,
    wait_for_triton_s: Annotated[
        Optional[float],
        typer.Option(help="Wait this long for Triton before consuming, 0: start at once; batches wait anyway "
                     "[HFRISK_STREAM__WAIT_FOR_TRITON_S: 0]."),
    ] = None,
    retry_max_s: Annotated[
        Optional[float],
        typer.Option(help="Longest wait between retries while Triton, Redis or Kafka is unreachable: a batch "
                     "resumes at most this long after the server is back [HFRISK_STREAM__RETRY_MAX_S: 2]."),
    ] = None,
) -> None:
    """Consume ECG chunks, score 10-s windows on Triton, write results to Redis, alerts to Kafka."""
    import asyncio

    import faust
    from pydantic import ValidationError

    from hfrisk.core.config import get_settings
    from hfrisk.serving.client import RawRiskClient, RiskClient, SharedMemoryUnavailable, TritonClientError
    from hfrisk.core.retries import Backoff
    from hfrisk.stream.ingest.topics import ensure_topics
    from hfrisk.stream.scoring.batch import AsyncTritonScorer, NoopPreprocessor, NoopScorer
    from hfrisk.stream.scoring.on_server import ServerSideScorer
    from hfrisk.stream.worker.agents import FaustPublisher, install_agents
    from hfrisk.core.allocator import keep_freed_memory
    from hfrisk.core.collector import tune_collector
    from hfrisk.stream.worker.app import create_app
    from hfrisk.stream.worker.metrics import StreamMetrics
    from hfrisk.stream.worker.pipeline import StreamWorker, WorkerOptions

    log = get_logger("hfrisk.worker")
    try:
        settings = _override(
            get_settings(), web_port=web_port, metrics_port=metrics_port, metrics_host=metrics_host, app_id=app_id,
            prep_workers=prep_workers, preprocess_on=preprocess_on, card_path=card, builtin_card=builtin_card,
            checkpoint_interval_s=checkpoint_interval_s, idle_patient_s=idle_patient_s,
            session_timeout_s=session_timeout_s, noop_model=noop_model,
            noop_prep=noop_prep, create_topics=create_topics, wait_for_triton_s=wait_for_triton_s, retry_max_s=retry_max_s,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stream = settings.stream
    keep_freed_memory(stream.keep_freed_mb)
    try:
        model_card = load_worker_card(stream.card_path, settings, builtin_card=stream.builtin_card)
    except ModelCardMissing as exc:
        typer.echo(f"hfrisk worker: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if stream.create_topics:
        ensure_topics(settings.kafka)

    # --noop-prep sends the (all-zero) model inputs to the network itself: there is nothing for
    # the server to preprocess.
    on_server = stream.preprocess_on == "server" and not stream.noop_prep
    if on_server and not stream.noop_model and "server" not in model_card.serving.preprocess_on:
        typer.echo(f"hfrisk worker: the model card ({model_card.name} {model_card.version}) does not declare "
                   "server-side preprocessing (serving.preprocess_on); re-export the model with hfrisk export, "
                   "which writes the raw-window model and declares it, or use HFRISK_STREAM__PREPROCESS_ON=worker",
                   err=True)
        raise typer.Exit(code=2)
    metrics = StreamMetrics()
    options = WorkerOptions.from_settings(settings)
    if stream.noop_prep:
        log.warning("--noop-prep: windows are NOT preprocessed (every window fit, model input all zeros, "
                    "no process pool); benchmarks only", preprocess_on_ignored=stream.preprocess_on == "server")
    if stream.noop_model:
        log.warning("--noop-model: windows are NOT scored by the model (log-risk 0); benchmarks only")
        scorer = NoopScorer(model_card, on_latency=metrics.triton_latency.observe)
    else:
        client_type = RawRiskClient if on_server else RiskClient
        client = client_type.from_settings(settings, card=model_card)
        backoff = Backoff(first_s=0.2, max_s=stream.retry_max_s)
        if on_server:  # raw windows to <model>_raw: no preprocessing pool here
            scorer = ServerSideScorer(client, model_card, base_model=settings.paths.model_name, backoff=backoff,
                                      on_latency=metrics.triton_latency.observe)
        else:
            scorer = AsyncTritonScorer(client, backoff=backoff, on_latency=metrics.triton_latency.observe)
        if stream.wait_for_triton_s > 0:
            async def wait() -> None:
                async with client_type.from_settings(settings, card=model_card) as probe:
                    await probe.wait_ready(timeout_s=stream.wait_for_triton_s)

            try:
                asyncio.run(wait())
            except SharedMemoryUnavailable as exc:  # a misconfiguration: every batch would wait forever
                typer.echo(f"hfrisk worker: {exc}", err=True)
                raise typer.Exit(code=2) from exc
            except TritonClientError as exc:
                log.warning("triton not ready yet; batches will wait for it", error=str(exc))

    # Before the event loop and any gRPC thread exist: the pool's processes start clean.
    preprocessor = None
    if stream.noop_prep:
        preprocessor = NoopPreprocessor(model_card)
    elif stream.noop_model or not on_server:
        preprocessor = worker_preprocessor(stream, model_card)
        preprocessor.warm_up()
    app = create_app(settings, app_id=stream.app_id, web_port=stream.web_port,
                     session_timeout_s=stream.session_timeout_s)
    worker = StreamWorker.from_settings(
        settings, card=model_card, preprocessor=preprocessor, scorer=scorer,
        publisher=FaustPublisher(app, settings.kafka), metrics=metrics, options=options,
    )
    install_agents(app, worker, settings)
    if stream.metrics_port:
        metrics.serve(stream.metrics_port, stream.metrics_host)
    log.info(
        "worker starting", app_id=stream.app_id, bootstrap=settings.kafka.bootstrap_servers,
        topic=settings.kafka.ecg_topic, redis=settings.redis.url,
        triton=None if stream.noop_model else settings.triton.grpc_url,
        triton_shared_memory=None if stream.noop_model else settings.triton.shared_memory, metrics_port=stream.metrics_port,
        batch_size=stream.batch_size, prep_workers=preprocessor.workers if preprocessor else 0,
        preprocess_on="noop" if stream.noop_prep else "worker" if preprocessor else "server", model=model_card.name,
    )
    # Last before Faust starts: everything made so far lives as long as the worker.
    tune_collector(freeze=stream.gc_freeze, young_threshold=stream.gc_young_threshold)
    try:
        # Faust's own DEBUG output is a flood; hfrisk's DEBUG (per-batch timings) keeps Faust at INFO.
        faust_level = "info" if settings.log.level.upper() == "DEBUG" else settings.log.level.lower()
        faust.Worker(app, loglevel=faust_level, quiet=True, redirect_stdouts=False).execute_from_commandline()
    finally:
        exit_after_teardown(EXIT_TEARDOWN_S)
        metrics.close()
        if preprocessor is not None:
            preprocessor.close()


def main() -> None:
    from hfrisk.core.config import get_settings
    from hfrisk.core.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log.level, settings.log.json_logs)
    typer.run(worker_command)


if __name__ == "__main__":
    main()
