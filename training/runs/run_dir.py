"""A training run's folder: everything needed to inspect, resume or reuse the run, in one place.

::

    <run>/
        config.json        the run's configuration (what ``--resume`` reads back)
        model_card.json    the input contract the weights were trained under
        metrics.jsonl      one JSON object per epoch
        last.pt            the latest epoch, with optimiser and RNG states (resume starts here)
        best.pt            the epoch with the best validation score so far
        checkpoints/       periodic snapshots, ``epoch-0050.pt`` ...

>>> run = RunDir("runs/pretrain-demo")                         # doctest: +SKIP
>>> run.write_config({"lr": 1e-3}); run.append_metrics({"epoch": 1, "loss": 0.9})  # doctest: +SKIP
>>> run.read_metrics()                                          # doctest: +SKIP
[{'epoch': 1, 'loss': 0.9}]
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["RunDir"]


def _json_safe(value: Any) -> Any:
    # NaN/inf are not JSON; null keeps metrics.jsonl readable by every JSON parser.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """The files of one run under ``path`` (created, with ``checkpoints/``, on construction)."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    CHECKPOINTS = "checkpoints"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    def snapshot(self, epoch: int) -> Path:
        """Path of the periodic snapshot of ``epoch`` (1-based)."""
        return self.checkpoints / f"epoch-{epoch:04d}.pt"

    def write_config(self, config: dict[str, Any]) -> Path:
        _write_atomic(self.config_path, json.dumps(_json_safe(config), indent=2, sort_keys=True) + "\n")
        return self.config_path

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_json_safe(row)) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop rows after ``last_epoch``: a resumed run rewrites epochs its checkpoint did not reach."""
        rows = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= last_epoch]
        _write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
