"""Triton python-backend model: the exported network run by ONNX Runtime inside Triton.

:func:`hfrisk.serving.model_repository.write_model_repository` copies this file, unchanged, to
``<repository>/<model>/<version>/model.py``. Triton's python backend imports it there, outside
hfrisk's package, so it depends only on numpy, onnxruntime and ``triton_python_backend_utils``
(and reads the model card as plain JSON rather than through :mod:`hfrisk.model.contract.card`).

What it does for Triton:

* ``initialize`` reads ``model_card.json`` and ``model.onnx`` from the version folder, opens one
  ONNX Runtime session with the providers and intra-op thread count named in config.pbtxt's
  ``parameters``, and refuses to load (an exception, so Triton marks the model UNAVAILABLE with the
  message) when the ONNX graph or the Triton config disagree with the card.
* ``execute`` receives the list of requests Triton's dynamic batcher gathered, checks each one
  (shape, dtype, finite values), runs every valid one in a single ONNX Runtime call and splits the
  outputs back. A bad request gets its own ``TritonError`` (INVALID_ARG) and the others in the
  same batch still get their scores.

Providers: ``CUDAExecutionProvider`` is used when onnxruntime-gpu is installed and sees a GPU
(NVIDIA's Triton container), otherwise ``CPUExecutionProvider`` (the pytriton wheel's server on a
laptop or CI). With ``fallback_to_cpu: "false"`` (the GPU config variant) a missing CUDA provider
fails the load instead of serving silently from the CPU.

The module imports outside Triton too (``triton_python_backend_utils`` missing), so the checks
below are unit-tested directly.
"""

from __future__ import annotations

import json
import os

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported by hfrisk's tests and repository writer, not by Triton
    pb_utils = None

__all__ = [
    "TritonPythonModel",
    "CARD_FILENAME",
    "card_contract",
    "contract_mismatches",
    "config_mismatches",
    "batch_problem",
    "choose_providers",
    "parse_providers",
]

CARD_FILENAME = "model_card.json"
ONNX_FLOAT = "tensor(float)"


def card_contract(card: dict) -> tuple[str, tuple[int, ...], dict[str, tuple[int, ...]]]:
    """``(input name, input dims without batch, {output name: dims without batch})`` of a card.

    >>> card = {"input": {"name": "ecg", "leads": ["I", "II"], "length_samples": 8},
    ...         "outputs": [{"name": "log_risk", "shape": [-1, 1]}]}
    >>> card_contract(card)
    ('ecg', (2, 8), {'log_risk': (1,)})
    """
    spec = card["input"]
    input_dims = (len(spec["leads"]), int(spec["length_samples"]))
    outputs = {out["name"]: tuple(int(d) for d in out["shape"][1:]) for out in card["outputs"]}
    return spec["name"], input_dims, outputs


def _dims_differ(declared: tuple[int, ...], actual) -> bool:
    """True when a fixed dimension of ``actual`` (ONNX: ints, or names/None for symbolic) differs."""
    if len(declared) != len(actual):
        return True
    return any(isinstance(a, int) and d >= 0 and a != d for d, a in zip(declared, actual))


