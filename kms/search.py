"""Search: query analysis, hybrid dense + sparse retrieval, grouping by document, snippets, facets.

Every read here takes a `Principal` and ANDs `access.qdrant_filter(principal)` (or the registry
clause) into the query, including the prefetches of a fused query.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from kms.db.registry import readable_document
from kms.domain import Principal, SearchFilters, SearchHit, SearchQuery, SearchResult
from kms.errors import InvalidInput, NotFound
from kms.index.sparse import LEX, LEX_FOLDED, SparseVec, encode_query
from kms.security import access
from kms.services import Services
from kms.text.docnumber import doc_number_key, find_doc_numbers
from kms.text.language import detect_language
from kms.text.normalize import has_diacritics, nfc
from kms.text.snippets import make_snippet

FACET_FIELDS = ("doc_type", "issuer", "owner_unit", "year", "language", "classification")
# Qdrant's weighted RRF scores a rank r (1-based) as 1 / (r / weight + k - 1): the weight stretches the
# rank, it does not scale the score. With the textbook k = 60 every weight between 0.3 and 1 gives
# nearly the same score (rank 1: 1/60 vs 1/61.9), so weights would do almost nothing; with k = 2
# (Qdrant's default) they act as intended (rank 1: 0.5 at weight 1 vs 0.26 at weight 0.35).
RRF_K = 2
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”")


@dataclass(frozen=True)
class QueryPlan:
    """How much each retriever counts for this query (0 = not used)."""

    text: str
    dense: float
    lex: float
    folded: float
    doc_number_keys: tuple[str, ...]


def plan_query(text: str, mode: str) -> QueryPlan:
    """Adapt fusion weights to the query (see issue #5 for the measurements behind them)."""
    keys = tuple(doc_number_key(n) for n in find_doc_numbers(text))
    if mode == "dense":
        return QueryPlan(text, 1.0, 0.0, 0.0, keys)
    accented = has_diacritics(text)
    language = detect_language(text)
    exact = bool(keys) or bool(_QUOTED.search(text))
    if mode == "sparse":
        return QueryPlan(text, 0.0, 1.0 if accented else 0.0, 1.0 if not accented else 0.5, keys)
    if language == "en":
        # English over Vietnamese text: lexical overlap is noise that favours English documents, and
        # rank fusion lets even a small weight reorder close dense ranks. Exact numbers still pin.
        return QueryPlan(text, 1.0, 0.0, 0.0, keys)
    if not accented:  # dense embeddings collapse on Vietnamese typed without diacritics
        return QueryPlan(text, 0.35, 0.0, 1.0, keys)
    if exact:
        return QueryPlan(text, 0.6, 1.0, 0.5, keys)
    return QueryPlan(text, 1.0, 0.8, 0.4, keys)


def filter_conditions(filters: SearchFilters) -> list[models.Condition]:
    conditions: list[models.Condition] = []
    for field in ("doc_type", "issuer", "owner_unit", "language", "classification"):
        values = getattr(filters, field)
        if values:
            conditions.append(models.FieldCondition(key=field, match=models.MatchAny(any=list(values))))
    if filters.year:
        conditions.append(models.FieldCondition(key="year", match=models.MatchAny(any=list(filters.year))))
    if filters.date_from or filters.date_to:
        conditions.append(
            models.FieldCondition(
                key="issued_date",
                range=models.DatetimeRange(gte=_midnight(filters.date_from), lte=_midnight(filters.date_to)),
            )
        )
    if filters.doc_ids is not None:
        conditions.append(
            models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(filters.doc_ids)))
            if filters.doc_ids
            else access.MATCH_NOTHING
        )
    return conditions


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


