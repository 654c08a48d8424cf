"""Serving the model: the Triton model repository and its python backend, the Triton clients and the in-process scorers."""

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
]
