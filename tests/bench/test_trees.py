"""bench.trees: a baseline commit's code is imported whole, not beside the checkout's."""

import subprocess
import sys

from bench.trees import ROOT, extract

PROBE = """
import sys
sys.path.insert(0, "")  # as `python -m` from the repository's root puts it
from bench.trees import use_tree
use_tree(sys.argv[1])
import hfrisk, hfrisk.core.config, hfrisk.model.readers.dispatch, hfrisk.screening, hfrisk.stream, bench.record
for module in (hfrisk, hfrisk.core.config, hfrisk.model.readers.dispatch, hfrisk.screening, hfrisk.stream, bench.record):
    print(module.__file__)
"""


def test_a_tree_supplies_every_hfrisk_module_and_the_checkout_the_benchmarks(tmp_path):
    tree = extract("HEAD", tmp_path / "tree")
    done = subprocess.run([sys.executable, "-c", PROBE, str(tree)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    *hfrisk_files, bench_file = done.stdout.split()
    assert all(path.startswith(str(tree)) for path in hfrisk_files), hfrisk_files
    assert bench_file.startswith(str(ROOT / "bench"))
