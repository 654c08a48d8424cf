"""Triton python-backend model ``<model>_raw``: raw windows → front end → network, on the model's device.

:func:`hfrisk.serving.raw_windows.write_raw_model` copies this file, unchanged, to
``<repository>/<model>_raw/1/model.py``. Unlike the base model's ``model.py``, it imports hfrisk:
the front end *is* hfrisk (:class:`hfrisk.serving.raw_windows.RawWindowModel` does the work), so the
python backend's stub must find the package. The pytriton wheel's server runs the stub with this
environment's ``python3`` (``hfrisk.stack.triton_server`` puts it first on ``PATH``), whose
site-packages hold hfrisk; in NVIDIA's container, install hfrisk into the container's ``python3``
(docs/serving.md). A stub that cannot import it fails the load with that instruction.

``initialize`` reads the base model's ``model.onnx`` and card from its sibling folder
(``parameters.base_model``, newest version), checks this config against the card, and places the
front end: ``device: "auto"`` is the instance's GPU when torch sees one, else the CPU; ``"cuda"``
(the GPU configuration) requires one. ``execute`` scores every request the dynamic batcher gathered
in one front-end call and one ONNX Runtime call; a malformed request gets its own error.
"""

from __future__ import annotations

import json
import os

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported by hfrisk's tests and repository writer, not by Triton
    pb_utils = None

__all__ = ["TritonPythonModel", "choose_device", "request_problem"]


def _parameter(model_config: dict, key: str, default: str) -> str:
    return model_config.get("parameters", {}).get(key, {}).get("string_value", default)


def choose_device(requested: str, instance_kind: str, device_id: int, cuda_available: bool, fallback: bool) -> str:
    """torch device for the front end.

    >>> choose_device("auto", "KIND_GPU", 1, True, True)
    'cuda:1'
    >>> choose_device("auto", "KIND_CPU", 0, False, True)
    'cpu'
    """
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda") or requested == "auto":
        if cuda_available:
            if requested == "auto" or requested == "cuda":
                return f"cuda:{device_id if instance_kind == 'KIND_GPU' else 0}"
            return requested
        if requested != "auto" and not fallback:
            raise RuntimeError(f"device {requested!r} asked for but torch sees no GPU (fallback_to_cpu is false)")
        return "cpu"
    raise ValueError(f"unknown device {requested!r}: auto, cpu, cuda or cuda:<n>")


def request_problem(samples, present, fs_hz, n_leads: int) -> str | None:
    """Why a request cannot be taken as a batch of raw windows, or None."""
    if samples is None or present is None or fs_hz is None:
        return "a request needs the inputs ecg_raw, lead_present and fs_hz"
    if samples.dtype != np.float32 or samples.ndim != 3 or samples.shape[1] != n_leads:
        return f"ecg_raw must be float32 [batch, {n_leads}, samples], got {samples.dtype} {list(samples.shape)}"
    b = samples.shape[0]
    if present.shape != (b, n_leads) or fs_hz.reshape(-1).shape != (b,):
        return (f"lead_present must be [batch, {n_leads}] and fs_hz [batch, 1] for {b} windows, got "
                f"{list(present.shape)} and {list(fs_hz.shape)}")
    return None


