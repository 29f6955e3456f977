"""The only module that talks to Qdrant: collection setup from YAML, writes by document, queries.

Searches go through the alias `<layout.name>`; physical collections are `<name>_<n>`, so a
reindex builds `<name>_<n+1>` beside the live one and swaps the alias when it is complete.
The embedding model's name and dimension are stored in the collection's metadata.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from qdrant_client import QdrantClient, models

from kms.config import CollectionLayout, Settings
from kms.errors import ModelMismatch, StoreBusy
from kms.index.sparse import SparseVec

log = logging.getLogger(__name__)

_CHUNK_NAMESPACE = uuid.UUID("6f1c1f2e-6c7a-4bb5-9d0e-7f3b1f0c2a11")
_PAYLOAD_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
}
_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
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


@dataclass(frozen=True)
class IndexInfo:
    collection: str
    model: str
    dim: int
    points: int


class _Serialised:
    """Local mode's in-process engine is not thread-safe: one call at a time from this process."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def open_client(settings: Settings) -> QdrantClient:
    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None, timeout=30)
    settings.ensure_data_dir()
    try:
        client = QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:  # portalocker: another process holds the embedded store
        raise StoreBusy(
            f"the embedded index in {settings.qdrant_path} is open in another process "
            "(is `kms serve` or `kms worker` running?)"
        ) from exc
    return cast(QdrantClient, _Serialised(client))


