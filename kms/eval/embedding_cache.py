"""An embedding cache for evaluation indexes (SQLite, keyed by model and text digest).

Rebuilding an eval index after a change to the sparse side or the chunker must not re-embed a
few thousand unchanged passages on two cores. Query vectors are cached only when asked
(`cache_queries`, for quality runs that send the same queries in several modes): embedding time is
part of any measured query latency.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kms.embedding import Embedder, Vectors

__all__ = ["CachedEmbedder"]


class CachedEmbedder:
    """Wraps an `Embedder`, reusing vectors stored for the same model and text (same vectors, no work)."""

    def __init__(self, inner: Embedder, path: Path, *, cache_queries: bool = False) -> None:
        self.inner = inner
        self.cache_queries = cache_queries
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        for table in ("passages", "queries"):
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
            )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.inner.name}\x1f{self.inner.dim}\x1f{text}".encode()).hexdigest()

    def embed_queries(self, texts: list[str]) -> Vectors:
        if not self.cache_queries:
            return self.inner.embed_queries(texts)
        return self._cached("queries", texts, self.inner.embed_queries)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._cached("passages", texts, self.inner.embed_passages)

    def _cached(self, table: str, texts: list[str], embed: Callable[[list[str]], Vectors]) -> Vectors:
        keys = [self._key(text) for text in texts]
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"SELECT key, vector FROM {table} WHERE key IN ({marks})", batch)
                found.update((str(key), bytes(blob)) for key, blob in rows)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            vectors = embed([texts[i] for i in missing])
            with self._lock:
                for i, vector in zip(missing, vectors, strict=True):
                    found[keys[i]] = np.asarray(vector, dtype=np.float32).tobytes()
                    self._db.execute(
                        f"INSERT OR REPLACE INTO {table} (key, vector) VALUES (?, ?)",
                        (keys[i], found[keys[i]]),
                    )
                self._db.commit()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = np.frombuffer(found[key], dtype=np.float32)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
