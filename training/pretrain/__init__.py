"""LLM-informed pretraining (paper §3.1): masked beat reconstruction aligned with report-text embeddings.

``pretrain(PretrainConfig(data_root=...), run_dir)`` trains and resumes; :func:`load_pretrained_encoder`
hands the encoder to fine-tuning; docs/training/pretraining.md is the guided tour.
"""

from __future__ import annotations

from hfrisk.core.lazy import lazy_exports

# name -> module of this package that defines it, imported on first use:
# torch loads only when a name is used.
_EXPORTS = {
    "PretrainConfig": "config",
    "pretrain": "loop",
    "PretrainResult": "loop",
    "retrieval": "loop",
    "masked_mse": "losses",
    "InfoNCELoss": "losses",
    "CosineAlignmentLoss": "losses",
    "alignment_loss": "losses",
    "PretrainSplit": "data",
    "load_pretraining_data": "data",
    "PretrainData": "data",
    "SOURCES": "corpus",
    "choose_sources": "corpus",
    "excluded_ids": "corpus",
    "PretrainProgress": "state",
    "PretrainProvenance": "state",
    "load_pretrained_encoder": "encoder_weights",
    "TextEncoder": "text_encoder",
    "resolve_default_encoder": "text_encoder",
    "record_text_embeddings": "text_embeddings",
    "raw_text_embeddings": "text_embeddings",
    "likelihood_weights": "text_embeddings",
    "EmbeddingCache": "embedding_cache",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
