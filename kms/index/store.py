"""The only door to the vector index: pick the store backend the settings name (`KMS_STORE`).

- `edge` (the embedded default): Qdrant's Rust engine in-process (qdrant-edge-py) with HNSW, int8
  quantization and payload indexes, in `<data>/edge`;
- `local`: qdrant-client's embedded mode, brute force in Python, in `<data>/qdrant`;
- `server`: a Qdrant server or cluster at `KMS_QDRANT_URL`.

All three implement `ChunkStore` (kms/index/base.py) and answer the same calls with the same results;
tests/index/ runs one suite against each available backend.
"""

from __future__ import annotations

from kms.config import CollectionLayout, Settings
from kms.index.base import ChunkPoint, ChunkStore, IndexInfo, ScoredChunk, chunk_point_id
from kms.index.qdrant_store import QdrantChunkStore, open_client

__all__ = [
    "ChunkPoint",
    "ChunkStore",
    "IndexInfo",
    "ScoredChunk",
    "chunk_point_id",
    "open_client",
    "open_store",
]


def open_store(
    settings: Settings, layout: CollectionLayout, *, auto_optimize: int | None = None
) -> ChunkStore:
    """Open the backend `settings.store_backend` (the embedded ones are owned by one process at a time)."""
    backend = settings.store_backend
    if backend == "edge":
        from kms.index.edge_store import EdgeChunkStore

        settings.ensure_data_dir()
        return EdgeChunkStore(
            settings.edge_path, layout, auto_optimize=auto_optimize, preload=settings.preload_index
        )
    return QdrantChunkStore(open_client(settings), layout, embedded=backend == "local")
