"""Text embeddings on disk: one ``.npz`` per (encoder, mode, inputs), so the frozen text model runs once.

The key hashes the encoder's fingerprint, the mode and the exact inputs, so a changed statement
table, a new record or another pooling gives a new file instead of stale vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hfrisk.core.logs import get_logger

__all__ = ["EmbeddingCache", "default_cache_dir", "cached_embeddings"]

log = get_logger(__name__)


def default_cache_dir() -> Path:
    """``<state_dir>/text_embeddings`` (``HFRISK_PATHS__STATE_DIR``, default ``~/.cache/hfrisk``)."""
    from hfrisk.core.config import get_settings

    return get_settings().paths.state_dir / "text_embeddings"


class EmbeddingCache:
    """Embeddings on disk, one ``.npz`` per (encoder, mode, inputs) holding ``ids`` and ``embeddings``.

    The key hashes the encoder's fingerprint, the mode and the exact inputs, so a changed
    statement table, a new record or another pooling gives a new file instead of stale vectors.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    @staticmethod
    def key(fingerprint: str, mode: str, payload: str) -> str:
        digest = hashlib.sha256()
        for part in (fingerprint, mode, payload):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()

    def path(self, fingerprint: str, mode: str, key: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(json.loads(fingerprint)["name"]).name)[-48:]
        return self.directory / f"{mode}-{name}-{key[:20]}.npz"

    def load(self, path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:  # a 20-hex-digit prefix clash; recompute rather than trust it
                return None
            return data["ids"], data["embeddings"]

    def save(self, path: Path, key: str, ids: np.ndarray, embeddings: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(key), ids=ids, embeddings=embeddings)
        # Write then rename, so a reader (or a crash) never sees half a file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)


def cached_embeddings(
    fingerprint: str,
    mode: str,
    payload: str,
    compute: Callable[[], tuple[np.ndarray, np.ndarray]],
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings)`` from the cache under ``cache_dir`` when there, else ``compute()`` (then stored)."""
    cache = EmbeddingCache(cache_dir)
    key = cache.key(fingerprint, mode, payload)
    path = cache.path(fingerprint, mode, key)
    if use_cache and (hit := cache.load(path, key)) is not None:
        log.info("text_embeddings.cache_hit", mode=mode, path=str(path), n=len(hit[0]))
        return hit
    ids, embeddings = compute()
    if use_cache:
        cache.save(path, key, ids, embeddings)
        log.info("text_embeddings.cached", mode=mode, path=str(path), n=len(ids))
    return ids, embeddings
