"""Fixtures the training tests share."""

from pathlib import Path

import pytest

from hfrisk.training.data.ptbxl import PTBXL

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"


@pytest.fixture(scope="module")
def ptbxl() -> PTBXL:
    """The PTB-XL subset in tests/data at 500 Hz (ecg_id 1-24)."""
    return PTBXL(PTBXL_ROOT, sampling_rate=500)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: small networks train no faster on two, and the suite's
    other processes keep the second core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
