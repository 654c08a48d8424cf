"""Another commit's code beside the checkout, for benchmarks that run a baseline in the same run.

``extract(rev, into)`` writes the commit's packages (``git archive``); ``use_tree(tree)`` makes
this process import ``hfrisk`` from there instead of the editable checkout (call it before anything
imports ``hfrisk``). Run one of its modules in a process of its own::

    python -m bench.trees <tree> hfrisk.stream.worker.command --app-id ...
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "child_json", "extract", "git", "use_tree"]

ROOT = Path(__file__).resolve().parents[1]


def use_tree(tree: str | Path) -> None:
    """Import hfrisk from ``tree`` (an extracted commit) instead of the editable checkout."""
    import __editable___hfrisk_0_1_0_finder as finder  # the .pth finder of `pip install -e`

    if any(name == "hfrisk" or name.startswith("hfrisk.") for name in sys.modules):
        raise RuntimeError("use_tree must come before anything imports hfrisk")
    for package, folder in (("hfrisk", "hfrisk"), ("hfrisk.model", "model"), ("hfrisk.stream", "stream"),
                            ("hfrisk.training", "training")):
        finder.MAPPING[package] = str(Path(tree) / folder)
    # `python -m` puts the working directory first on sys.path, and from the checkout's root that
    # found the checkout's hfrisk/ before the mapping above: hfrisk's own modules (screening, core,
    # serving, cli) were the checkout's, beside the tree's model/, stream/ and training/. The tree
    # goes first instead (it holds no bench/, which still comes from the checkout).
    sys.path.insert(0, str(Path(tree)))


def extract(rev: str, into: Path) -> Path:
    """The packages of commit ``rev`` under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hfrisk", "model", "stream", "training"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def git(*args: str) -> str:
    """``git <args>`` in the repository, its output stripped (a benchmark names the commits it ran)."""
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def child_json(module: str, args: list[str]) -> dict:
    """``python -m <module> <args>`` from the repository root in a process of its own (a benchmark's
    child: a fresh interpreter, or another tree's code); what it printed last, parsed as JSON. A
    child that fails raises with the end of its stderr."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    tree, module, *rest = sys.argv[1:]
    use_tree(tree)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