class ChunkStore:
    def __init__(self, client: QdrantClient, layout: CollectionLayout, *, embedded: bool) -> None:
        self.client = client
        self.layout = layout
        self.embedded = embedded

    # ---- collections -------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        return self.layout.name

    def active_collection(self) -> str | None:
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return None

    def info(self, collection: str | None = None) -> IndexInfo | None:
        name = collection or self.active_collection()
        if name is None or not self.client.collection_exists(name):
            return None
        meta = self.client.get_collection(name).config.metadata or {}
        points = self.client.count(name, exact=True).count
        return IndexInfo(
            collection=name, model=str(meta.get("embedder", "")), dim=int(meta.get("dim", 0)), points=points
        )

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

    def create_collection(self, model: str, dim: int) -> str:
        existing = [c.name for c in self.client.get_collections().collections]
        numbers = [
            int(n.rsplit("_", 1)[1])
            for n in existing
            if n.startswith(f"{self.alias}_") and n.rsplit("_", 1)[1].isdigit()
        ]
        name = f"{self.alias}_{max(numbers, default=0) + 1}"
        self.client.create_collection(
            name,
            vectors_config={
                self.layout.dense_name: models.VectorParams(
                    size=dim,
                    distance=_DISTANCE[self.layout.distance.lower()],
                    on_disk=self.layout.dense_on_disk,
                )
            },
            sparse_vectors_config={
                sparse_name: models.SparseVectorParams(
                    modifier=models.Modifier.IDF if modifier == "idf" else models.Modifier.NONE
                )
                for sparse_name, modifier in self.layout.sparse.items()
            },
            hnsw_config=models.HnswConfigDiff(
                m=self.layout.hnsw_m, ef_construct=self.layout.hnsw_ef_construct
            ),
            metadata={"embedder": model, "dim": dim, "created": dt.datetime.now(dt.UTC).isoformat()},
        )
        if not self.embedded:  # local mode ignores payload indexes (and warns): only a server uses them
            for field, kind in self.layout.payload_indexes.items():
                self.client.create_payload_index(name, field, field_schema=_PAYLOAD_SCHEMA[kind])
        return name

    def swap_alias(self, collection: str) -> None:
        operations: list[models.AliasOperations] = []
        if self.active_collection() is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=self.alias)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def drop_collection(self, collection: str) -> None:
        if collection != self.active_collection():
            self.client.delete_collection(collection)

    def other_collections(self) -> list[str]:
        active = self.active_collection()
        return [
            c.name
            for c in self.client.get_collections().collections
            if c.name.startswith(f"{self.alias}_") and c.name != active
        ]

    # ---- writes ------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[ChunkPoint], collection: str | None = None) -> None:
        target = collection or self.alias
        for start in range(0, len(chunks), WRITE_BATCH):
            points = [self._point(c) for c in chunks[start : start + WRITE_BATCH]]
            self.client.upsert(target, points=points, wait=True)

    def _point(self, chunk: ChunkPoint) -> models.PointStruct:
        vector: dict[str, Any] = {self.layout.dense_name: chunk.dense}
        for name, sparse in chunk.sparse.items():
            if sparse.indices:
                vector[name] = models.SparseVector(indices=sparse.indices, values=sparse.values)
        return models.PointStruct(
            id=chunk_point_id(chunk.doc_id, chunk.version, chunk.chunk_no),
            vector=vector,
            payload=chunk.payload,
        )

    def delete_document(
        self, doc_id: str, *, except_version: int | None = None, collection: str | None = None
    ) -> None:
        must_not: list[models.Condition] = []
        if except_version is not None:
            must_not.append(
                models.FieldCondition(key="version", match=models.MatchValue(value=except_version))
            )
        selector = models.Filter(must=[_doc_condition(doc_id)], must_not=must_not or None)
        self.client.delete(
            collection or self.alias, points_selector=models.FilterSelector(filter=selector), wait=True
        )

    def set_payload(self, doc_id: str, payload: dict[str, Any], collection: str | None = None) -> None:
        """Overwrite fields on every chunk of a document (access changes take effect before returning)."""
        self.client.set_payload(
            collection or self.alias,
            payload=payload,
            points=models.Filter(must=[_doc_condition(doc_id)]),
            wait=True,
        )

    def delete_payload_keys(self, doc_id: str, keys: list[str], collection: str | None = None) -> None:
        self.client.delete_payload(
            collection or self.alias,
            keys=keys,
            points=models.Filter(must=[_doc_condition(doc_id)]),
            wait=True,
        )

    # ---- reads -------------------------------------------------------------------------------
    def count(self, query_filter: models.Filter | None) -> int:
        return self.client.count(self.alias, count_filter=query_filter, exact=True).count

    def query(
        self,
        *,
        query: Any,
        using: str,
        query_filter: models.Filter | None,
        limit: int,
        prefetch: list[models.Prefetch] | None = None,
    ) -> list[models.ScoredPoint]:
        response = self.client.query_points(
            self.alias,
            query=query,
            using=using,
            prefetch=prefetch,
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
        )
        return response.points

    def fused_query(
        self,
        *,
        prefetch: list[models.Prefetch],
        weights: list[float],
        k_rrf: int,
        query_filter: models.Filter | None,
        limit: int,
    ) -> list[models.ScoredPoint]:
        response = self.client.query_points(
            self.alias,
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=k_rrf, weights=weights)),
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
        )
        return response.points

    def recommend(
        self, *, positive: list[str], query_filter: models.Filter | None, limit: int
    ) -> list[models.ScoredPoint]:
        response = self.client.query_points(
            self.alias,
            query=models.RecommendQuery(recommend=models.RecommendInput(positive=list(positive))),
            using=self.layout.dense_name,
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
        )
        return response.points

    def scroll(
        self,
        query_filter: models.Filter | None,
        *,
        with_vectors: bool = False,
        collection: str | None = None,
        batch: int = 256,
    ) -> Iterator[models.Record]:
        offset: Any = None
        while True:
            records, offset = self.client.scroll(
                collection or self.alias,
                scroll_filter=query_filter,
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            yield from records
            if offset is None:
                return

    def document_chunks(self, doc_id: str, access: models.Filter | None) -> list[models.Record]:
        conditions: list[models.Condition] = [_doc_condition(doc_id)]
        if access is not None:
            conditions.append(access)
        records = list(self.scroll(models.Filter(must=conditions)))
        return sorted(records, key=lambda r: int((r.payload or {}).get("chunk_no", 0)))

    def close(self) -> None:
        self.client.close()


def _doc_condition(doc_id: str) -> models.FieldCondition:
    return models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))
