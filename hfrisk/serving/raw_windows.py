"""Raw windows in, scores and the front end's verdict out: the model that preprocesses where it runs.

The default deployment prepares windows in the stream worker (a CPU process pool) and sends Triton
the network's input, ``(B, 12, 608)`` median beats. On a GPU host the front end can run on the GPU
beside the network instead (docs/serving.md): the worker then sends **raw windows** to the model
``<model>_raw`` (``hfrisk_raw`` for ``hfrisk``), which runs the batched front end
(:func:`hfrisk.model.frontend.prepare_windows`, torch on the instance's device) and then the very
ONNX file the base model serves, and answers with the network's outputs and the front end's verdict.

The contract (:data:`RAW_INPUTS`, :data:`VERDICT_OUTPUTS`; ``L`` = the card's leads, ``N`` = samples):

========================  =======  =========  ===========================================================
tensor                    type     dims       meaning
========================  =======  =========  ===========================================================
``ecg_raw`` (in)          FP32     [L, N]     the window in mV at its own rate, card lead order, absent 0
``lead_present`` (in)     BOOL     [L]        the lead carries signal (measured or derived limb lead)
``fs_hz`` (in)            FP32     [1]        sampling rate of ``ecg_raw``
card outputs (out)        FP32     card's     ``log_risk`` NaN and attention 0 unless the window was scored
``refusal`` (out)         BYTES    [1]        input-error reason code (``InputErrorReason``), "" if prepared
``refusal_detail`` (out)  BYTES    [1]        its message
``fit_to_score`` (out)    BOOL     [1]        the quality gate's verdict (False when refused)
``quality`` (out)         BYTES    [1]        the quality report as JSON (``QualityReport.to_dict``), "" if refused
``lead_mask`` (out)       BOOL     [L]        leads that reached the network
``n_beats_detected``      INT32    [1]        R peaks found in the window
``n_beats_used``          INT32    [1]        beats that formed the median beat
``heart_rate_bpm``        FP32     [1]        NaN with fewer than two beats
========================  =======  =========  ===========================================================

A request holds windows of one rate and length (Triton batches equal shapes); the client groups
them. :class:`RawWindowModel` is the whole server-side computation as a plain class: Triton's
``model.py`` (:mod:`hfrisk.serving.raw_backend_model`) wraps it, and ``bench/bench_serving.py``
times it in process on a GPU.

>>> from hfrisk.model.contract.card import default_card
>>> [t.name for t in RAW_INPUTS], raw_model_name("hfrisk")
(['ecg_raw', 'lead_present', 'fs_hz'], 'hfrisk_raw')
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, load_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.frontend.preprocessing import ModelInput, prepare, prepare_windows
from hfrisk.model.frontend.quality import QualityReport

__all__ = [
    "RAW_SUFFIX",
    "raw_model_name",
    "TensorSpec",
    "RAW_INPUTS",
    "VERDICT_OUTPUTS",
    "raw_outputs",
    "ServedPreparation",
    "preparation_of",
    "RawWindowModel",
    "render_raw_config",
    "write_raw_model",
    "base_model_files",
    "INTERNAL_ERROR",
    "declaration_problems",
    "raw_inputs",
]

RAW_SUFFIX = "_raw"
# Windows per execution on a GPU instance (max_batch_size and the front end's batch of configs/gpu.pbtxt).
GPU_MAX_BATCH = 1024
# The dead-letter reason of a window the front end crashed on (hfrisk.stream.messages.dead_letter's).
INTERNAL_ERROR = "internal_error"


def raw_model_name(model_name: str) -> str:
    """The raw-window model served beside ``model_name``."""
    return f"{model_name}{RAW_SUFFIX}"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the raw model: name, Triton type, dims after the batch dim (-1: any)."""

    name: str
    triton_type: str
    dims: tuple[int, ...]


def _inputs(n_leads: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("ecg_raw", "TYPE_FP32", (n_leads, -1)),
        TensorSpec("lead_present", "TYPE_BOOL", (n_leads,)),
        TensorSpec("fs_hz", "TYPE_FP32", (1,)),
    )


def _verdicts(n_leads: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("refusal", "TYPE_STRING", (1,)),
        TensorSpec("refusal_detail", "TYPE_STRING", (1,)),
        TensorSpec("fit_to_score", "TYPE_BOOL", (1,)),
        TensorSpec("quality", "TYPE_STRING", (1,)),
        TensorSpec("lead_mask", "TYPE_BOOL", (n_leads,)),
        TensorSpec("n_beats_detected", "TYPE_INT32", (1,)),
        TensorSpec("n_beats_used", "TYPE_INT32", (1,)),
        TensorSpec("heart_rate_bpm", "TYPE_FP32", (1,)),
    )


