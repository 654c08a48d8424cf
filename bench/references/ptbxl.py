"""PTB-XL at 500 Hz, ecg_id 1–500 (``ptbxl/records500``): 12-lead 10-s resting ECGs of one
manufacturer's machines, the dataset the front end was tuned on."""

from __future__ import annotations

from pathlib import Path

from bench.references.root import data_root

__all__ = ["records500"]


def records500() -> list[Path]:
    """Record paths (without extension) in ecg_id order."""
    return [p.with_suffix("") for p in sorted((data_root() / "ptbxl" / "records500").rglob("*_hr.hea"))]
