"""Triton model repository, server launcher and client."""

from .client import InferenceError, ModelNotReady, RiskClient, ServerNotReady, SyncRiskClient, TritonClientError
from .model_repository import OnnxContractError, ServingOptions, render_config, write_model_repository
from .triton_server import TritonServer, find_triton

__all__ = [
    "write_model_repository",
    "render_config",
    "ServingOptions",
    "OnnxContractError",
    "TritonServer",
    "find_triton",
    "RiskClient",
    "SyncRiskClient",
    "TritonClientError",
    "ServerNotReady",
    "ModelNotReady",
    "InferenceError",
]
