"""Serving the model: the Triton model repository (``model_repository``) and its python backend,
the Triton clients (``client``: async ``RiskClient``, blocking ``SyncRiskClient``), the blocking
scorers of screening (``scorers``: ``OnnxScorer`` in process, ``SyncTritonScorer`` through Triton)
. Importing it loads neither ONNX Runtime nor tritonclient.
"""

from hfrisk.serving.client import (
    InferenceError,
    ModelNotReady,
    RiskClient,
    ServerNotReady,
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
    "SyncRiskClient",
    "TritonClientError",
    "ServerNotReady",
    "ModelNotReady",
    "InferenceError",
    "OnnxScorer",
    "SyncTritonScorer",
    "find_model_version",
    "MODEL_FILENAME",
]
