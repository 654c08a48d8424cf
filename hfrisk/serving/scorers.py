"""Blocking scorers for screening and scripts: ``score(x)`` returns the card's outputs by name.

:class:`OnnxScorer` runs the exported model in this process with ONNX Runtime (screening's
``--in-process``, and the baseline benchmarks compare Triton and the stream against), on the CPU
or, with onnxruntime-gpu, on a GPU (``device``);
:class:`SyncTritonScorer` sends the same batches to a running Triton. The stream worker's
asynchronous scorers are in :mod:`hfrisk.stream.scoring`.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hfrisk.core.config import DEVICE
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, default_card, load_card

__all__ = ["OnnxScorer", "SyncTritonScorer", "DeviceUnavailable", "find_model_version", "onnx_providers",
           "MODEL_FILENAME"]

MODEL_FILENAME = "model.onnx"
CUDA_PROVIDER = "CUDAExecutionProvider"
log = get_logger(__name__)


class DeviceUnavailable(RuntimeError):
    """The network cannot run on the device asked for."""


def onnx_providers(device: str) -> list:
    """ONNX Runtime's providers for ``device``: ``cpu``, ``cuda`` (GPU 0) or ``cuda:N``.

    The CPU provider stays last for a GPU: ONNX Runtime places there only the nodes the CUDA
    provider has no kernel for.

    >>> onnx_providers("cuda:1")
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    """
    match = DEVICE.fullmatch(device)
    if match is None:
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    return [(CUDA_PROVIDER, {"device_id": int(match.group(1) or 0)}), "CPUExecutionProvider"]


def find_model_version(path: str | Path, model_name: str = "hfrisk") -> Path:
    """The folder holding ``model.onnx``: ``path`` itself, a model folder's newest numeric
    version, or that of ``<repository>/<model_name>``."""
    path = Path(path)
    for candidate in (path, path / model_name):
        if (candidate / MODEL_FILENAME).is_file():
            return candidate
        versions = sorted(
            (p for p in candidate.glob("*") if p.name.isdigit() and (p / MODEL_FILENAME).is_file()),
            key=lambda p: int(p.name),
        )
        if versions:
            return versions[-1]
    raise FileNotFoundError(f"no {MODEL_FILENAME} in {path} or its version folders")


class OnnxScorer:
    """Runs an exported hfrisk model; ``score(x)`` returns the card's outputs by name."""

    def __init__(self, onnx_path: str | Path, card: ModelCard, *, threads: int | None = None,
                 replicable: bool = False, optimized: bool = False, memory_arena: bool = True,
                 device: str = "cpu"):
        """``replicable``: also keep the graph as ONNX Runtime optimised it (in a temporary folder,
        removed with this scorer), so that each :meth:`replica` loads it in ~20 ms instead of
        optimising the model again (~100 ms a process here). ``optimized``: ``onnx_path`` is such a
        graph; it is loaded as it is. ``memory_arena``: ONNX Runtime's own pool for its buffers
        (see :meth:`replica`). ``device``: ``cpu``, or ``cuda``/``cuda:N`` for the network on that
        GPU through ONNX Runtime's CUDA provider (onnxruntime-gpu); :class:`DeviceUnavailable` when
        the session cannot run there, never a silent fall back to the CPU."""
        import onnxruntime as ort

        providers = onnx_providers(device)
        on_gpu = device != "cpu"
        if on_gpu and CUDA_PROVIDER not in ort.get_available_providers():
            raise DeviceUnavailable(
                f"device {device!r}: this onnxruntime build ({ort.__version__}) has no {CUDA_PROVIDER} "
                f"(it has {ort.get_available_providers()}); install onnxruntime-gpu in place of onnxruntime, "
                "or score on the CPU"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        self.onnx_path = Path(onnx_path)
        self.card = card
        self.device = device
        self._optimized_copy: Path | None = None
        options.enable_cpu_mem_arena = memory_arena
        if optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif replicable and not on_gpu:  # a graph optimised for the CUDA provider is left to each replica
            folder = Path(tempfile.mkdtemp(prefix="hfrisk-ort-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self._optimized_copy = folder / MODEL_FILENAME
            options.optimized_model_filepath = str(self._optimized_copy)
            # Its warning that the graph is for this machine only: replicas run on this machine.
            options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        if on_gpu and CUDA_PROVIDER not in self.session.get_providers():
            # An onnxruntime-gpu build that cannot load CUDA or cuDNN warns and runs on the CPU.
            raise DeviceUnavailable(
                f"device {device!r}: ONNX Runtime made the session with {self.session.get_providers()} only "
                "(its warnings above say why: usually the CUDA or cuDNN libraries onnxruntime-gpu needs are "
                "missing, or no such GPU)"
            )
        self.output_names = [o.name for o in card.outputs]
        self.untrained = False

    @classmethod
    def from_model_dir(cls, path: str | Path, model_name: str = "hfrisk", **kw) -> "OnnxScorer":
        version_dir = find_model_version(path, model_name)
        card_path = version_dir / CARD_FILENAME
        if not card_path.is_file():
            card_path = version_dir.parent / CARD_FILENAME
        return cls(version_dir / MODEL_FILENAME, load_card(card_path), **kw)

    @classmethod
    def untrained(cls, card: ModelCard | None = None, *, seed: int = 0, **kw) -> "OnnxScorer":
        """A randomly initialised network: for plumbing checks only, its scores mean nothing."""
        import torch

        from hfrisk.model.network.hfrisk_net import HFRiskNet
        from hfrisk.model.network.onnx_export import export_onnx

        card = card or default_card()
        torch.manual_seed(seed)
        net = HFRiskNet.from_card(card).eval()
        folder = Path(tempfile.mkdtemp(prefix="hfrisk-untrained-"))
        scorer = cls(export_onnx(net, folder / MODEL_FILENAME, card), card, **kw)
        scorer.untrained = True
        log.warning("scoring with an UNTRAINED network: scores are meaningless", seed=seed)
        return scorer

    def replica(self) -> Callable[[], "OnnxScorer"]:
        """A picklable maker of this scorer on one thread, for each process of a screening pool:
        scoring where the windows were preprocessed keeps one process per core busy, instead of a
        pool and a scoring process contending for the same cores (docs/bench/screening.md).
        A scorer on a GPU gives replicas on the same GPU: one session per process, so that the
        calling process only writes rows, instead of taking every recording's model input and scoring
        it (its CPU per recording then bounds a GPU host: docs/bench/screening.md).

        A replica has no memory arena: it shares its process with the front end, which keeps what
        it frees for the next chunk (:mod:`hfrisk.core.allocator`), and ONNX Runtime's buffers then
        come from and go back to that heap instead of the arena taking the kept pages as it grows
        (1,700-2,400 page faults a chunk for the next chunks; ~2 % more CPU a batch without it)."""
        return functools.partial(OnnxScorer, self._optimized_copy or self.onnx_path, self.card, threads=1,
                                 optimized=self._optimized_copy is not None, memory_arena=False, device=self.device)

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = self.card.input.shape[1:]
        if x.ndim != 3 or x.shape[1:] != expected:
            raise ValueError(f"model input must be (batch, {expected[0]}, {expected[1]}), got {x.shape}")
        outputs = self.session.run(self.output_names, {self.card.input.name: x})
        return dict(zip(self.output_names, outputs))


class SyncTritonScorer:
    """Scores through a running Triton server (the served model), with :class:`OnnxScorer`'s interface."""

    untrained = False

    def __init__(self, url: str, card: ModelCard, *, model_name: str = "hfrisk", timeout_s: float = 30.0,
                 max_batch: int = 64, ready_timeout_s: float | None = None):
        """Waits up to ``ready_timeout_s`` (default ``timeout_s``) for the server and model."""
        from hfrisk.serving.client import SyncRiskClient

        self.card = card
        self.client = SyncRiskClient(url, model_name, card=card, timeout_s=timeout_s, max_batch=max_batch)
        self.client.wait_ready(timeout_s if ready_timeout_s is None else ready_timeout_s)

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.client.infer(np.ascontiguousarray(x, dtype=np.float32))

    def close(self) -> None:
        self.client.close()
