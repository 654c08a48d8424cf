"""Where the reference datasets live: ``../shared/data/ecg`` beside the checkout (its README describes
every folder), or the folder named by ``HFRISK_REFERENCE_DATA``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root"]

_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ecg"


def data_root() -> Path:
    """The reference data folder; raises ``SystemExit`` with a hint when it is missing."""
    root = Path(os.environ.get("HFRISK_REFERENCE_DATA", _DEFAULT))
    if not root.is_dir():
        raise SystemExit(f"reference data not found at {root}; set HFRISK_REFERENCE_DATA to ../shared/data/ecg")
    return root
