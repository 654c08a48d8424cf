"""``hfrisk gateway hl7`` and ``hfrisk gateway fhir``: run one gateway until SIGINT/SIGTERM.

Settings: :class:`~hfrisk.gateway.settings.GatewaySettings` (``HFRISK_GATEWAY__*``; options given
here override them), Kafka, Redis and the pseudonym key from :class:`hfrisk.core.config.Settings`.
Also runnable as ``python -m hfrisk.gateway.command hl7 ...`` (what the integration test starts).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from hfrisk.core.logs import get_logger

__all__ = ["app"]

log = get_logger(__name__)

app = typer.Typer(no_args_is_help=True, help="Gateways into Kafka for hospital feeds (docs/interop.md).")


def _settings(**overrides):
    from hfrisk.gateway.settings import GatewaySettings

    given = {name: value for name, value in overrides.items() if value is not None}
    # Validated again with the overrides: a non-loopback host given here needs TLS too.
    return GatewaySettings(**{**GatewaySettings().model_dump(), **given})


def _intake(gateway, source: str, create_topics: bool):
    from hfrisk.core.config import get_settings
    from hfrisk.gateway.intake import Intake
    from hfrisk.gateway.publisher import KafkaPublisher

    from kafka.errors import KafkaError

    kafka = get_settings().kafka
    try:
        if create_topics:
            from hfrisk.stream.ingest.topics import ensure_topics

            ensure_topics(kafka)
        publisher = KafkaPublisher(kafka, timeout_s=gateway.kafka_timeout_s, client_id=f"hfrisk-gateway-{source}")
    except KafkaError as exc:
        raise typer.BadParameter(f"cannot reach Kafka at {kafka.bootstrap_servers} ({exc}); is it running "
                                 "(hfrisk up), and is HFRISK_KAFKA__BOOTSTRAP_SERVERS right?") from exc
    return Intake(publisher, kafka, chunk_s=gateway.chunk_s, source=source)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


Host = Annotated[Optional[str], typer.Option(help="Address to bind (default loopback; others need TLS).")]
Port = Annotated[Optional[int], typer.Option(help="Port (0: any free port, logged).")]
CreateTopics = Annotated[bool, typer.Option("--create-topics/--no-create-topics", help="Create missing topics first.")]


@app.command("hl7")
def hl7_command(host: Host = None, port: Port = None, create_topics: CreateTopics = True,
                port_file: Annotated[Optional[Path], typer.Option(help="Write the bound port here.")] = None) -> None:
    """An MLLP listener for HL7 v2 ORU^R01 waveform messages: each is ACKed (AA) once on Kafka,
    or NAKed (AE bad content, AR not an ORU / Kafka unavailable) with the reason."""
    from hfrisk.gateway.hl7_mllp import start_hl7_gateway

    gateway = _settings(hl7_host=host, hl7_port=port)
    intake = _intake(gateway, "hl7-mllp", create_topics)

    async def run() -> None:
        server = await start_hl7_gateway(intake, host=gateway.hl7_host, port=gateway.hl7_port,
                                         ssl=gateway.server_ssl_context(), max_message_bytes=gateway.max_message_bytes)
        if port_file is not None:
            port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await _until_stopped()
        log.info("HL7 MLLP gateway stopped")

    try:
        asyncio.run(run())
    finally:
        intake.publisher.close()


@app.command("fhir")
def fhir_command(host: Host = None, port: Port = None, create_topics: CreateTopics = True,
                 card: Annotated[Optional[Path], typer.Option(help="Model card for RiskAssessments (default: the served model's).")] = None,
                 risk_assessments: Annotated[bool, typer.Option("--risk-assessments/--no-risk-assessments",
                                                                help="Serve GET /RiskAssessment from Redis.")] = True) -> None:
    """A FHIR R4 endpoint: POST ECG Observations (or Bundles of them) into Kafka, GET the latest
    RiskAssessment of a patient."""
    import uvicorn

    from hfrisk.core.config import get_settings
    from hfrisk.core.pseudonym import pseudonymiser_from_settings
    from hfrisk.gateway.fhir_app import fhir_app

    settings = get_settings()
    gateway = _settings(fhir_host=host, fhir_port=port)
    read_latest, model_card = None, None
    if risk_assessments:
        from hfrisk.core.security import redis_client
        from hfrisk.model.contract.card import CARD_FILENAME, load_card
        from hfrisk.stream.sinks import SinkReader

        card_path = card or Path(settings.paths.model_repository) / settings.paths.model_name / CARD_FILENAME
        try:
            model_card = load_card(card_path)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"no usable model card at {card_path} ({exc}); give --card, or "
                                     "--no-risk-assessments to take Observations only") from exc
        reader = SinkReader(redis_client(settings.redis), settings.redis.key_prefix)

        def read_latest(patient_key: str) -> dict | None:
            return reader.read_patient(patient_key, trend_points=1).latest

    intake = _intake(gateway, "fhir-http", create_topics)
    asgi = fhir_app(intake, max_message_bytes=gateway.max_message_bytes, token=gateway.bearer_token,
                    default_units=gateway.fhir_default_units, read_latest=read_latest,
                    pseudonymise=pseudonymiser_from_settings(settings.pseudonym), card=model_card)
    try:
        uvicorn.run(asgi, host=gateway.fhir_host, port=gateway.fhir_port, log_level="warning",
                    limit_concurrency=64, **gateway.uvicorn_ssl_options())
    finally:
        intake.publisher.close()


@app.command("risk-assessments")
def risk_assessments_command(
    topic: Annotated[Optional[str], typer.Option(help="Topic to publish on (default HFRISK_GATEWAY__RISK_ASSESSMENT_TOPIC).")] = None,
    card: Annotated[Optional[Path], typer.Option(help="Model card (default: the served model's).")] = None,
) -> None:
    """Republish every scored window of the scores topic as a FHIR R4 RiskAssessment (JSON)."""
    import threading

    from hfrisk.core.config import get_settings
    from hfrisk.gateway.relay import relay_risk_assessments
    from hfrisk.model.contract.card import CARD_FILENAME, load_card

    settings = get_settings()
    gateway = _settings()
    card_path = card or Path(settings.paths.model_repository) / settings.paths.model_name / CARD_FILENAME
    try:
        model_card = load_card(card_path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"no usable model card at {card_path} ({exc}); give --card") from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    relay_risk_assessments(settings.kafka, topic or gateway.risk_assessment_topic, model_card,
                           pseudonymous=settings.pseudonym.enabled, stop=stop)


if __name__ == "__main__":  # pragma: no cover - `python -m hfrisk.gateway.command`
    app()
