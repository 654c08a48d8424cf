"""PhysioNet/CinC Challenge 2021 sample (51 records): 12-lead 500-Hz ECGs from CPSC 2018 (``A``),
Georgia (``E``) and PTB-XL (``HR``), some longer than 10 s."""

from __future__ import annotations

from pathlib import Path

from bench.references.root import data_root

__all__ = ["records"]


def records() -> list[Path]:
    """Record paths (without extension), sorted by name."""
    return [p.with_suffix("") for p in sorted((data_root() / "cinc2021").glob("*.hea"))]
