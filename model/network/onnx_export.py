"""ONNX export of the serving network, and its parity check against PyTorch on real recordings.

:func:`export_onnx` writes one self-contained ``.onnx`` file whose single input and four outputs
carry the model card's names, in the card's order, with a symbolic batch axis and every other
dimension fixed, so Triton and ONNX Runtime can check the graph against the card.

Exporter choice (torch 2.15): the ``torch.export``-based exporter (``dynamo=True``, via
onnxscript) is used. Both it and the deprecated TorchScript exporter handle
``nn.MultiheadAttention`` with ``need_weights=True`` and agree with PyTorch to ~1e-5, but only
the new one declares the static output dimensions (``[batch, 12]``, ``[batch, 12, 12]``,
``[batch, 12, 19]``); the TorchScript exporter names them ``ReduceMean…_dim_1`` and so hides
shape errors from the card check. The cost is export time (10–15 s of CPU instead of ~1 s).

>>> from hfrisk.model.contract.card import default_card
>>> from hfrisk.model.network.hfrisk_net import HFRiskNet
>>> card = default_card()
>>> path = export_onnx(HFRiskNet.from_card(card), "model.onnx", card)  # doctest: +SKIP
>>> onnx_parity(path, HFRiskNet.from_card(card), recording_inputs(records, card)).check()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hfrisk.model.contract.card import CARD_FILENAME, ModelCard
from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule

__all__ = [
    "export_onnx",
    "onnx_parity",
    "ParityReport",
    "ParityError",
    "recording_inputs",
    "wfdb_record_paths",
    "store_weights_float16",
    "PARITY_ATOL",
]

# Largest absolute difference allowed between ONNX Runtime and PyTorch on any output.
PARITY_ATOL = 1e-4


class ParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def _serving(model: HFRiskNet | ServingModule) -> ServingModule:
    return model if isinstance(model, ServingModule) else ServingModule(model)


def _check_card(serving: ServingModule, card: ModelCard) -> None:
    declared = tuple(o.name for o in card.outputs)
    if declared != ServingModule.OUTPUT_NAMES:
        raise ValueError(
            f"the card declares outputs {list(declared)}, the network produces "
            f"{list(ServingModule.OUTPUT_NAMES)}; they must match in name and order"
        )
    net = serving.net
    if (net.n_leads, net.length_samples) != (len(card.input.leads), card.input.length_samples):
        raise ValueError(
            f"network takes {net.n_leads} leads × {net.length_samples} samples, the card declares "
            f"{len(card.input.leads)} × {card.input.length_samples}"
        )
    n_leads, n_steps = net.n_leads, net.encoder.n_steps
    produced = {
        "log_risk": (1,),
        "lead_attention": (n_leads,),
        "lead_attention_map": (n_leads, n_leads),
        "temporal_attention": (n_leads, n_steps),
    }
    wrong = {o.name: (list(o.shape[1:]), list(produced[o.name])) for o in card.outputs if tuple(o.shape[1:]) != produced[o.name]}
    if wrong:
        raise ValueError(f"the card's output shapes differ from the network's (card, network, batch axis left out): {wrong}")


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    """Eval mode for the duration, then the caller's mode back (export must not change training)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def export_onnx(
    model: HFRiskNet | ServingModule,
    path: str | Path,
    card: ModelCard,
    *,
    opset: int | None = None,
    save_card: bool = True,
) -> Path:
    """Export ``model`` (an :class:`HFRiskNet` is wrapped in :class:`ServingModule`) to ``path``.

    The graph is traced in eval mode (dropout off, BatchNorm on running statistics); the model's
    own mode is restored afterwards. Input ``card.input.name`` ``(batch, leads, length_samples)``,
    outputs named and ordered as ``card.outputs``, batch axis dynamic, weights embedded in the file.
    With ``save_card`` the card is written beside it as ``model_card.json``. Returns ``path``.
    """
    serving = _serving(model)
    _check_card(serving, card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Batch 2, not 1: torch.export specialises size-1 dimensions and would fix the batch axis.
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, len(card.input.leads), card.input.length_samples, generator=generator)
    batch = torch.export.Dim("batch", min=1, max=65536)
    kwargs = {"opset_version": opset} if opset else {}
    with _eval_mode(serving), _quiet_exporter():
        program = torch.onnx.export(
            serving,
            (example,),
            input_names=[card.input.name],
            output_names=[o.name for o in card.outputs],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
            **kwargs,
        )
    program.save(str(path), external_data=False)
    _strip_trace_metadata(path)
    if save_card:
        card.save(path.parent / CARD_FILENAME)
    return path


