"""One text vector per ECG: the paper's likelihood-weighted mean of SCP statement embeddings, or the raw report's.

The paper embeds each SCP statement, then averages a record's statements weighted by their
likelihoods (``{IMI: 15, LNGQT: 100}`` gives weights 15/115 and 100/115). Vectors are cached
(:mod:`~hfrisk.training.pretrain.embedding_cache`) because the text side never trains.

>>> enc = TextEncoder(resolve_default_encoder(), progress=False)            # doctest: +SKIP
>>> ids, z = record_text_embeddings({1: {"IMI": 15.0, "LNGQT": 100.0}},
...                                 statements, enc, cache_dir="/tmp/emb")  # doctest: +SKIP
>>> z.shape                                                                 # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from hfrisk.training.data.report_text import clean_raw_report, statement_texts
from hfrisk.training.pretrain.embedding_cache import cached_embeddings

__all__ = ["Encoder", "likelihood_weights", "record_text_embeddings", "raw_text_embeddings"]


class Encoder(Protocol):
    """What the embedding functions need of a text model (:class:`~hfrisk.training.pretrain.text_encoder.TextEncoder`)."""

    fingerprint: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _id_array(ids: list[Hashable]) -> np.ndarray:
    # Integer ids (ecg_id, eid) stay integers; anything else is stored as text (npz needs no pickle).
    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return np.asarray([str(i) for i in ids])


def likelihood_weights(codes: Mapping[str, float]) -> dict[str, float]:
    """Weights of a record's codes: ``likelihood_k / Σ likelihood`` over codes with likelihood > 0.

    ``{"IMI": 15, "LNGQT": 100}`` gives ``{"IMI": 15/115, "LNGQT": 100/115}`` (the paper's
    figure). Likelihood-0 codes get no weight. When *every* code of a record has likelihood 0
    (PTB-XL writes 0 for "likelihood not stated", typically on rhythm statements), dropping them
    would leave no text at all, so those codes share the weight equally instead.
    """
    if not codes:
        raise ValueError("a record needs at least one SCP code")
    positive = {c: float(v) for c, v in codes.items() if float(v) > 0}
    if not positive:
        return {c: 1.0 / len(codes) for c in codes}
    total = sum(positive.values())
    return {c: v / total for c, v in positive.items()}


def record_text_embeddings(
    codes_per_record: Mapping[Hashable, Mapping[str, float]],
    statements: pd.DataFrame | Mapping[str, str],
    encoder: Encoder,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's z_text: per record, the likelihood-weighted mean of its statements' embeddings.

    Args:
        codes_per_record: ``ecg_id -> {scp_code: likelihood}``, likelihood-0 codes *included*
            (``PTBXL.codes_per_record(include_zero=True)``) so that the fallback of
            :func:`likelihood_weights` can use them.
        statements: ``scp_statements.csv`` as read by ``read_scp_statements``, or a ready
            ``code -> text`` mapping.
        encoder: a :class:`TextEncoder` (anything with ``fingerprint`` and ``encode``).

    Returns:
        ``(ids, embeddings)``: ids in the order given, embeddings ``(n, d)`` float32. Each distinct
        code is embedded once, however many records use it.
    """
    texts = statement_texts(statements) if isinstance(statements, pd.DataFrame) else dict(statements)
    ids = list(codes_per_record)
    empty = [i for i in ids if not codes_per_record[i]]
    if empty:
        raise ValueError(f"{len(empty)} records have no SCP code, e.g. {empty[:10]}")
    weights = [likelihood_weights(codes_per_record[i]) for i in ids]
    used = sorted({code for w in weights for code in w})
    unknown = [c for c in used if c not in texts]
    if unknown:
        raise KeyError(f"SCP codes without a statement text: {unknown}")
    # The text of each code is part of the key: editing the statement table invalidates the cache.
    payload = json.dumps(
        {"records": [[str(i), sorted(w.items())] for i, w in zip(ids, weights)],
         "texts": {c: texts[c] for c in used}},
        sort_keys=True,
    )

    def compute() -> tuple[np.ndarray, np.ndarray]:
        code_vectors = encoder.encode([texts[c] for c in used])
        column = {c: j for j, c in enumerate(used)}
        matrix = np.zeros((len(ids), len(used)), dtype=np.float64)
        for row, w in enumerate(weights):
            for code, weight in w.items():
                matrix[row, column[code]] = weight
        return _id_array(ids), (matrix @ code_vectors.astype(np.float64)).astype(np.float32)

    return cached_embeddings(encoder.fingerprint, "scp_structured", payload, compute, cache_dir, use_cache)


def raw_text_embeddings(
    reports: Mapping[Hashable, str] | pd.Series,
    encoder: Encoder,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One embedding per free-text report (whitespace-normalised, not translated): the raw-text variant."""
    items = list(reports.items())
    ids = [i for i, _ in items]
    texts = [clean_raw_report(t) for _, t in items]
    payload = json.dumps([[str(i), t] for i, t in zip(ids, texts)])

    def compute() -> tuple[np.ndarray, np.ndarray]:
        return _id_array(ids), encoder.encode(texts).astype(np.float32)

    return cached_embeddings(encoder.fingerprint, "raw_report", payload, compute, cache_dir, use_cache)
