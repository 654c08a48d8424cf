"""The ``hfrisk`` console script: one typer app; each command lives in the module of its stage.

``hfrisk COMMAND --help`` documents each command.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hfrisk.core.config import get_settings
from hfrisk.core.logs import configure_logging

__all__ = ["app", "main"]

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


def _register_commands() -> None:
    """Every subcommand: the CLI's own modules, then the commands that live with their stage."""
    from hfrisk.cli import pseudonym, records, screening, stack
    from hfrisk.dashboards import app as dashboards_app
    from hfrisk.gateway.command import app as gateway_app
    from hfrisk.stream.worker.command import worker_command
    from hfrisk.training.commands import (
        evaluate_command,
        export_command,
        finetune_command,
        pretrain_command,
        probe_command,
        risk_scale_command,
        synthetic_cohort_command,
    )

    for module in (records, screening, stack):
        module.register(app)
    app.command("pretrain")(pretrain_command)
    app.command("finetune")(finetune_command)
    app.command("evaluate")(evaluate_command)
    app.command("export")(export_command)
    app.command("risk-scale")(risk_scale_command)
    app.command("synthetic-cohort")(synthetic_cohort_command)
    app.command("probe")(probe_command)
    app.command("worker")(worker_command)
    app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards as code: write the JSON, push it to a Grafana.")
    app.add_typer(pseudonym.app, name="pseudonym", help="Keyed pseudonyms of patient ids (docs/security.md).")
    app.add_typer(gateway_app, name="gateway", help="HL7 v2 (MLLP) and FHIR R4 gateways into Kafka (docs/interop.md).")


_register_commands()


def main() -> None:  # pragma: no cover - console-script shim
    app()
