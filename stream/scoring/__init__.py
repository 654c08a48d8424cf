"""Scoring micro-batches of windows: ``prepare`` in worker processes, one model call per batch.

``score_windows`` is what the stream worker calls; ``AsyncTritonScorer`` waits out Triton outages,
``NoopScorer`` and ``NoopPreprocessor`` stand in for the model and the front end in benchmarks, and anything with ``infer``/``close`` is an
``AsyncScorer``. ``ServerSideScorer`` sends raw windows to the model's server, which preprocesses them
(``HFRISK_STREAM__PREPROCESS_ON=server``, docs/serving.md). (The blocking scorers of screening are in :mod:`hfrisk.serving.scorers`.)
"""

from hfrisk.stream.scoring.batch import (
    AsyncScorer,
    AsyncTritonScorer,
    InferenceRejected,
    NoopPreprocessor,
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
    "NoopPreprocessor",
    "InferenceRejected",
    "PrepareFailure",
    "WindowScore",
    "ServerSideScorer",
    "conform_window",
]
