"""PhysioNet/CinC Challenge 2011 set-a (498 of its 998 labelled records): 12-lead 10-s 500-Hz ECGs
recorded with mobile phones, each labelled acceptable or unacceptable for interpretation by
annotators (``RECORDS-acceptable``, ``RECORDS-unacceptable``)."""

from __future__ import annotations

from pathlib import Path

from bench.references.root import data_root

__all__ = ["records"]


def records() -> list[tuple[Path, bool]]:
    """``(record path, acceptable)`` for every labelled record, acceptable ones first."""
    folder = data_root() / "challenge2011-seta"
    out = []
    for label, acceptable in (("acceptable", True), ("unacceptable", False)):
        names = (folder / f"RECORDS-{label}").read_text().split()
        out += [(folder / name, acceptable) for name in names]
    return out
