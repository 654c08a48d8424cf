"""Scoring micro-batches of windows: ``prepare`` in worker processes, one model call per batch.

``score_windows`` is what the stream worker calls; ``AsyncTritonScorer`` waits out Triton outages,
``NoopScorer`` stands in for the model in benchmarks, and anything with ``infer``/``close`` is an
``AsyncScorer``. ``ServerSideScorer`` sends raw windows to the model's server, which preprocesses them
(``HFRISK_STREAM__PREPROCESS_ON=server``, docs/serving.md). (The blocking scorers of screening are in :mod:`hfrisk.serving.scorers`.)
"""

from hfrisk.stream.scoring.batch import (
    AsyncScorer,
    AsyncTritonScorer,
    InferenceRejected,
    NoopScorer,
    PrepareFailure,
    Preprocessor,
    WindowScore,
    score_windows,
)
from hfrisk.stream.scoring.on_server import ServerSideScorer, conform_window

__all__ = [
    "score_windows",
    "Preprocessor",
    "AsyncScorer",
    "AsyncTritonScorer",
    "NoopScorer",
    "InferenceRejected",
    "PrepareFailure",
    "WindowScore",
    "ServerSideScorer",
    "conform_window",
]
