"""scripts/gpu_check.sh carries what the GPU check imports and the GPU image lacks: run the check's
code (bench_serving's device rows, on torch's CPU) in a fresh interpreter, list the distributions it
imported, and find each in the image's package list or among the carried wheels."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


# Imported here only because this environment has them: optional imports (structlog's greenlet
# support, pandas' numexpr) and urllib3-future, which provides this environment's urllib3 (the
# image has urllib3 itself) and brings jh2 and brotli.
_ONLY_HERE = {"greenlet", "numexpr", "urllib3-future", "jh2", "brotli"}


def _carried() -> set[str]:
    body = re.search(r"^CARRIED=\((.*?)\)", SCRIPT.read_text(), re.S | re.M).group(1)
    return {canonicalize_name(name) for name in body.split()}


def _image() -> set[str]:
    lines = (ROOT / "scripts" / "gpu-image-packages.txt").read_text().splitlines()
    return {canonicalize_name(line) for line in lines if line.strip() and not line.startswith("#")}


def test_every_carried_wheel_is_a_distribution_of_this_environment():
    """`prepare` pins each to the version installed here."""
    for name in _carried():
        assert metadata.version(name)


def test_what_the_gpu_check_imports_is_in_the_image_or_carried():
    script = """
import json, sys
before = set(sys.modules)
from bench.bench_serving import BUNDLED, device_rows, windows
from hfrisk.model.contract.card import CARD_FILENAME, load_card
card = load_card(BUNDLED.parent.parent / CARD_FILENAME)
ecgs, raw = windows(card)
device_rows(card, BUNDLED, ecgs, raw, [2], 0.01, "cpu")
import importlib.metadata as md
dists = md.packages_distributions()
print(json.dumps(sorted({d for m in set(sys.modules) - before for d in dists.get(m.split(".")[0], [])})))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {canonicalize_name(d) for d in json.loads(run.stdout.strip().splitlines()[-1])}
    assert {"torch", "numpy", "pydantic", "wfdb"} <= imported
    missing = imported - _image() - _carried() - {"hfrisk"} - _ONLY_HERE
    assert not missing, f"add to CARRIED in scripts/gpu_check.sh: {sorted(missing)}"