RAW_INPUTS = _inputs(12)
VERDICT_OUTPUTS = _verdicts(12)


def raw_inputs(card: ModelCard) -> tuple[TensorSpec, ...]:
    return _inputs(len(card.input.leads))


def raw_outputs(card: ModelCard) -> tuple[TensorSpec, ...]:
    """The card's outputs (FP32, the card's dims), then the front end's verdict."""
    network = tuple(TensorSpec(o.name, "TYPE_FP32", tuple(int(d) for d in o.shape[1:])) for o in card.outputs)
    return network + _verdicts(len(card.input.leads))


# -- what the worker gets back ------------------------------------------------------------------


@dataclass(frozen=True)
class ServedPreparation:
    """What the stream stores of a window the server prepared: the fields of
    :class:`~hfrisk.model.frontend.preprocessing.ModelInput` the results are built from."""

    quality: QualityReport
    lead_mask: np.ndarray
    n_beats_detected: int
    n_beats_used: int
    heart_rate_bpm: float | None


def quality_to_json(report: QualityReport) -> str:
    # vars(), not to_dict(): the same fields without asdict's deep copy (a third of the cost per window).
    return json.dumps(vars(report), separators=(",", ":"))


def quality_from_json(text: str) -> QualityReport:
    # JSON has no tuples: every list field of the report is a tuple of lead names or reasons.
    return QualityReport(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def preparation_of(outputs: dict[str, np.ndarray], row: int) -> ServedPreparation | tuple[str, str]:
    """Row ``row`` of a raw model's answer: the :class:`ServedPreparation`, or ``(reason, detail)``
    when the window was refused."""
    refusal = _text(outputs["refusal"][row].reshape(-1)[0])
    if refusal:
        return refusal, _text(outputs["refusal_detail"][row].reshape(-1)[0])
    rate = float(outputs["heart_rate_bpm"][row].reshape(-1)[0])
    return ServedPreparation(
        quality=quality_from_json(_text(outputs["quality"][row].reshape(-1)[0])),
        lead_mask=np.asarray(outputs["lead_mask"][row], dtype=bool),
        n_beats_detected=int(outputs["n_beats_detected"][row].reshape(-1)[0]),
        n_beats_used=int(outputs["n_beats_used"][row].reshape(-1)[0]),
        heart_rate_bpm=None if math.isnan(rate) else rate,
    )


# -- the server-side computation ----------------------------------------------------------------


class RawWindowModel:
    """The front end on ``backend`` and the network in ONNX Runtime, for batches of raw windows.

    ``score(samples, present, fs_hz)`` answers one request; ``score_requests`` several at once
    (one front-end call, one ONNX Runtime call: what Triton's dynamic batcher hands the backend).
    """

    def __init__(
        self,
        card: ModelCard,
        onnx_path: str | Path,
        *,
        backend: ArrayBackend = ArrayBackend("torch", "cpu"),
        providers: Sequence[str] = ("CPUExecutionProvider",),
        provider_options: Sequence[dict] | None = None,
        intra_op_threads: int = 0,
        batch_size: int = 32,
    ):
        import onnxruntime as ort

        self.card = card
        self.backend = backend
        self.batch_size = batch_size
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=list(providers),
                                            provider_options=list(provider_options) if provider_options else None)
        self.providers = self.session.get_providers()
        self.leads = tuple(card.input.leads)
        self.network_outputs = [o.name for o in card.outputs]
        self.output_shapes = {o.name: tuple(int(d) for d in o.shape[1:]) for o in card.outputs}

    def warm_up(self) -> None:
        """One window through both halves (imports, kernels, caches) before the first request."""
        fs = float(self.card.input.fs_hz)
        n = int(round(self.card.window.window_s * fs))
        t = np.arange(n, dtype=np.float32) / fs
        beat = np.exp(-(((t % 1.0) - 0.5) ** 2) / 2e-4).astype(np.float32)
        samples = np.repeat(beat[None, None], len(self.leads), axis=1)
        self.score(samples, np.ones((1, len(self.leads)), bool), np.asarray([fs], np.float32))

    def score(self, samples: np.ndarray, present: np.ndarray, fs_hz: np.ndarray) -> dict[str, np.ndarray]:
        (out,) = self.score_requests([(samples, present, fs_hz)])
        return out

    def score_requests(
        self, requests: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> list[dict[str, np.ndarray]]:
        """Each request ``(samples (B, L, N), present (B, L), fs_hz (B,) or (B, 1))`` → its outputs."""
        ecgs: list[ECG | ECGInputError] = []
        sizes = []
        for samples, present, fs_hz in requests:
            fs = np.asarray(fs_hz, dtype=np.float64).reshape(-1)
            present = np.asarray(present, dtype=bool)
            sizes.append(len(samples))
            for row in range(len(samples)):
                ecgs.append(self._ecg(samples[row], present[row], fs[row]))
        prepared = self._prepare(ecgs)
        outputs = self._run_network(prepared)
        parts, start = [], 0
        for size in sizes:
            parts.append({name: value[start : start + size] for name, value in outputs.items()})
            start += size
        return parts

    def _ecg(self, samples: np.ndarray, present: np.ndarray, fs_hz: float) -> ECG | ECGInputError:
        names = tuple(name for name, on in zip(self.leads, present) if on)
        try:
            if not names:
                from hfrisk.model.contract.errors import InputErrorReason

                raise ECGInputError(InputErrorReason.MISSING_LEADS, "no lead is marked present")
            return ECG(samples=np.asarray(samples, dtype=np.float32)[np.asarray(present, dtype=bool)],
                       fs_hz=float(fs_hz), lead_names=names)
        except ECGInputError as err:
            return err

    def _prepare(self, ecgs: list[ECG | ECGInputError]) -> list[ModelInput | ECGInputError | tuple[str, str]]:
        todo = [(i, e) for i, e in enumerate(ecgs) if isinstance(e, ECG)]
        out: list = list(ecgs)
        try:
            done = prepare_windows([(e, 0.0) for _, e in todo], self.card, backend=self.backend,
                                   batch_size=self.batch_size)
        except Exception:  # a bug in the front end must not fail the batch: find the window at fault
            done = [self._prepare_one(e) for _, e in todo]
        for (i, _), item in zip(todo, done):
            out[i] = item
        return out

    def _prepare_one(self, ecg: ECG) -> ModelInput | ECGInputError | tuple[str, str]:
        try:
            return prepare(ecg, self.card, backend=self.backend)
        except ECGInputError as err:
            return err
        except Exception as exc:
            return INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"

    def _run_network(self, prepared: list) -> dict[str, np.ndarray]:
        b, n_leads = len(prepared), len(self.leads)
        out: dict[str, np.ndarray] = {}
        for name in self.network_outputs:
            fill = np.nan if name == "log_risk" else 0.0
            out[name] = np.full((b, *self.output_shapes[name]), fill, np.float32)
        refusal = np.full((b, 1), b"", dtype=object)
        detail = np.full((b, 1), b"", dtype=object)
        quality = np.full((b, 1), b"", dtype=object)
        fit = np.zeros((b, 1), bool)
        lead_mask = np.zeros((b, n_leads), bool)
        detected = np.zeros((b, 1), np.int32)
        used = np.zeros((b, 1), np.int32)
        rate = np.full((b, 1), np.nan, np.float32)
        rows = []
        for i, item in enumerate(prepared):
            if isinstance(item, ECGInputError):
                refusal[i, 0], detail[i, 0] = item.reason.value.encode(), item.detail.encode()
            elif isinstance(item, tuple):
                refusal[i, 0], detail[i, 0] = item[0].encode(), item[1].encode()
            else:
                quality[i, 0] = quality_to_json(item.quality).encode()
                fit[i, 0] = bool(item.quality.fit_to_score)
                lead_mask[i] = item.lead_mask
                detected[i, 0], used[i, 0] = item.n_beats_detected, item.n_beats_used
                if item.heart_rate_bpm is not None:
                    rate[i, 0] = item.heart_rate_bpm
                if item.quality.fit_to_score:
                    rows.append(i)
        if rows:
            x = np.ascontiguousarray(np.stack([prepared[i].x for i in rows]), dtype=np.float32)
            results = self.session.run(self.network_outputs, {self.card.input.name: x})
            for name, value in zip(self.network_outputs, results):
                out[name][rows] = value
        out.update(refusal=refusal, refusal_detail=detail, fit_to_score=fit, quality=quality, lead_mask=lead_mask,
                   n_beats_detected=detected, n_beats_used=used, heart_rate_bpm=rate)
        return out


def declaration_problems(parameters: dict, card: ModelCard, base_model: str) -> list[str]:
    """How a raw model's config ``parameters`` (Triton's JSON: ``{key: {"string_value": ...}}``)
    disagree with serving ``card``'s network ``base_model`` behind server-side preprocessing."""
    def value(key: str) -> str | None:
        return (parameters.get(key) or {}).get("string_value")

    wanted = {"preprocessing": "server", "base_model": base_model, "card": f"{card.name} {card.version}"}
    return [f"{key} is {value(key)!r}, expected {want!r}" for key, want in wanted.items() if value(key) != want]


# -- the Triton folder --------------------------------------------------------------------------


def base_model_files(model_dir: str | Path, base_model: str, version: str | None = None) -> tuple[Path, Path]:
    """``(model.onnx, model_card.json)`` the base model serves: ``model_dir`` is the raw model's
    folder, the base model its sibling; ``version`` None: its newest numbered version."""
    base = Path(model_dir).parent / base_model
    if version is None:
        versions = sorted((int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
        if not versions:
            raise FileNotFoundError(f"no version folder in {base}")
        version = str(versions[0])
    folder = base / str(version)
    card = folder / CARD_FILENAME
    if not card.is_file():
        card = base / CARD_FILENAME
    return folder / "model.onnx", card


def _block(spec: TensorSpec) -> str:
    return (f'  {{\n    name: "{spec.name}"\n    data_type: {spec.triton_type}\n'
            f'    dims: [ {", ".join(str(d) for d in spec.dims)} ]\n  }}')


def _param(key: str, value: str) -> str:
    return f'parameters: {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}'


def render_raw_config(
    card: ModelCard,
    base_model: str = "hfrisk",
    *,
    kind: Literal["cpu", "gpu"] = "cpu",
    max_batch_size: int = 64,
    instances: int = 1,
    torch_threads: int = 0,
    intra_op_threads: int = 0,
    frontend_batch_size: int | None = None,
) -> str:
    """config.pbtxt of ``<base_model>_raw`` for ``card``.

    ``kind="cpu"``: KIND_CPU instances, the front end on torch's CPU (or the GPU if the server has
    one), ONNX Runtime CUDA-then-CPU; loads everywhere. ``kind="gpu"``: KIND_GPU instances, front
    end and network on the instance's GPU, and no quiet fallback to the CPU.
    """
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"kind must be 'cpu' or 'gpu', not {kind!r}")
    gpu = kind == "gpu"
    instance = f"instance_group [\n  {{\n    count: {instances}\n    kind: {'KIND_GPU' if gpu else 'KIND_CPU'}\n  }}\n]"
    batch = frontend_batch_size or (GPU_MAX_BATCH if gpu else 32)
    params = [
        ("preprocessing", "server"),
        ("base_model", base_model),
        ("card", f"{card.name} {card.version}"),
        ("array_backend", "torch"),
        ("device", "cuda" if gpu else "auto"),
        ("fallback_to_cpu", "false" if gpu else "true"),
        ("providers", "CUDAExecutionProvider,CPUExecutionProvider"),
        ("frontend_batch_size", str(batch)),
        ("torch_threads", str(torch_threads)),
        ("intra_op_threads", str(intra_op_threads)),
    ]
    inputs = ",\n".join(_block(s) for s in raw_inputs(card))
    outputs = ",\n".join(_block(s) for s in raw_outputs(card))
    return f"""# Written by hfrisk.serving.raw_windows from the model card of {card.name} {card.version}.
# Raw windows in: the front end (torch, on the instance's device) and then {base_model}'s own model.onnx
# (read from ../{base_model}/<newest version>/, never copied). docs/serving.md.
name: "{raw_model_name(base_model)}"
backend: "python"
max_batch_size: {max_batch_size}
input [
{inputs}
]
output [
{outputs}
]
dynamic_batching {{
  max_queue_delay_microseconds: 0
}}
{instance}
""" + "\n".join(_param(k, v) for k, v in params) + "\n"


def write_raw_model(repo_dir: str | Path, card: ModelCard | None = None, base_model: str = "hfrisk",
                    **config) -> Path:
    """Write ``repo_dir/<base_model>_raw`` (config.pbtxt, configs/gpu.pbtxt, 1/model.py) beside an
    exported ``base_model``; ``card`` defaults to the one served beside it. Returns the folder."""
    from hfrisk.serving import raw_backend_model

    repo_dir = Path(repo_dir)
    card = card or load_card(repo_dir / base_model / CARD_FILENAME)
    model_dir = repo_dir / raw_model_name(base_model)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "configs").mkdir(exist_ok=True)
    shutil.copyfile(raw_backend_model.__file__, model_dir / "1" / "model.py")
    (model_dir / "config.pbtxt").write_text(render_raw_config(card, base_model, kind="cpu", **config))
    # A GPU wants thousands of windows per execution: let the dynamic batcher merge up to that many.
    gpu = config | {"max_batch_size": max(config.get("max_batch_size", 64), GPU_MAX_BATCH)}
    (model_dir / "configs" / "gpu.pbtxt").write_text(render_raw_config(card, base_model, kind="gpu", **gpu))
    return model_dir