class SearchService:
    def __init__(self, services: Services) -> None:
        self.services = services

    # ---- search ------------------------------------------------------------------------------
    def search(self, principal: Principal, query: SearchQuery) -> SearchResult:
        text = nfc(query.query).strip()
        if not text:
            raise InvalidInput("query must not be empty")
        if len(text) > self.services.settings.max_query_chars:
            raise InvalidInput(f"query is longer than {self.services.settings.max_query_chars} characters")
        plan = plan_query(text, query.mode)
        query_filter = access.combine(self._access(principal), filter_conditions(query.filters))
        candidates = max(100, (query.offset + query.k) * 6)
        points = self._retrieve(plan, query_filter, candidates)
        pinned = self._exact_number_matches(plan, query_filter)
        groups = _group_by_document([*pinned, *points])
        hits = [
            self._hit(point, text, score) for point, score in groups[query.offset : query.offset + query.k]
        ]
        return SearchResult(results=hits, total=len(groups), facets=_facets([p for p, _ in groups]))

    def _access(self, principal: Principal) -> models.Filter | None:
        return access.qdrant_filter(principal, self.services.classification)

    def _retrieve(
        self, plan: QueryPlan, query_filter: models.Filter | None, limit: int
    ) -> list[models.ScoredPoint]:
        store = self.services.store
        prefetch: list[models.Prefetch] = []
        weights: list[float] = []
        if plan.dense > 0:
            vector = self.services.query_embedder.embed_queries([plan.text])[0].tolist()
            prefetch.append(
                models.Prefetch(query=vector, using=store.layout.dense_name, filter=query_filter, limit=limit)
            )
            weights.append(plan.dense)
        sparse = encode_query(plan.text)
        for name, weight in ((LEX, plan.lex), (LEX_FOLDED, plan.folded)):
            if weight > 0 and sparse[name].indices:
                prefetch.append(
                    models.Prefetch(query=_sparse(sparse[name]), using=name, filter=query_filter, limit=limit)
                )
                weights.append(weight)
        if not prefetch:
            return []
        if len(prefetch) == 1:
            only = prefetch[0]
            return store.query(
                query=only.query, using=str(only.using), query_filter=query_filter, limit=limit
            )
        return store.fused_query(
            prefetch=prefetch, weights=weights, k_rrf=RRF_K, query_filter=query_filter, limit=limit
        )

    def _exact_number_matches(
        self, plan: QueryPlan, query_filter: models.Filter | None
    ) -> list[models.ScoredPoint]:
        """Chunks of documents whose own number the query names: they rank first."""
        if not plan.doc_number_keys:
            return []
        condition = models.FieldCondition(
            key="doc_number_key", match=models.MatchAny(any=list(plan.doc_number_keys))
        )
        combined = access.combine(query_filter, [condition])
        records = self.services.store.scroll(combined)
        best: dict[str, models.Record] = {}
        for record in records:
            payload = record.payload or {}
            doc_id = str(payload.get("doc_id"))
            if doc_id not in best or payload.get("chunk_no", 0) < (best[doc_id].payload or {}).get(
                "chunk_no", 0
            ):
                best[doc_id] = record
        return [models.ScoredPoint(id=r.id, version=0, score=1.0, payload=r.payload) for r in best.values()]

    def _hit(self, point: models.ScoredPoint, query_text: str, score: float) -> SearchHit:
        payload = point.payload or {}
        snippet, highlights = make_snippet(str(payload.get("text", "")), query_text)
        return _hit_from_payload(payload, score, snippet, highlights)

    # ---- documents ---------------------------------------------------------------------------
    def similar(self, principal: Principal, doc_id: str, k: int) -> list[SearchHit]:
        access_filter = self._access(principal)
        chunks = self.services.store.document_chunks(doc_id, access_filter)
        if not chunks or not self._readable_in_registry(principal, doc_id):
            raise NotFound()
        exclude = models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))
        query_filter = models.Filter(must=[access_filter] if access_filter else None, must_not=[exclude])
        points = self.services.store.recommend(
            positive=[str(c.id) for c in chunks[:8]], query_filter=query_filter, limit=max(50, k * 6)
        )
        groups = _group_by_document(points)[:k]
        return [
            _hit_from_payload(
                p.payload or {}, score, *make_snippet(str((p.payload or {}).get("text", "")), "")
            )
            for p, score in groups
        ]

    def document(self, principal: Principal, doc_id: str) -> dict[str, Any]:
        with self.services.sessions() as session:
            row = readable_document(session, doc_id, principal, self.services.classification)
            if row is None:
                raise NotFound()
            return {**row.as_meta(), "text": row.text, "chunk_count": row.chunk_count, "version": row.version}

    def _readable_in_registry(self, principal: Principal, doc_id: str) -> bool:
        with self.services.sessions() as session:
            return readable_document(session, doc_id, principal, self.services.classification) is not None


def _sparse(vector: SparseVec) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def _group_by_document(points: list[models.ScoredPoint]) -> list[tuple[models.ScoredPoint, float]]:
    """Keep each document once, at the rank of its best chunk."""
    best: dict[str, tuple[models.ScoredPoint, float]] = {}
    for point in points:
        doc_id = str((point.payload or {}).get("doc_id"))
        if doc_id not in best:
            best[doc_id] = (point, float(point.score))
    return list(best.values())


def _facets(points: list[models.ScoredPoint]) -> dict[str, dict[str, int]]:
    facets: dict[str, dict[str, int]] = {}
    for field in FACET_FIELDS:
        counts = Counter(str(v) for p in points if (v := (p.payload or {}).get(field)) not in (None, ""))
        facets[field] = dict(counts.most_common())
    return facets


def _hit_from_payload(
    payload: dict[str, Any], score: float, snippet: str, highlights: list[tuple[int, int]]
) -> SearchHit:
    return SearchHit(
        doc_id=str(payload.get("doc_id")),
        title=str(payload.get("title") or ""),
        doc_number=payload.get("doc_number"),
        doc_type=str(payload.get("doc_type") or "other"),
        issuer=payload.get("issuer"),
        issued_date=payload.get("issued_date"),
        language=str(payload.get("language") or "vi"),
        classification=payload.get("classification"),
        owner_unit=payload.get("owner_unit"),
        score=round(score, 6),
        snippet=snippet,
        highlights=[(int(a), int(b)) for a, b in highlights],
        chunk_no=int(payload.get("chunk_no", 0)),
    )
