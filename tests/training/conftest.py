"""Fixtures the training tests share."""

from pathlib import Path

import pytest

from hfrisk.training.data.ptbxl import PTBXL

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"


@pytest.fixture(scope="module")
def ptbxl() -> PTBXL:
    """The PTB-XL subset in tests/data at 500 Hz (ecg_id 1-24)."""
    return PTBXL(PTBXL_ROOT, sampling_rate=500)
