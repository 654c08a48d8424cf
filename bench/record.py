"""What every benchmark records beside its figures: the command that reproduces the run, the
machine and its load around it, and the JSON + Markdown pair it writes (``docs/bench/<stem>.*``)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


# Settings whose values must not reach a committed result (docs/security.md).
_SECRET_WORDS = ("PASSWORD", "SECRET", "KEY", "TOKEN", "CREDENTIAL")


def command_line(module: str, argv: list[str] | None) -> str:
    """``[HFRISK_…=… ].venv/bin/python -m bench.<module> <arguments>``, quoted for a shell; ``argv``
    ``None``: this process's own arguments. The ``HFRISK_`` settings of this process's environment
    come first, since the workers a benchmark starts inherit them, and the ``BENCH_`` switches of the
    benchmarks themselves (secrets are left out)."""
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items())
                if k.startswith(("HFRISK_", "BENCH_")) and not any(word in k.upper() for word in _SECRET_WORDS)]
    return shlex.join([*settings, ".venv/bin/python", "-m", f"bench.{module}",
                       *(sys.argv[1:] if argv is None else argv)])


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages: the machine is shared, so every result says how busy it was."""
    return [round(v, 2) for v in os.getloadavg()]


def machine(load_before: list[float]) -> dict:
    """CPUs, processor, and the load averages taken before the run and now."""
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_before": load_before,
        "load_after": load_average(),
    }


def save(out: Path, stem: str, result: dict, markdown: str) -> None:
    """``<out>/<stem>.json`` (the figures) and ``<out>/<stem>.md`` (the report)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)


def write_marked_block(path: Path, block: str, begin: str, end: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` with ``block`` (which carries the
    markers), or append it when the file has none: a generator rewrites only its own part of a page
    that also holds hand-written text."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


@contextmanager
def work_dir(name: str) -> Iterator[Path]:
    """A fresh temporary folder for a run's servers and files, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"hfrisk-bench-{name}-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
