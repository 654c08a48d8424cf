"""Writes the Triton model repository that serves an exported network, on a laptop or on a GPU.

One repository, two servers: the ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel has
only the python backend, so the model runs in a python-backend ``model.py`` that drives ONNX
Runtime; NVIDIA's Triton container runs the very same files, and there ONNX Runtime picks
``CUDAExecutionProvider`` when onnxruntime-gpu is installed. ``triton_models/README.md``
explains the choice. The layout::

    <repo_dir>/<model_name>/
        config.pbtxt          # KIND_CPU instances: loads everywhere
        configs/gpu.pbtxt     # KIND_GPU instances: tritonserver --model-config-name=gpu
        model_card.json       # the contract, beside the config for clients and dashboards
        <version>/
            model.onnx
            model.py          # hfrisk/serving/backend_model.py, copied
            model_card.json   # the card this ONNX file was exported with
    <repo_dir>/<model_name>_raw/   # raw windows in: front end + this model.onnx (hfrisk.serving.raw_windows)

>>> from hfrisk.model.contract.card import default_card
>>> text = render_config(default_card(), "hfrisk", ServingOptions(max_batch_size=32))
>>> "max_batch_size: 32" in text and 'backend: "python"' in text
True
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from hfrisk.model.contract.card import CARD_FILENAME, ModelCard
from hfrisk.serving import backend_model

__all__ = [
    "ServingOptions",
    "GPU_CONFIG_NAME",
    "render_config",
    "write_model_repository",
    "check_onnx",
    "OnnxContractError",
]

GPU_CONFIG_NAME = "gpu"
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"


class OnnxContractError(ValueError):
    """The ONNX file's inputs or outputs do not match the model card."""


@dataclass(frozen=True)
class ServingOptions:
    """How Triton batches and places the model; everything config.pbtxt holds besides the card.

    ``max_queue_delay_us`` is what a request may wait for company. 0 still batches: whatever
    queued while the instance was busy runs as one ONNX Runtime call, and on CPU instances that
    measured best at every concurrency (docs/bench/triton.md: with 2 ms, lone requests leave the
    CPU idle while they wait). On a GPU, where 32 windows cost about what one does, a few hundred
    µs may pay; measure with ``python -m bench.bench_triton --max-queue-delay-us``.
    ``intra_op_threads`` = 0 lets ONNX Runtime use one thread per physical core.
    """

    max_batch_size: int = 64
    # None: 16 and 32 (a stream worker's micro-batch), those that fit under max_batch_size.
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = 0
    cpu_instances: int = 1
    gpu_instances: int = 1
    # GPU ids for the GPU variant's instance group; None = every GPU the server sees.
    gpus: tuple[int, ...] | None = None
    providers: tuple[str, ...] = (_CUDA, _CPU)
    intra_op_threads: int = 0

    @property
    def preferred(self) -> tuple[int, ...]:
        """The preferred batch sizes config.pbtxt gets."""
        if self.preferred_batch_sizes is not None:
            return self.preferred_batch_sizes
        return tuple(b for b in (16, 32) if b <= self.max_batch_size) or (self.max_batch_size,)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        bad = [b for b in self.preferred if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred batch sizes {bad} fall outside 1..max_batch_size={self.max_batch_size}")
        if self.cpu_instances < 1 or self.gpu_instances < 1:
            raise ValueError("instance counts must be at least 1")
        if self.max_queue_delay_us < 0 or self.intra_op_threads < 0:
            raise ValueError("max_queue_delay_us and intra_op_threads cannot be negative")
        if not self.providers:
            raise ValueError("name at least one ONNX Runtime execution provider")


def _dims(shape: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in shape[1:]) + " ]"


def _tensor_block(name: str, shape: tuple[int, ...]) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: {_dims(shape)}\n  }}'


def _parameter(key: str, value: str) -> str:
    return f'parameters: {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}'


