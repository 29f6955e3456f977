"""Search: query analysis, hybrid dense + sparse retrieval, grouping by document, snippets, facets.

Every read here takes a `Principal` and ANDs `access.qdrant_filter(principal)` (or the registry
clause) into the query, including the prefetches of a fused query.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from qdrant_client import models

from kms.db.registry import readable_document
from kms.domain import Principal, SearchFilters, SearchHit, SearchQuery, SearchResult
from kms.errors import InvalidInput, NotFound
from kms.index.sparse import LEX, LEX_FOLDED, SparseVec, encode_query
from kms.index.store import ScoredChunk
from kms.inflight import SEARCHES
from kms.rerank import Reranker, create_reranker
from kms.security import access
from kms.services import Services
from kms.text.docnumber import doc_number_key, find_doc_numbers
from kms.text.language import detect_language
from kms.text.normalize import has_diacritics, nfc, search_key, single_spaced
from kms.text.snippets import make_snippet

FACET_FIELDS = ("doc_type", "issuer", "owner_unit", "year", "language", "classification")
CANDIDATE_FIELDS = ("doc_id", "chunk_no", *FACET_FIELDS)
# Qdrant's weighted RRF scores a rank r (1-based) as 1 / (r / weight + k - 1): the weight stretches the
# rank, it does not scale the score. With the textbook k = 60 every weight between 0.3 and 1 gives
# nearly the same score (rank 1: 1/60 vs 1/61.9), so weights would do almost nothing; with k = 2
# (Qdrant's default) they act as intended (rank 1: 0.5 at weight 1 vs 0.26 at weight 0.35).
RRF_K = 2
# Fusion of the retrievers (see `plan_query`): distribution-based score fusion (each list's scores
# normalised by mean ± 3 sd, then summed) measured better than weighted RRF at k = 60 or k = 1-3 on
# both dev sets, with and without diacritics (README, "Relevance"). DBSF takes no weights, so a
# retriever that should count twice is sent twice. "rrf" (with RRF_K and the plan's weights) remains
# available here for comparison.
FUSION = "dbsf"
# Chunks each retriever returns before fusion: fixed for every page up to the SHALLOW_DOCUMENTS-th
# document, so those pages rank the same whatever `k` and `offset` are (DBSF normalises each list by
# its own mean and spread). 100 chunks hold 66-96 documents on both dev sets; should they hold fewer
# than a page needs, it reads once more, deeper. Pages past SHALLOW_DOCUMENTS read a depth of their
# own, at least 2x and 6 chunks per wanted document (`kms eval`'s 100 documents: 600 chunks).
# Measured at 100k chunks, hybrid, k = 10, in-process: 100 instead of 200 took search p50 32.3 ->
# 24.5 ms (the dense side walks limit x oversampling = 200 instead of 400 int8 candidates), nDCG@10
# alqac 0.954 -> 0.955, xquad 0.980 -> 0.981 (without diacritics 0.899 -> 0.900 and 0.963 -> 0.962).
# Facets and totals count the documents among the candidates.
PREFETCH_DEPTH = 100
SHALLOW_DOCUMENTS = 50
CHUNKS_PER_WANTED_DOCUMENT = 6
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|«([^»]+)»")


@dataclass(frozen=True)
class QueryPlan:
    """How much each retriever counts for this query (0 = not used), and why."""

    text: str
    dense: float
    lex: float
    folded: float
    doc_number_keys: tuple[str, ...]
    kind: str = "vi"  # vi | vi_nodiacritics | en | exact | dense | sparse
    phrases: tuple[str, ...] = ()  # quoted phrases, as search keys (folded, lowercase)
    # Dense search also once per document language (see `plan_query`), so that documents in the
    # query's language don't win on language alone.
    balance_languages: bool = False


def quoted_phrases(text: str) -> tuple[str, ...]:
    """The phrases a query puts in quotes, as `search_key`s (matching ignores case and diacritics)."""
    found = (next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text))
    keys = (single_spaced(search_key(phrase)) for phrase in found)
    return tuple(dict.fromkeys(key for key in keys if key))


def plan_query(text: str, mode: str) -> QueryPlan:
    """Adapt the retrievers' weights to the query (measurements: README, "Relevance").

    - English queries (no Vietnamese letters): dense only, run three times - over everything, over
      Vietnamese documents, over the others - and fused, each list normalised on its own. An English
      query sits closer to any English text than to the Vietnamese document that answers it; the
      per-language lists take that offset out, the overall list keeps a strong same-language match.
      Lexical overlap with an English query mostly finds English documents too, so it is left out.
    - Vietnamese without diacritics: dense embeddings collapse on such text; the folded index counts
      twice, dense once.
    - Document numbers and quoted phrases: exact terms matter; the exact-form index counts twice.
    - Vietnamese with diacritics: dense and the exact-form lexical index, equally.
    A document whose own number the query names is pinned first in every mode.
    """
    keys = tuple(doc_number_key(n) for n in find_doc_numbers(text))
    phrases = quoted_phrases(text)
    if mode == "dense":
        return QueryPlan(text, 1.0, 0.0, 0.0, keys, "dense", phrases)
    accented = has_diacritics(text)
    if mode == "sparse":
        return QueryPlan(text, 0.0, *((1.0, 0.0) if accented else (0.0, 1.0)), keys, "sparse", phrases)
    if not accented and detect_language(text) == "en":  # Vietnamese letters: a Vietnamese query with names
        return QueryPlan(text, 1.0, 0.0, 0.0, keys, "en", phrases, balance_languages=True)
    if not accented:
        return QueryPlan(text, 1.0, 0.0, 2.0, keys, "vi_nodiacritics", phrases)
    if keys or phrases:
        return QueryPlan(text, 1.0, 2.0, 0.0, keys, "exact", phrases)
    return QueryPlan(text, 1.0, 1.0, 0.0, keys, "vi", phrases)


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
    def __init__(self, services: Services, *, reranker: Reranker | None = None) -> None:
        self.services = services
        self.reranker = reranker if reranker is not None else create_reranker(services.settings.reranker)

    # ---- search ------------------------------------------------------------------------------
    def search(self, principal: Principal, query: SearchQuery) -> SearchResult:
        with SEARCHES:
            return self._search(principal, query)

    def _search(self, principal: Principal, query: SearchQuery) -> SearchResult:
        started = time.perf_counter()
        text = nfc(query.query).strip()
        if not text:
            raise InvalidInput("query must not be empty")
        if len(text) > self.services.settings.max_query_chars:
            raise InvalidInput(f"query is longer than {self.services.settings.max_query_chars} characters")
        plan = plan_query(text, query.mode)
        # What calling the index directly costs: the access filter, the query embedding and every
        # store call (timings "retrieve": up to the candidates, "index": all of them).
        index, embed = _Stopwatch(), _Stopwatch()
        with index:
            query_filter = access.combine(self._access(principal), filter_conditions(query.filters))
            vector = self._query_vector(plan, embed)
            wanted = query.offset + query.k
            depth = PREFETCH_DEPTH if wanted <= SHALLOW_DOCUMENTS else _deep(wanted)
            # Only the fields grouping and facets need: reading whole payloads (texts) of 600
            # candidates cost more than the search itself (77 vs 10 ms at 100k chunks).
            points = self._retrieve(plan, query_filter, depth, fields=CANDIDATE_FIELDS, vector=vector)
        groups = _group_by_document(points)
        if depth == PREFETCH_DEPTH and len(groups) < wanted and len(points) >= depth:
            with index:  # the shallow candidates hold fewer documents than the page reaches
                points = self._retrieve(
                    plan, query_filter, _deep(wanted), fields=CANDIDATE_FIELDS, vector=vector
                )
            groups = _group_by_document(points)
        retrieve_ms = index.ms
        whole = plan.phrases or self.reranker is not None  # both read the candidates' texts
        if whole:
            with index:
                groups = self._with_payloads(groups, query_filter)
        if plan.phrases:
            groups = _phrase_matches_first(groups, plan.phrases)
        if self.reranker is not None:
            groups = self._rerank(text, groups)
        with index:
            numbered = self._exact_number_matches(plan, query_filter)
        groups = _pin(_group_by_document(numbered), groups)
        page = groups[query.offset : query.offset + query.k]
        if not whole:
            with index:
                page = self._with_payloads(page, query_filter)
        hits = [self._hit(point, text, score) for point, score in page]
        facets = _facets([p for p, _ in groups])
        timings = {
            "embed": embed.ms,
            "retrieve": retrieve_ms,
            "index": index.ms,
            "search": (time.perf_counter() - started) * 1000,
        }
        return SearchResult(results=hits, total=len(groups), facets=facets, timings=timings)

    def _with_payloads(
        self, groups: list[tuple[ScoredChunk, float]], query_filter: models.Filter | None
    ) -> list[tuple[ScoredChunk, float]]:
        """The candidates with their whole payloads, read again under the same access filter: a
        chunk whose access changed since the search is dropped, never shown with stale rights."""
        if not groups:
            return groups
        wanted = models.HasIdCondition(has_id=[point.id for point, _ in groups])
        payloads = {
            str(record.id): record.payload or {}
            for record in self.services.store.scroll(access.combine(query_filter, [wanted]))
        }
        return [
            (replace(point, payload=payloads[point.id]), score)
            for point, score in groups
            if point.id in payloads
        ]

    def _access(self, principal: Principal) -> models.Filter | None:
        return access.qdrant_filter(principal, self.services.classification)

    def _query_vector(self, plan: QueryPlan, embed_clock: _Stopwatch | None = None) -> list[float] | None:
        if plan.dense <= 0:
            return None
        with embed_clock or contextlib.nullcontext():
            vector: list[float] = self.services.query_embedder.embed_queries([plan.text])[0].tolist()
        return vector

    def _retrieve(
        self,
        plan: QueryPlan,
        query_filter: models.Filter | None,
        limit: int,
        *,
        fields: Sequence[str] | None = None,
        vector: list[float] | None = None,
    ) -> list[ScoredChunk]:
        """Chunks best first: one retriever alone, or the plan's retrievers fused in Qdrant
        (`vector`: the query's embedding, if already made)."""
        store = self.services.store
        prefetch: list[models.Prefetch] = []
        weights: list[float] = []
        if plan.dense > 0:
            vector = vector if vector is not None else self._query_vector(plan)
            for dense_filter in _language_filters(query_filter) if plan.balance_languages else [query_filter]:
                prefetch.append(
                    models.Prefetch(
                        query=vector, using=store.layout.dense_name, filter=dense_filter, limit=limit
                    )
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
            points = _best_first(
                store.query(
                    query=only.query,
                    using=str(only.using),
                    query_filter=query_filter,
                    limit=limit,
                    fields=fields,
                )
            )
            # Raw sparse scores carry collection-wide IDF, i.e. statistics of documents the caller
            # may not read: return rank-based scores instead (fused scores are already normalised).
            for rank, point in enumerate(points):
                point.score = 1.0 / (rank + 1)
            return points
        if FUSION == "dbsf":  # no weights in DBSF: a retriever weighted n is sent n times
            prefetch = [p for p, w in zip(prefetch, weights, strict=True) for _ in range(max(1, round(w)))]
        return _best_first(
            store.fused_query(
                prefetch=prefetch,
                weights=weights,
                k_rrf=RRF_K,
                query_filter=query_filter,
                limit=limit,
                fusion=FUSION,
                fields=fields,
            )
        )

    def _exact_number_matches(self, plan: QueryPlan, query_filter: models.Filter | None) -> list[ScoredChunk]:
        """Chunks of documents whose own number the query names (first chunk of each): they rank first."""
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
        return [ScoredChunk(str(r.id), 1.0, r.payload or {}) for _, r in sorted(best.items())]

    def _rerank(self, text: str, groups: list[tuple[ScoredChunk, float]]) -> list[tuple[ScoredChunk, float]]:
        """Reorder the first `rerank_depth` documents by the reranker's score of their best chunk."""
        assert self.reranker is not None
        head = groups[: self.services.settings.rerank_depth]
        if not head:
            return groups
        passages = [_passage(point.payload) for point, _ in head]
        scores = self.reranker.score(text, passages)
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        reranked = [(head[i][0], scores[i]) for i in order]
        floor = min(scores)
        tail = [(point, floor - 1.0 - i) for i, (point, _) in enumerate(groups[len(head) :])]
        return reranked + tail

    def _hit(self, point: ScoredChunk, query_text: str, score: float) -> SearchHit:
        payload = point.payload
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
        points = _best_first(
            self.services.store.recommend(
                positive=[str(c.id) for c in chunks[:8]], query_filter=query_filter, limit=max(50, k * 6)
            )
        )
        groups = _group_by_document(points)[:k]
        return [
            _hit_from_payload(p.payload, score, *make_snippet(str(p.payload.get("text", "")), ""))
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


class _Stopwatch:
    """Milliseconds spent inside its `with` blocks, added up."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self.ms += (time.perf_counter() - self._started) * 1000


def _deep(wanted: int) -> int:
    """Candidate chunks for a page reaching the `wanted`-th document past the shallow ones."""
    return max(2 * PREFETCH_DEPTH, wanted * CHUNKS_PER_WANTED_DOCUMENT)


def _sparse(vector: SparseVec) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def _best_first(points: list[ScoredChunk]) -> list[ScoredChunk]:
    """Best score first, equal scores in chunk-id order. The engine's fusion returns equal scores in
    no fixed order (from one call to the next), and copies of one text (a circular sent to every
    mission) score exactly alike: without a fixed order the same search would rank them differently
    and a reader paging through them would see one twice and miss another."""
    return sorted(points, key=lambda point: (-point.score, point.id))


def _group_by_document(points: list[ScoredChunk]) -> list[tuple[ScoredChunk, float]]:
    """Keep each document once, at the rank (and with the score) of its best chunk."""
    best: dict[str, tuple[ScoredChunk, float]] = {}
    for point in points:  # a search groups hundreds of candidates: no str() of what is one already
        doc_id = point.payload.get("doc_id")
        if type(doc_id) is not str:
            doc_id = str(doc_id)
        if doc_id not in best:
            best[doc_id] = (point, float(point.score))
    return list(best.values())


def _language_filters(query_filter: models.Filter | None) -> list[models.Filter | None]:
    """`query_filter` narrowed to Vietnamese documents, and to all the others (both keep its access part)."""
    vietnamese = models.FieldCondition(key="language", match=models.MatchValue(value="vi"))
    others = models.Filter(must_not=[vietnamese])
    return [query_filter, access.combine(query_filter, [vietnamese]), access.combine(query_filter, [others])]


def _doc_id(point: ScoredChunk) -> str:
    return str(point.payload.get("doc_id"))


def _pin(
    pinned: list[tuple[ScoredChunk, float]], groups: list[tuple[ScoredChunk, float]]
) -> list[tuple[ScoredChunk, float]]:
    """Put `pinned` documents first, scored above everything else, the rest in order after them."""
    if not pinned:
        return groups
    ids = {_doc_id(point) for point, _ in pinned}
    rest = [group for group in groups if _doc_id(group[0]) not in ids]
    top = max((score for _, score in rest), default=0.0)
    # A pinned document keeps the chunk retrieval chose for it (a better snippet) when there was one.
    chosen = {_doc_id(point): point for point, _ in groups if _doc_id(point) in ids}
    head = [
        (chosen.get(_doc_id(point), point), top + float(len(pinned) - i))
        for i, (point, _) in enumerate(pinned)
    ]
    return head + rest


def _phrase_matches_first(
    groups: list[tuple[ScoredChunk, float]], phrases: tuple[str, ...]
) -> list[tuple[ScoredChunk, float]]:
    """Documents whose best chunk holds every quoted phrase (ignoring case and diacritics) move ahead
    of the others; both parts keep their order, and the scores stay in descending order."""

    patterns = [re.compile(rf"(?<![^\W_]){re.escape(phrase)}(?![^\W_])") for phrase in phrases]

    def holds(point: ScoredChunk) -> bool:
        payload = point.payload
        text = single_spaced(search_key(f"{payload.get('title') or ''} {payload.get('text') or ''}"))
        return all(pattern.search(text) for pattern in patterns)

    flags = [holds(point) for point, _ in groups]
    matched = [group for group, flag in zip(groups, flags, strict=True) if flag]
    if not matched or len(matched) == len(groups):
        return groups
    others = [group for group, flag in zip(groups, flags, strict=True) if not flag]
    lift = max(score for _, score in others) - min(score for _, score in matched)
    return [(point, score + max(0.0, lift) + 1.0) for point, score in matched] + others


def _passage(payload: dict[str, Any]) -> str:
    title = str(payload.get("title") or "")
    text = str(payload.get("text") or "")
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def _facets(points: list[ScoredChunk]) -> dict[str, dict[str, int]]:
    rows = [p.payload for p in points]
    return {field: _facet(rows, field) for field in FACET_FIELDS}


def _facet(rows: list[dict[str, Any]], field: str) -> dict[str, int]:
    """How many rows hold each value of `field` (as text; none and empty left out), most first.

    Text and integer values are counted as they are, in C, and named after: a third faster than
    counting their texts, with the same counts and order. Others (floats and booleans equal to
    integers, lists from a malformed payload) are counted by their text."""
    values = [row.get(field) for row in rows]
    if not set(map(type, values)) <= _COUNTED_AS_THEY_ARE:
        return dict(Counter(str(v) for v in values if v not in (None, "")).most_common())
    raw = Counter(values)
    raw.pop(None, None)
    raw.pop("", None)
    named: Counter[str] = Counter()
    for value, count in raw.items():
        named[value if type(value) is str else str(value)] += count
    return dict(named.most_common())


_COUNTED_AS_THEY_ARE = frozenset({str, int, type(None)})


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _hit_from_payload(
    payload: dict[str, Any], score: float, snippet: str, highlights: list[tuple[int, int]]
) -> SearchHit:
    return SearchHit(
        doc_id=str(payload.get("doc_id")),
        title=str(payload.get("title") or ""),
        doc_number=_text(payload.get("doc_number")),
        doc_type=str(payload.get("doc_type") or "other"),
        issuer=_text(payload.get("issuer")),
        issued_date=_text(payload.get("issued_date")),
        language=str(payload.get("language") or "vi"),
        classification=_text(payload.get("classification")),
        owner_unit=_text(payload.get("owner_unit")),
        score=round(score, 6),
        snippet=snippet,
        highlights=[(int(a), int(b)) for a, b in highlights],
        chunk_no=int(payload.get("chunk_no", 0)),
    )
