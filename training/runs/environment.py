"""Where and how reproducibly a run computes: seeding every random source, and choosing the torch device.

Shared by pretraining, fine-tuning and the linear probe, so that "the network as seed 72 builds
it" means the same weights everywhere.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything", "torch_device"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); make cuDNN deterministic (cheap for this model)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def torch_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as torch spells it (``cuda:1``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
