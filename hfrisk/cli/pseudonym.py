"""``hfrisk pseudonym map``: the re-identification table, made on demand and never stored."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hfrisk.core.pseudonym import pseudonym_map, pseudonymiser_from_settings

__all__ = ["app"]


app = typer.Typer(no_args_is_help=True)


@app.command("map")
def map_command(
    patient_ids: Annotated[Optional[list[str]], typer.Argument(help="Patient ids to map.")] = None,
    ids_file: Annotated[Optional[Path], typer.Option(help="A file of patient ids, one per line ('-': stdin).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write the table here (mode 0600) instead of stdout.")] = None,
) -> None:
    """Print 'pseudonym<TAB>patient id' for the given ids: the re-identification table, made on
    demand with the configured key (HFRISK_PSEUDONYM__KEY or __KEY_FILE). Nothing is stored:
    keep the output only where your rules for patient identifiers allow, never in Redis."""
    from hfrisk.core.config import get_settings

    settings = get_settings().pseudonym
    if settings.key is None and settings.key_file is None:
        raise typer.BadParameter("no pseudonym key: set HFRISK_PSEUDONYM__KEY_FILE (or HFRISK_PSEUDONYM__KEY)")
    pseudonymiser = pseudonymiser_from_settings(settings.model_copy(update={"enabled": True}))
    assert pseudonymiser is not None
    ids = list(patient_ids or [])
    if ids_file is not None:
        text = sys.stdin.read() if str(ids_file) == "-" else ids_file.read_text()
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise typer.BadParameter("give patient ids as arguments or with --ids-file")
    table = "".join(f"{alias}\t{pid}\n" for alias, pid in pseudonym_map(pseudonymiser, ids).items())
    if output is None:
        typer.echo(table, nl=False)
    else:
        output.touch(mode=0o600)
        output.write_text(table)
        typer.echo(f"{len(ids)} ids mapped to {output}", err=True)