def render_config(
    card: ModelCard, model_name: str, options: ServingOptions = ServingOptions(),
    kind: Literal["cpu", "gpu"] = "cpu",
) -> str:
    """config.pbtxt text for ``card``: tensor names and dims from the card, the rest from ``options``."""
    if card.input.dtype != "float32" or any(o.dtype != "float32" for o in card.outputs):
        raise ValueError("the python backend config is written for float32 tensors only")
    if kind == "cpu":
        instance = f"instance_group [\n  {{\n    count: {options.cpu_instances}\n    kind: KIND_CPU\n  }}\n]"
        # CUDA first even on KIND_CPU: in a GPU container ONNX Runtime still uses the GPU.
        providers, fallback = options.providers, "true"
    elif kind == "gpu":
        gpus = f"\n    gpus: [ {', '.join(map(str, options.gpus))} ]" if options.gpus else ""
        instance = f"instance_group [\n  {{\n    count: {options.gpu_instances}\n    kind: KIND_GPU{gpus}\n  }}\n]"
        providers = options.providers if _CUDA in options.providers else (_CUDA, *options.providers)
        fallback = "false"  # asked for GPU instances: serving from the CPU would be a silent failure
    else:
        raise ValueError(f"kind must be 'cpu' or 'gpu', not {kind!r}")
    preferred = ", ".join(str(b) for b in options.preferred)
    outputs = ",\n".join(_tensor_block(o.name, o.shape) for o in card.outputs)
    parameters = "\n".join(
        _parameter(k, v)
        for k, v in (
            ("providers", ",".join(providers)),
            ("fallback_to_cpu", fallback),
            ("intra_op_threads", str(options.intra_op_threads)),
            ("onnx_file", "model.onnx"),
        )
    )
    return f"""# Written by hfrisk.serving.model_repository from the model card of {card.name} {card.version}.
# Python backend running ONNX Runtime (model.py): loads in the pytriton wheel's server and in NVIDIA's container.
name: "{model_name}"
backend: "python"
max_batch_size: {options.max_batch_size}
input [
{_tensor_block(card.input.name, card.input.shape)}
]
output [
{outputs}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
{instance}
{parameters}
"""


def _describe(nodes) -> list[tuple[str, list, str]]:
    """ONNX graph inputs/outputs as ``(name, shape, type)``, shape entries int or symbolic name."""
    described = []
    for node in nodes:
        tensor = node.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        described.append((node.name, shape, "tensor(float)" if tensor.elem_type == 1 else f"elem_type {tensor.elem_type}"))
    return described


def check_onnx(onnx_path: str | Path, card: ModelCard):
    """Load ``onnx_path`` (external data included) and raise :class:`OnnxContractError` unless it fits the card.

    Returns the loaded ``onnx.ModelProto`` so the caller can save it as a single file.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    card_dict = card.model_dump(mode="json")
    # Initializers are listed among graph inputs by some exporters; they are not model inputs.
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    problems = backend_model.contract_mismatches(card_dict, _describe(inputs), _describe(model.graph.output))
    if problems:
        raise OnnxContractError(f"{onnx_path} does not match the model card: " + "; ".join(problems))
    return model


def write_model_repository(
    onnx_path: str | Path,
    card: ModelCard,
    repo_dir: str | Path,
    model_name: str = "hfrisk",
    version: int = 1,
    options: ServingOptions | None = None,
    raw_model: bool = True,
    **option_overrides,
) -> Path:
    """Write (or overwrite) ``repo_dir/model_name`` for ``onnx_path`` and return that folder.

    ``option_overrides`` are :class:`ServingOptions` fields (``max_batch_size=32``,
    ``cpu_instances=2`` …) applied on top of ``options``. The ONNX file is checked against the
    card first and saved with its weights embedded, so a repository never points at external
    data files left behind. Other models in ``repo_dir`` are left alone, except that with
    ``raw_model`` the raw-window model ``<model_name>_raw`` is (re)written beside it: a config and a
    ``model.py`` that serve this model's own ONNX file behind the front end (docs/serving.md).
    """
    options = replace(options or ServingOptions(), **option_overrides)
    if version < 1:
        raise ValueError("Triton model versions start at 1")
    import onnx

    model = check_onnx(onnx_path, card)
    model_dir = Path(repo_dir) / model_name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "configs").mkdir(exist_ok=True)

    if raw_model:
        from hfrisk.model.contract.card import ServingSpec
        from hfrisk.serving.raw_windows import raw_model_name

        # The card declares what is written: this model, and the raw-window model beside it.
        card = card.model_copy(update={"serving": ServingSpec(preprocess_on=("worker", "server"),
                                                               raw_model=raw_model_name(model_name))})
    onnx.save_model(model, str(version_dir / "model.onnx"))
    shutil.copyfile(backend_model.__file__, version_dir / "model.py")
    card.save(version_dir / CARD_FILENAME)
    card.save(model_dir / CARD_FILENAME)
    (model_dir / "config.pbtxt").write_text(render_config(card, model_name, options, "cpu"))
    (model_dir / "configs" / f"{GPU_CONFIG_NAME}.pbtxt").write_text(render_config(card, model_name, options, "gpu"))
    if raw_model:
        from hfrisk.serving.raw_windows import write_raw_model

        write_raw_model(repo_dir, card, model_name, max_batch_size=options.max_batch_size,
                        intra_op_threads=options.intra_op_threads, torch_threads=options.intra_op_threads)
    return model_dir
