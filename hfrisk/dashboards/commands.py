"""``hfrisk dashboards write|push`` (registered by hfrisk.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hfrisk.dashboards.files import write_dashboards
from hfrisk.dashboards.upload import push_dashboards

__all__ = ["app"]

app = typer.Typer(help="Grafana dashboards: regenerate the committed JSON, or push it to a Grafana.",
                  no_args_is_help=True)


@app.command("write")
def write_command(
    out_dir: Annotated[Path, typer.Option(help="Folder to write ward.json, operations.json and provisioning/ into.")]
    = Path("dashboards"),
) -> None:
    """Regenerate the dashboard JSON and provisioning YAML (commit the result)."""
    for path in write_dashboards(out_dir):
        typer.echo(f"wrote {path}")


@app.command("push")
def push_command(
    url: Annotated[str, typer.Option(envvar="GRAFANA_URL", help="Grafana base URL.")] = "http://127.0.0.1:3000",
    token: Annotated[Optional[str], typer.Option(envvar="GRAFANA_TOKEN", help="Service-account token (preferred).")] = None,
    user: Annotated[str, typer.Option(envvar="GRAFANA_USER", help="Basic-auth user when no token is given.")] = "admin",
    password: Annotated[Optional[str], typer.Option(envvar="GRAFANA_PASSWORD", help="Basic-auth password.")] = None,
    folder: Annotated[str, typer.Option(help="Folder to put the dashboards in (created if missing).")] = "hfrisk",
) -> None:
    """Upload both dashboards to a running Grafana, overwriting earlier versions."""
    if token is None and password is None:
        typer.echo("give GRAFANA_TOKEN (or --token), or GRAFANA_PASSWORD for basic auth", err=True)
        raise typer.Exit(code=2)
    auth: str | tuple[str, str] = token if token is not None else (user, password or "")
    for answer in push_dashboards(url, auth, folder):
        typer.echo(f"pushed {answer.get('uid')} -> {answer.get('url')} (version {answer.get('version')})")
