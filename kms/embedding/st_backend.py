"""sentence-transformers backend for any local model directory (nothing is downloaded)."""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kms.embedding.base import Vectors, normalise
from kms.errors import ConfigError

PACKAGE_PREFIX = "pkg:"


def resolve_model_path(spec: str) -> Path:
    """`pkg:<module>` is a model shipped inside an installed Python package; anything else is a path."""
    if spec.startswith(PACKAGE_PREFIX):
        module_name = spec[len(PACKAGE_PREFIX) :]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"embedding model package {module_name!r} is not installed") from exc
        return _model_dir_in_package(Path(str(module.__file__)).parent)
    path = Path(spec).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"sentence-transformers model directory {path} does not exist")
    return path


def _model_dir_in_package(package_dir: Path) -> Path:
    for config in sorted(package_dir.rglob("config.json")):
        if (config.parent / "modules.json").exists() or (config.parent / "tokenizer.json").exists():
            return config.parent
    raise ConfigError(f"no sentence-transformers model found inside {package_dir}")


class SentenceTransformerEmbedder:
    def __init__(self, spec: str) -> None:
        self._spec = spec
        self._path = resolve_model_path(spec)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"sentence-transformers:{self._spec}"

    @property
    def dim(self) -> int:
        return int(self._get().get_embedding_dimension())

    def _get(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local path must never turn into a download
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self._path), device="cpu", local_files_only=True)
        return self._model

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._embed(texts)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._get().encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
        return normalise(np.asarray(vectors, dtype=np.float32))
