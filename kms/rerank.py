"""Optional second-stage reranking of the top documents, behind one small interface.

Off unless `KMS_RERANKER` names a local cross-encoder model directory (sentence-transformers
`CrossEncoder`, loaded with `local_files_only`): nothing is downloaded, and no reranker ships
with kms because no offline cross-encoder is published as a package.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from kms.errors import ConfigError

__all__ = ["CrossEncoderReranker", "Reranker", "create_reranker"]

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant. Scores compare within one call only."""

    @property
    def name(self) -> str: ...

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder from a local directory, loaded on first use."""

    def __init__(self, model_path: str | Path, *, max_length: int = 512, batch_size: int = 16) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise ConfigError(f"KMS_RERANKER: no model directory at {path} (give a local cross-encoder path)")
        self.path = path.resolve()
        self.max_length = max_length
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"cross-encoder:{self.path}"

    def _get(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError as exc:  # the optional `st` extra
                    raise ConfigError(
                        "KMS_RERANKER needs sentence-transformers (pip install 'kms[st]')"
                    ) from exc
                self._model = CrossEncoder(str(self.path), local_files_only=True, max_length=self.max_length)
            return self._model

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        model = self._get()
        scores = model.predict(
            [(query, passage) for passage in passages], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]


@functools.cache
def create_reranker(spec: str) -> Reranker | None:
    """`""` → None (reranking off); otherwise a local cross-encoder directory, optionally as
    `cross-encoder:<path>`. One instance per spec for the whole process."""
    spec = spec.strip()
    if not spec:
        return None
    path = spec.removeprefix("cross-encoder:")
    reranker = CrossEncoderReranker(path)
    log.info("reranking with %s", reranker.name)
    return reranker
