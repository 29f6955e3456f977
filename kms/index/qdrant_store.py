"""Store backends on qdrant-client: `local` (its embedded mode, a file store in the data dir searched by
brute force in Python) and `server` (a Qdrant server or cluster at KMS_QDRANT_URL)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

from qdrant_client import QdrantClient, models

from kms.config import CollectionLayout, Settings
from kms.errors import StoreBusy
from kms.index.base import (
    WRITE_BATCH,
    ChunkPoint,
    ChunkStore,
    IndexInfo,
    ScoredChunk,
    chunk_point_id,
    doc_condition,
    payload_selector,
    scored_chunks,
    version_condition,
)

log = logging.getLogger(__name__)

PAYLOAD_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
}
_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}


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


class QdrantChunkStore(ChunkStore):
    def __init__(self, client: QdrantClient, layout: CollectionLayout, *, embedded: bool) -> None:
        super().__init__(layout)
        self.client = client
        self.backend = "local" if embedded else "server"

    # ---- collections -------------------------------------------------------------------------
    def active_collection(self) -> str | None:
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return None

    def collections(self) -> list[str]:
        return [
            c.name for c in self.client.get_collections().collections if c.name.startswith(f"{self.alias}_")
        ]

    def info(self, collection: str | None = None) -> IndexInfo | None:
        name = collection or self.active_collection()
        if name is None or not self.client.collection_exists(name):
            return None
        meta = self.client.get_collection(name).config.metadata or {}
        points = self.client.count(name, exact=True).count
        return IndexInfo(
            collection=name, model=str(meta.get("embedder", "")), dim=int(meta.get("dim", 0)), points=points
        )

    def create_collection(self, model: str, dim: int) -> str:
        name = self.next_collection_name()
        layout = self.layout
        quantization: models.ScalarQuantization | None = None
        if layout.quantization and not self.embedded:  # local mode has no quantization
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=layout.quantile, always_ram=True
                )
            )
        self.client.create_collection(
            name,
            vectors_config={
                layout.dense_name: models.VectorParams(
                    size=dim, distance=_DISTANCE[layout.distance.lower()], on_disk=layout.dense_on_disk
                )
            },
            sparse_vectors_config={
                sparse_name: models.SparseVectorParams(
                    modifier=models.Modifier.IDF if modifier == "idf" else models.Modifier.NONE,
                    index=models.SparseIndexParams(on_disk=sparse_name in layout.sparse_on_disk),
                )
                for sparse_name, modifier in layout.sparse.items()
            },
            hnsw_config=models.HnswConfigDiff(
                m=layout.hnsw_m,
                ef_construct=layout.hnsw_ef_construct,
                full_scan_threshold=layout.full_scan_threshold_kb,
            ),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=layout.indexing_threshold_kb),
            quantization_config=quantization,
            metadata={"embedder": model, "dim": dim, "created": dt.datetime.now(dt.UTC).isoformat()},
        )
        if not self.embedded:  # local mode ignores payload indexes (and warns): only a server uses them
            for field, kind in layout.payload_indexes.items():
                self.client.create_payload_index(name, field, field_schema=PAYLOAD_SCHEMA[kind])
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
            must_not.append(version_condition(except_version))
        selector = models.Filter(must=[doc_condition(doc_id)], must_not=must_not or None)
        self.client.delete(
            collection or self.alias, points_selector=models.FilterSelector(filter=selector), wait=True
        )

    def set_payload(self, doc_id: str, payload: dict[str, Any], collection: str | None = None) -> None:
        self.client.set_payload(
            collection or self.alias,
            payload=payload,
            points=models.Filter(must=[doc_condition(doc_id)]),
            wait=True,
        )

    def delete_payload_keys(self, doc_id: str, keys: list[str], collection: str | None = None) -> None:
        self.client.delete_payload(
            collection or self.alias,
            keys=keys,
            points=models.Filter(must=[doc_condition(doc_id)]),
            wait=True,
        )

    # ---- reads -------------------------------------------------------------------------------
    def _params(self) -> models.SearchParams | None:
        if self.embedded:  # local mode is exact anyway
            return None
        return models.SearchParams(
            hnsw_ef=self.layout.hnsw_ef,
            quantization=models.QuantizationSearchParams(
                rescore=self.layout.rescore, oversampling=self.layout.oversampling
            ),
        )

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
        fields: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        response = self.client.query_points(
            self.alias,
            query=query,
            using=using,
            prefetch=prefetch,
            query_filter=query_filter,
            search_params=self._params(),
            limit=limit,
            with_payload=payload_selector(fields),
        )
        return scored_chunks(response.points)

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
        params = self._params()
        if params is not None:
            prefetch = [p.model_copy(update={"params": p.params or params}) for p in prefetch]
        query: models.RrfQuery | models.FusionQuery = (
            models.FusionQuery(fusion=models.Fusion.DBSF)
            if fusion == "dbsf"
            else models.RrfQuery(rrf=models.Rrf(k=k_rrf, weights=weights))
        )
        response = self.client.query_points(
            self.alias,
            prefetch=prefetch,
            query=query,
            query_filter=query_filter,
            limit=limit,
            with_payload=payload_selector(fields),
        )
        return scored_chunks(response.points)

    def recommend(
        self, *, positive: list[str], query_filter: models.Filter | None, limit: int
    ) -> list[ScoredChunk]:
        response = self.client.query_points(
            self.alias,
            query=models.RecommendQuery(recommend=models.RecommendInput(positive=list(positive))),
            using=self.layout.dense_name,
            query_filter=query_filter,
            search_params=self._params(),
            limit=limit,
            with_payload=True,
        )
        return scored_chunks(response.points)

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

    def close(self) -> None:
        self.client.close()
