"""The stream worker: Kafka chunks in, window results in Redis, scores and alerts out (docs/stream-worker.md).

``StreamWorker`` (pipeline) runs one micro-batch at a time; ``Checkpoints`` decides what is saved and
acknowledged; ``install_agents`` puts the worker in a Faust app (``create_app``); ``worker_command``
is ``hfrisk worker``. The names are imported on first use: ``import hfrisk.stream.worker.command``
must not pay for Faust, Redis or the preprocessing stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StreamWorker": "pipeline",
    "WorkerOptions": "pipeline",
    "Checkpoints": "checkpoints",
    "BufferStore": "buffer_store",
    "ChunkRecord": "records",
    "OutboundMessage": "records",
    "Publisher": "records",
    "BatchReport": "records",
    "BatchAborted": "records",
    "BatchFailed": "records",
    "FaustPublisher": "agents",
    "install_agents": "agents",
    "create_app": "app",
    "StreamMetrics": "metrics",
    "worker_command": "command",
    "load_worker_card": "command",
    "ModelCardMissing": "command",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
