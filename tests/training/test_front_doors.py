"""Each training package's __init__ is its front door: every exported name resolves, and importing stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "hfrisk.training",
    "hfrisk.training.data",
    "hfrisk.training.pretrain",
    "hfrisk.training.finetune",
    "hfrisk.training.evaluation",
    "hfrisk.training.metrics",
    "hfrisk.training.runs",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    package = importlib.import_module(name)
    assert package.__doc__ and package.__all__
    for export in package.__all__:
        assert getattr(package, export) is not None, f"{name}.{export}"
    assert set(package.__all__) <= set(dir(package))


def test_front_doors_and_commands_do_not_import_torch():
    modules = ["hfrisk.training", "hfrisk.training.data", "hfrisk.training.data.ptbxl", "hfrisk.training.pretrain",
               "hfrisk.training.finetune", "hfrisk.training.evaluation", "hfrisk.training.runs.run_dir",
               "hfrisk.training.metrics", "hfrisk.training.commands"]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in ('torch', 'sksurv', 'lifelines') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