def contract_mismatches(card: dict, onnx_inputs, onnx_outputs) -> list[str]:
    """Every way an ONNX graph's inputs/outputs break the card; empty when they match.

    ``onnx_inputs`` and ``onnx_outputs`` are ``(name, shape, type)`` triples as ONNX Runtime's
    ``session.get_inputs()`` describes them (shape entries: int, or a str/None for symbolic dims).
    The batch dimension must be symbolic: a graph exported for one fixed batch size would fail on
    the first batch the dynamic batcher forms.
    """
    input_name, input_dims, outputs = card_contract(card)
    problems = []
    inputs = {name: (list(shape), kind) for name, shape, kind in onnx_inputs}
    if list(inputs) != [input_name]:
        problems.append(f"ONNX inputs are {sorted(inputs)}, the card declares exactly [{input_name!r}]")
    if input_name in inputs:
        shape, kind = inputs[input_name]
        if _dims_differ((-1, *input_dims), shape):
            problems.append(f"ONNX input {input_name!r} has shape {shape}, the card declares [batch, {input_dims}]")
        elif isinstance(shape[0], int):
            problems.append(f"ONNX input {input_name!r} has a fixed batch dimension {shape[0]}; export it dynamic")
        if kind != ONNX_FLOAT:
            problems.append(f"ONNX input {input_name!r} is {kind}, the card declares float32")
    graph_outputs = {name: (list(shape), kind) for name, shape, kind in onnx_outputs}
    for name, dims in outputs.items():
        if name not in graph_outputs:
            problems.append(f"ONNX graph has no output {name!r} (it has {sorted(graph_outputs)})")
            continue
        shape, kind = graph_outputs[name]
        if _dims_differ((-1, *dims), shape):
            problems.append(f"ONNX output {name!r} has shape {shape}, the card declares [batch, {dims}]")
        if kind != ONNX_FLOAT:
            problems.append(f"ONNX output {name!r} is {kind}, the card declares float32")
    return problems


def config_mismatches(card: dict, model_config: dict) -> list[str]:
    """Every way Triton's model config (as the backend receives it, JSON) differs from the card."""
    input_name, input_dims, outputs = card_contract(card)
    problems = []
    inputs = {i["name"]: i for i in model_config.get("input", [])}
    if list(inputs) != [input_name]:
        problems.append(f"config.pbtxt inputs are {sorted(inputs)}, the card declares [{input_name!r}]")
    elif tuple(int(d) for d in inputs[input_name]["dims"]) != input_dims:
        problems.append(f"config.pbtxt input dims {inputs[input_name]['dims']} != card {list(input_dims)}")
    elif inputs[input_name]["data_type"] != "TYPE_FP32":
        problems.append(f"config.pbtxt input type {inputs[input_name]['data_type']} != TYPE_FP32")
    configured = {o["name"]: tuple(int(d) for d in o["dims"]) for o in model_config.get("output", [])}
    for name, dims in outputs.items():
        if configured.get(name) != dims:
            problems.append(f"config.pbtxt output {name!r} dims {configured.get(name)} != card {dims}")
    return problems


def batch_problem(array: np.ndarray, input_name: str, input_dims: tuple[int, ...]) -> str | None:
    """Why one request's input cannot be scored, or None when it can."""
    if array.dtype != np.float32:
        return f"input {input_name!r} must be float32, got {array.dtype}"
    if array.ndim != 1 + len(input_dims) or tuple(array.shape[1:]) != input_dims:
        return f"input {input_name!r} must have shape [batch, {', '.join(map(str, input_dims))}], got {list(array.shape)}"
    if array.shape[0] == 0:
        return f"input {input_name!r} holds no windows"
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1)))
        return f"input {input_name!r} contains NaN or infinite values (in {bad} of {len(array)} windows)"
    return None


def parse_providers(text: str) -> list[str]:
    """``"CUDAExecutionProvider, CPUExecutionProvider"`` → list, in order of preference."""
    return [p.strip() for p in text.split(",") if p.strip()]


