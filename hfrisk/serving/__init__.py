"""Serving the model: the Triton model repository (``model_repository``) and its python backend,
the Triton clients (``client``: async ``RiskClient``, blocking ``SyncRiskClient``, ``RawRiskClient`` of
raw windows; ``shared_memory``: their ``/dev/shm`` regions for a Triton on the same host), the raw-window model that preprocesses where it runs (``raw_windows``: ``<model>_raw``,
``RawWindowModel``, its Triton ``model.py`` in ``raw_backend_model``; docs/serving.md), the blocking
scorers of screening (``scorers``: ``OnnxScorer`` in process, ``SyncTritonScorer`` through Triton).
Importing it loads neither ONNX Runtime nor tritonclient.
"""

from hfrisk.serving.client import (
    InferenceError,
    ModelNotReady,
    RawRiskClient,
    RiskClient,
    ServerNotReady,
    SharedMemoryUnavailable,
    SyncRiskClient,
    TritonClientError,
)
from hfrisk.serving.model_repository import (
    OnnxContractError,
    ServingOptions,
    render_config,
    write_model_repository,
)
from hfrisk.serving.scorers import MODEL_FILENAME, OnnxScorer, SyncTritonScorer, find_model_version

__all__ = [
    "write_model_repository",
    "render_config",
    "ServingOptions",
    "OnnxContractError",
    "RiskClient",
    "RawRiskClient",
    "RawWindowModel",
    "raw_model_name",
    "write_raw_model",
    "SyncRiskClient",
    "TritonClientError",
    "ServerNotReady",
    "ModelNotReady",
    "InferenceError",
    "SharedMemoryUnavailable",
    "OnnxScorer",
    "SyncTritonScorer",
    "find_model_version",
    "MODEL_FILENAME",
]

_RAW_WINDOWS = ("RawWindowModel", "raw_model_name", "write_raw_model")


def __getattr__(name: str):
    # The raw-window names import the front end (a second): only when asked for.
    if name in _RAW_WINDOWS:
        from hfrisk.serving import raw_windows

        return getattr(raw_windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