def _strip_trace_metadata(path: Path) -> None:
    """Drop the exporter's per-node provenance (Python stack traces, FX names): a quarter of the
    file, read by no runtime, and it would leak build paths into the served model."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))


def store_weights_float16(path: str | Path, min_elements: int = 1024) -> int:
    """Store the float32 weights of ``path`` (tensors of ``min_elements`` or more) as float16,
    each followed by a Cast back to float32; rewrites the file, returns the tensors converted.

    Halves the file (the bundled model ships in the repository). Only the stored weights are
    rounded: every computation stays float32, and ONNX Runtime folds the Casts when it loads the
    model, so scoring is as fast as before. Rounding moves the outputs slightly; callers measure by
    how much (:func:`hfrisk.training.export.export_model` records it in the card).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers, casts = [], []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype != np.float32 or values.size < min_elements:
            initializers.append(tensor)
            continue
        stored = numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}__float16")
        initializers.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [tensor.name], to=TensorProto.FLOAT,
                                      name=f"{tensor.name}__to_float32"))
    nodes = casts + list(graph.node)  # a Cast must precede the nodes reading its output
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines and warns about torchvision ops we never use."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute ONNX Runtime − PyTorch difference per output, for one batch."""

    max_abs_diff: dict[str, float]
    batch_size: int
    atol: float = PARITY_ATOL

    @property
    def ok(self) -> bool:
        return all(d <= self.atol for d in self.max_abs_diff.values())

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    def check(self) -> "ParityReport":
        """Raise :class:`ParityError` unless every output is within ``atol``; returns self."""
        if not self.ok:
            bad = {k: v for k, v in self.max_abs_diff.items() if v > self.atol}
            raise ParityError(f"ONNX Runtime differs from PyTorch beyond {self.atol:g} (batch {self.batch_size}): {bad}")
        return self


def onnx_parity(
    onnx_path: str | Path,
    model: HFRiskNet | ServingModule,
    inputs: np.ndarray | torch.Tensor,
    *,
    atol: float = PARITY_ATOL,
    session=None,
) -> ParityReport:
    """Run ``inputs`` ``(batch, leads, T)`` through ONNX Runtime (CPU) and PyTorch (eval, no grad).

    Outputs are matched by name, so a graph that reorders its outputs fails rather than passes.
    ``session`` reuses an open ``onnxruntime.InferenceSession``.
    """
    import onnxruntime as ort

    serving = _serving(model)
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    if session is None:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    onnx_outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: x.numpy()})))
    with _eval_mode(serving), torch.no_grad():
        torch_outputs = dict(zip(ServingModule.OUTPUT_NAMES, serving(x)))
    diffs = {}
    for name, expected in torch_outputs.items():
        got = onnx_outputs.get(name)
        if got is None or got.shape != tuple(expected.shape):
            diffs[name] = float("inf")
        else:
            diffs[name] = float(np.abs(got - expected.numpy()).max())
    return ParityReport(diffs, batch_size=x.shape[0], atol=atol)


def recording_inputs(record_paths: Iterable[str | Path], card: ModelCard) -> np.ndarray:
    """Model inputs ``(n, leads, length_samples)`` from recordings, through the served pipeline.

    Parity is checked on real beats rather than on noise because they drive the attention and
    the BatchNorm statistics into the ranges the model actually serves.
    """
    from hfrisk.model.frontend.preprocessing import prepare
    from hfrisk.model.readers.dispatch import read_ecg

    inputs = [prepare(read_ecg(path), card).x for path in record_paths]
    if not inputs:
        raise ValueError("no records given")
    return np.stack(inputs).astype(np.float32)


def wfdb_record_paths(folder: str | Path, n: int) -> Sequence[Path]:
    """The first ``n`` WFDB records (``*.hea``, sorted) in ``folder``, without extension."""
    heads = sorted(Path(folder).glob("*.hea"))[:n]
    if len(heads) < n:
        raise FileNotFoundError(f"{folder} holds {len(heads)} WFDB records, {n} needed")
    return [h.with_suffix("") for h in heads]