def choose_providers(requested: list[str], available: list[str], fallback_to_cpu: bool = True) -> list[str]:
    """The requested providers this ONNX Runtime build has, CPU last as the fallback.

    >>> choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    chosen = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available and p != "CPUExecutionProvider"]
    if missing and not fallback_to_cpu:
        raise RuntimeError(
            f"execution providers {missing} are not available in this onnxruntime build "
            f"(it has {available}); install onnxruntime-gpu in the serving environment, or set "
            f"parameter fallback_to_cpu to \"true\" to serve from the CPU"
        )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _parameter(model_config: dict, key: str, default: str) -> str:
    return model_config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    """One model instance: an ONNX Runtime session plus the card's contract."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort  # here, not at the top, so the pure helpers import without it

        model_config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        card_path = os.path.join(version_dir, CARD_FILENAME)
        if not os.path.exists(card_path):  # a hand-made repository may keep only the top-level card
            card_path = os.path.join(args["model_repository"], CARD_FILENAME)
        with open(card_path) as f:
            self.card = json.load(f)
        self.input_name, self.input_dims, outputs = card_contract(self.card)
        self.output_names = list(outputs)

        problems = config_mismatches(self.card, model_config)
        if problems:
            raise ValueError(f"{args['model_name']}: config.pbtxt does not match {card_path}: " + "; ".join(problems))

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(model_config, "intra_op_threads", "0"))
        # One graph at a time per instance: parallelism comes from Triton instances, not inter-op threads.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        requested = parse_providers(_parameter(model_config, "providers", "CPUExecutionProvider"))
        fallback = _parameter(model_config, "fallback_to_cpu", "true").lower() == "true"
        providers = choose_providers(requested, ort.get_available_providers(), fallback)
        # A KIND_GPU instance is pinned by Triton to one device; KIND_CPU instances use device 0.
        device_id = int(args.get("model_instance_device_id") or 0)
        provider_options = [{"device_id": device_id} if p == "CUDAExecutionProvider" else {} for p in providers]

        onnx_path = os.path.join(version_dir, _parameter(model_config, "onnx_file", "model.onnx"))
        self.session = ort.InferenceSession(
            onnx_path, sess_options=options, providers=providers, provider_options=provider_options
        )
        self.providers = self.session.get_providers()
        if not fallback and self.providers[0] != requested[0]:
            # ORT drops a provider it cannot initialise (no GPU, missing CUDA libraries) with only a warning.
            raise RuntimeError(f"{requested[0]} failed to initialise (session runs on {self.providers})")

        describe = lambda nodes: [(n.name, n.shape, n.type) for n in nodes]  # noqa: E731
        problems = contract_mismatches(
            self.card, describe(self.session.get_inputs()), describe(self.session.get_outputs())
        )
        if problems:
            raise ValueError(f"{args['model_name']}: {onnx_path} does not match {card_path}: " + "; ".join(problems))
        self._log(
            f"{args['model_name']} v{args['model_version']} ({args.get('model_instance_name')}): "
            f"card {self.card.get('name')} {self.card.get('version')}, providers {self.providers}, "
            f"intra-op threads {options.intra_op_num_threads}"
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        batches, owners = [], []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            array = None if tensor is None else tensor.as_numpy()
            problem = (
                f"request has no input {self.input_name!r}"
                if array is None
                else batch_problem(array, self.input_name, self.input_dims)
            )
            if problem:
                responses[i] = self._error(problem, "INVALID_ARG")
            else:
                batches.append(array)
                owners.append(i)
        if not batches:
            return responses

        batch = batches[0] if len(batches) == 1 else np.concatenate(batches)
        try:
            results = self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:  # the whole run failed: every request in it gets the reason
            for i in owners:
                responses[i] = self._error(f"ONNX Runtime failed on a batch of {len(batch)}: {exc}", "INTERNAL")
            return responses

        start = 0
        for i, part in zip(owners, batches):
            stop = start + len(part)
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop], dtype=np.float32))
                for name, result in zip(self.output_names, results)
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = stop
        return responses

    def finalize(self) -> None:
        self.session = None

    @staticmethod
    def _error(message: str, code: str):
        # TritonError codes arrived in Triton 23.04; older servers only take the message.
        codes = getattr(pb_utils, "TritonError")
        error = (
            pb_utils.TritonError(message, getattr(codes, code))
            if hasattr(codes, code)
            else pb_utils.TritonError(message)
        )
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    @staticmethod
    def _log(message: str) -> None:
        logger = getattr(pb_utils, "Logger", None)
        if logger is not None:
            logger.log_info(message)
        else:
            print(message, flush=True)
