"""``hfrisk card`` and ``hfrisk inspect``: the input contract, and what the front end makes of one recording."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


__all__ = ["register"]


def card(
    model_dir: Annotated[Optional[Path], typer.Argument(help="A model folder holding model_card.json; default: the built-in card.")] = None,
) -> None:
    """Print the model card: the input contract and the meaning of every output."""
    from hfrisk.model.contract.card import default_card, load_card

    typer.echo((load_card(model_dir) if model_dir else default_card()).to_json())


def inspect(
    record: Annotated[Path, typer.Argument(help="A WFDB record (with or without extension) or a DICOM ECG.")],
    window_start_s: Annotated[float, typer.Option(help="Start of the 10-s window, seconds into the record.")] = 0.0,
    save: Annotated[Optional[Path], typer.Option(help="Write the model input (12 x 608 float32) to this .npy file.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Draw the window into this PNG: the leads with the detected beats (used and dropped), masked and derived leads, the median beats and the quality reasons.")] = None,
) -> None:
    """Read one recording, run the preprocessing and show its leads, beats and quality (--plot: as a picture)."""
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
        f"{model_input.n_beats_detected} beats detected ({_rate(model_input.heart_rate_bpm)}), "
        f"{model_input.n_beats_used} used for the median beat; quality {q.score:.2f} "
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
    if plot:
        from hfrisk.cli.window_plot import plot_window

        plot_window(ecg, model_input, card, plot, record=str(record))
        console.print(f"picture written to {plot}")


def _rate(bpm: float | None) -> str:
    return "no rate" if bpm is None else f"{bpm:.0f} bpm"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hfrisk`` app."""
    app.command()(card)
    app.command()(inspect)
