"""The store interface every backend implements, and what the backends share.

Callers (search, ingestion, reindex) speak `qdrant_client.models` for filters, prefetches and
results whatever the backend: the filters come from `kms/security/access.py`, and a backend that is
not qdrant-client translates them exactly (an absent field never matches; an empty allow list never
matches; a condition it cannot translate is an error, never dropped).

Searches go through the alias `<layout.name>`; physical collections are `<name>_<n>`, so a
reindex builds `<name>_<n+1>` beside the live one and swaps the alias when it is complete.
The embedding model's name and dimension are stored with each collection.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qdrant_client import models

from kms.config import CollectionLayout
from kms.errors import ModelMismatch
from kms.index.sparse import SparseVec

_CHUNK_NAMESPACE = uuid.UUID("6f1c1f2e-6c7a-4bb5-9d0e-7f3b1f0c2a11")
WRITE_BATCH = 128


def chunk_point_id(doc_id: str, version: int, chunk_no: int) -> str:
    """Deterministic point id, so re-running a write is idempotent."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{doc_id}\x1f{version}\x1f{chunk_no}"))


@dataclass(frozen=True)
class ChunkPoint:
    doc_id: str
    version: int
    chunk_no: int
    dense: list[float]
    sparse: dict[str, SparseVec]
    payload: dict[str, Any]


@dataclass(slots=True)
class ScoredChunk:
    """A search result as callers read it: the chunk's point id, its score and the payload asked for.

    Not `models.ScoredPoint`: building one cost ~12 µs per point even without validation
    (`model_construct`), 2.3 ms for the 200 candidates of a search, 15 % of the engine's own time.
    """

    id: str
    score: float
    payload: dict[str, Any]


class _Scored(Protocol):
    """What a backend's scored point offers: qdrant-client's `ScoredPoint` and qdrant-edge's alike."""

    @property
    def id(self) -> Any: ...
    @property
    def score(self) -> float: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...


def scored_chunks(points: Sequence[_Scored]) -> list[ScoredChunk]:
    return [ScoredChunk(str(p.id), p.score, p.payload or {}) for p in points]


@dataclass(frozen=True)
class IndexInfo:
    collection: str
    model: str
    dim: int
    points: int


class ChunkStore(abc.ABC):
    """Chunks with dense + sparse vectors and a payload, in collections behind one alias."""

    backend: str  # "local", "edge" or "server"

    def __init__(self, layout: CollectionLayout) -> None:
        self.layout = layout

    # ---- collections -------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        return self.layout.name

    @property
    def embedded(self) -> bool:
        return self.backend != "server"

    @abc.abstractmethod
    def active_collection(self) -> str | None: ...

    @abc.abstractmethod
    def collections(self) -> list[str]:
        """Every physical collection of this layout (`<alias>_<n>`), live or not."""

    @abc.abstractmethod
    def info(self, collection: str | None = None) -> IndexInfo | None: ...

    @abc.abstractmethod
    def create_collection(self, model: str, dim: int) -> str: ...

    @abc.abstractmethod
    def swap_alias(self, collection: str) -> None: ...

    @abc.abstractmethod
    def drop_collection(self, collection: str) -> None:
        """Delete a collection unless it is the live one."""

    def wait_warm(self, timeout: float) -> bool:
        """Have the live index read into memory (a server calls this; one-shot commands need not),
        waiting up to `timeout` s; True once it is, or when there is nothing to read in (only the
        edge backend preloads: kms/index/preload.py)."""
        return True

    def other_collections(self) -> list[str]:
        active = self.active_collection()
        return [name for name in self.collections() if name != active]

    def next_collection_name(self) -> str:
        numbers = [
            int(n.rsplit("_", 1)[1])
            for n in self.collections()
            if n.startswith(f"{self.alias}_") and n.rsplit("_", 1)[1].isdigit()
        ]
        return f"{self.alias}_{max(numbers, default=0) + 1}"

    def ensure_active(self, model: str, dim: int) -> str:
        """Open the live collection (creating the first one) and check it was built with `model`."""
        info = self.info()
        if info is None:
            name = self.create_collection(model, dim)
            self.swap_alias(name)
            return name
        if info.model != model or info.dim != dim:
            raise ModelMismatch(
                f"the index was built with embedder {info.model!r} ({info.dim} dims) but KMS_EMBEDDER is "
                f"{model!r} ({dim} dims): run `kms reindex` to rebuild it with the new model"
            )
        return info.collection

    # ---- writes ------------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert(self, chunks: Sequence[ChunkPoint], collection: str | None = None) -> None: ...

    @abc.abstractmethod
    def delete_document(
        self, doc_id: str, *, except_version: int | None = None, collection: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def set_payload(self, doc_id: str, payload: dict[str, Any], collection: str | None = None) -> None:
        """Overwrite fields on every chunk of a document (access changes take effect before returning)."""

    @abc.abstractmethod
    def delete_payload_keys(self, doc_id: str, keys: list[str], collection: str | None = None) -> None: ...

    def optimize(self, *, wait: bool = True) -> bool:
        """Build search indexes for recently written points; False when there is nothing to do."""
        return False

    # ---- reads -------------------------------------------------------------------------------
    @abc.abstractmethod
    def count(self, query_filter: models.Filter | None) -> int: ...

    @abc.abstractmethod
    def query(
        self,
        *,
        query: Any,
        using: str,
        query_filter: models.Filter | None,
        limit: int,
        prefetch: list[models.Prefetch] | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        """Nearest points; `fields` limits the payload returned (None: all of it)."""

    @abc.abstractmethod
    def fused_query(
        self,
        *,
        prefetch: list[models.Prefetch],
        weights: list[float],
        k_rrf: int,
        query_filter: models.Filter | None,
        limit: int,
        fusion: str = "rrf",
        fields: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        """Fusion of the prefetches (each carries its own filter too): weighted reciprocal-rank
        fusion, or with `fusion="dbsf"` distribution-based score fusion (which takes no weights:
        `weights` and `k_rrf` are ignored; repeat a prefetch to count it more). `fields` limits
        the payload returned (None: all of it)."""

    @abc.abstractmethod
    def recommend(
        self, *, positive: list[str], query_filter: models.Filter | None, limit: int
    ) -> list[ScoredChunk]:
        """Nearest chunks to the average dense vector of `positive` (which are never returned)."""

    @abc.abstractmethod
    def scroll(
        self,
        query_filter: models.Filter | None,
        *,
        with_vectors: bool = False,
        collection: str | None = None,
        batch: int = 256,
    ) -> Iterator[models.Record]:
        """Every matching chunk, in point-id order."""

    def document_chunks(self, doc_id: str, access: models.Filter | None) -> list[models.Record]:
        conditions: list[models.Condition] = [doc_condition(doc_id)]
        if access is not None:
            conditions.append(access)
        records = list(self.scroll(models.Filter(must=conditions)))
        return sorted(records, key=lambda r: int((r.payload or {}).get("chunk_no", 0)))

    @abc.abstractmethod
    def close(self) -> None: ...


def payload_selector(fields: Sequence[str] | None) -> bool | list[str]:
    """What to ask the engine for: the named payload fields, or all of them when None."""
    return list(fields) if fields is not None else True


def doc_condition(doc_id: str) -> models.FieldCondition:
    return models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))


def version_condition(version: int) -> models.FieldCondition:
    return models.FieldCondition(key="version", match=models.MatchValue(value=version))