class TritonPythonModel:
    """One model instance: a :class:`hfrisk.serving.raw_windows.RawWindowModel`."""

    def initialize(self, args: dict) -> None:
        try:
            import torch

            from hfrisk.model.contract.card import load_card
            from hfrisk.model.frontend.arrays import ArrayBackend
            from hfrisk.serving.backend_model import choose_providers, parse_providers
            from hfrisk.serving.raw_windows import RawWindowModel, base_model_files, raw_inputs, raw_outputs
        except ImportError as exc:
            raise RuntimeError(
                f"{args['model_name']} runs hfrisk's front end inside Triton and cannot import it ({exc}); install "
                "hfrisk (and torch) into the python3 the backend stub runs (docs/serving.md)"
            ) from exc
        import onnxruntime as ort

        model_config = json.loads(args["model_config"])
        base = _parameter(model_config, "base_model", "hfrisk")
        onnx_path, card_path = base_model_files(args["model_repository"], base)
        card = load_card(card_path)
        problems = _config_problems(model_config, [s.__dict__ for s in raw_inputs(card)],
                                    [s.__dict__ for s in raw_outputs(card)])
        if problems:
            raise ValueError(f"{args['model_name']}: config.pbtxt does not match {card_path}: " + "; ".join(problems))

        fallback = _parameter(model_config, "fallback_to_cpu", "true").lower() == "true"
        kind = args.get("model_instance_kind", "KIND_CPU")
        device_id = int(args.get("model_instance_device_id") or 0)
        device = choose_device(_parameter(model_config, "device", "auto"), kind, device_id,
                               torch.cuda.is_available(), fallback)
        threads = int(_parameter(model_config, "torch_threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        requested = parse_providers(_parameter(model_config, "providers", "CPUExecutionProvider"))
        if device == "cpu":
            requested = [p for p in requested if p != "CUDAExecutionProvider"] or ["CPUExecutionProvider"]
        providers = choose_providers(requested, ort.get_available_providers(), fallback)
        gpu_index = int(device.split(":")[1]) if device.startswith("cuda:") else device_id
        provider_options = [{"device_id": gpu_index} if p == "CUDAExecutionProvider" else {} for p in providers]
        self.n_leads = len(card.input.leads)
        self.model = RawWindowModel(
            card, onnx_path,
            backend=ArrayBackend(_parameter(model_config, "array_backend", "torch"), device),
            providers=providers, provider_options=provider_options,
            intra_op_threads=int(_parameter(model_config, "intra_op_threads", "0")),
            batch_size=int(_parameter(model_config, "frontend_batch_size", "32")),
        )
        if not fallback and self.model.providers[0] != requested[0]:
            raise RuntimeError(f"{requested[0]} failed to initialise (session runs on {self.model.providers})")
        self.model.warm_up()
        self.output_types = {o["name"]: o["data_type"] for o in model_config.get("output", [])}
        _log(f"{args['model_name']} ({args.get('model_instance_name')}): card {card.name} {card.version} from "
             f"{os.path.dirname(onnx_path)}, front end on {self.model.backend.name}:{device}, "
             f"network on {self.model.providers}")

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, owners = [], []
        for i, request in enumerate(requests):
            arrays = [pb_utils.get_input_tensor_by_name(request, name) for name in ("ecg_raw", "lead_present", "fs_hz")]
            samples, present, fs_hz = (None if t is None else t.as_numpy() for t in arrays)
            problem = request_problem(samples, present, fs_hz, self.n_leads)
            if problem:
                responses[i] = _error(problem, "INVALID_ARG")
            else:
                batch.append((samples, present, fs_hz))
                owners.append(i)
        if not batch:
            return responses
        try:
            parts = self.model.score_requests(batch)
        except Exception as exc:  # the whole call failed: every request in it gets the reason
            for i in owners:
                responses[i] = _error(f"raw-window scoring failed on {len(batch)} requests: {exc}", "INTERNAL")
            return responses
        for i, outputs in zip(owners, parts):
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, value if value.dtype == object else np.ascontiguousarray(value))
                for name, value in outputs.items()
            ])
        return responses

    def finalize(self) -> None:
        self.model = None


def _config_problems(model_config: dict, inputs: list[dict], outputs: list[dict]) -> list[str]:
    problems = []
    for role, declared, wanted in (("input", model_config.get("input", []), inputs),
                                   ("output", model_config.get("output", []), outputs)):
        have = {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in declared}
        for spec in wanted:
            got = have.get(spec["name"])
            if got != (spec["triton_type"], list(spec["dims"])):
                problems.append(f"{role} {spec['name']!r} is {got}, the card wants {(spec['triton_type'], list(spec['dims']))}")
    return problems


def _error(message: str, code: str):
    codes = getattr(pb_utils, "TritonError")
    error = pb_utils.TritonError(message, getattr(codes, code)) if hasattr(codes, code) else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def _log(message: str) -> None:
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(message)
    else:
        print(message, flush=True)
