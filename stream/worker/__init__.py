"""The stream worker: Kafka chunks in, window results in Redis, scores and alerts out (docs/stream-worker.md).

``StreamWorker`` (pipeline) scores a micro-batch while the last one is written; ``Checkpoints`` decides what is saved and
acknowledged; ``install_agents`` puts the worker in a Faust app (``create_app``); ``worker_command``
is ``hfrisk worker``. The names are imported on first use: ``import hfrisk.stream.worker.command``
must not pay for Faust, Redis or the preprocessing stack.
"""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
