"""SearchService on a small real index: ranking rules, grouping, options, reranking, access on every read."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from search_corpus import DOCS

import kms.search
from kms.domain import Principal, SearchFilters, SearchQuery
from kms.search import SearchService
from kms.security import access
from kms.services import Services

MODES = ("hybrid", "dense", "sparse")
OPERATOR = Principal.operator()
# Public documents only (no unit:hq/consular token): must never see `secret-protection` or `unit-only`.
MISSION_READER = Principal(user_id="reader1", clearance="confidential", unit="mission/jp-tokyo")
CONSULAR_PUBLIC = Principal(
    user_id="reader2", clearance="public", unit="hq/consular"
)  # unit ok, clearance not


def search(services: Services, text: str, principal: Principal = OPERATOR, **options: object):  # type: ignore[no-untyped-def]
    return SearchService(services).search(principal, SearchQuery(query=text, **options))  # type: ignore[arg-type]


def ids(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [hit.doc_id for hit in result.results]


@pytest.mark.parametrize("mode", MODES)
def test_exact_document_number_ranks_its_document_first(search_services: Services, mode: str) -> None:
    for text in ("12/NQ-CP", "nghị quyết 12/nq-cp về kinh tế số"):
        result = search(search_services, text, mode=mode, k=5)
        assert ids(result)[0] == "nq-12", (mode, text, ids(result))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["bảo hộ công dân", "bao ho cong dan", "12/NQ-CP", "consular protection"])
def test_scores_descend_and_documents_appear_once(search_services: Services, mode: str, text: str) -> None:
    hits = search(search_services, text, mode=mode, k=20).results
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True), (mode, text, scores)
    assert len({hit.doc_id for hit in hits}) == len(hits)


def test_long_document_is_one_result(search_services: Services) -> None:
    with search_services.sessions() as session:
        from kms.db.models import DocumentRow

        assert (session.get(DocumentRow, "long") or DocumentRow()).chunk_count > 1
    result = search(search_services, "lưu giữ hồ sơ tài liệu mật tại cơ quan đại diện", k=10)
    assert ids(result).count("long") == 1 and ids(result)[0] == "long"


def test_query_without_diacritics_finds_and_highlights_the_accented_text(search_services: Services) -> None:
    hit = search(search_services, "trong tai thuong mai", k=3).results[0]
    assert hit.doc_id == "phrase"
    marked = [hit.snippet[a:b].lower() for a, b in hit.highlights]
    assert "trọng tài thương mại" in marked


def test_quoted_phrase_ranks_documents_holding_it_first(search_services: Services) -> None:
    for text in ('"trọng tài thương mại"', '"trong tai thuong mai" giải quyết tranh chấp'):
        assert ids(search(search_services, text, k=3))[0] == "phrase", text


def test_k_and_offset_page_through_one_ranking(search_services: Services) -> None:
    full = ids(search(search_services, "bảo hộ công dân", k=6))
    pages = ids(search(search_services, "bảo hộ công dân", k=3)) + ids(
        search(search_services, "bảo hộ công dân", k=3, offset=3)
    )
    assert pages == full[:6]


def test_a_page_past_the_candidates_reads_deeper(
    search_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = search(search_services, "bảo hộ công dân", k=5)
    assert len(full.results) == 5
    monkeypatch.setattr(kms.search, "PREFETCH_DEPTH", 2)  # two chunks: at most two documents
    monkeypatch.setattr(kms.search, "SHALLOW_DOCUMENTS", 5)  # pages up to the 5th read them first
    shallow = search(search_services, "bảo hộ công dân", k=1)
    assert 1 <= shallow.total <= 2  # facets and totals count the candidates
    assert sum(shallow.facets["doc_type"].values()) == shallow.total
    deep = search(search_services, "bảo hộ công dân", k=5)
    assert len(deep.results) == 5 and deep.total > 2
    offset = search(search_services, "bảo hộ công dân", k=2, offset=3)
    assert ids(offset) == ids(deep)[3:5]  # both read the same deeper candidates


def test_filters_and_facets(search_services: Services) -> None:
    result = search(search_services, "bảo hộ công dân", k=20, filters=SearchFilters(doc_type=["guidance"]))
    assert result.results and {hit.doc_type for hit in result.results} == {"guidance"}
    assert set(result.facets["doc_type"]) == {"guidance"}
    everything = search(search_services, "bảo hộ công dân", k=20)
    assert set(everything.facets) == {
        "doc_type",
        "issuer",
        "owner_unit",
        "year",
        "language",
        "classification",
    }
    assert sum(everything.facets["doc_type"].values()) == everything.total


def _readable(services: Services, principal: Principal) -> set[str]:
    return {
        doc_id
        for doc_id, (_, meta) in DOCS.items()
        if access.can_read(
            principal,
            {"classification": meta["classification"], "allow": meta["allow"]},
            services.classification,
        )
    }


@pytest.mark.parametrize("principal", [MISSION_READER, CONSULAR_PUBLIC, OPERATOR], ids=lambda p: p.user_id)
@pytest.mark.parametrize("mode", MODES)
def test_results_facets_and_snippets_show_only_readable_documents(
    search_services: Services, principal: Principal, mode: str
) -> None:
    readable = _readable(search_services, principal)
    for text in ("bảo hộ công dân tuyệt mật sơ tán", "bao ho cong dan", "liên lạc khẩn cấp", "12/NQ-CP"):
        result = search(search_services, text, principal, mode=mode, k=50)
        assert set(ids(result)) <= readable, (text, ids(result))
        assert result.total == len(result.results)  # the candidate set behind the facets
        facet_values = {value for counts in result.facets.values() for value in counts}
        hidden = [DOCS[d][1] for d in set(DOCS) - readable]
        for meta in hidden:  # values only hidden documents carry must not show up in facets
            for field in ("issuer", "owner_unit"):
                value = meta.get(field)
                if value and not any(DOCS[d][1].get(field) == value for d in readable):
                    assert value not in facet_values, (text, field, value)
        for hit in result.results:
            assert "tuyệt mật" not in hit.snippet.lower() or hit.doc_id in readable


def test_similar_shows_only_readable_documents(search_services: Services) -> None:
    service = SearchService(search_services)
    readable = _readable(search_services, MISSION_READER)
    similar = service.similar(MISSION_READER, "consular-protection", 10)
    assert similar and {hit.doc_id for hit in similar} <= readable - {"consular-protection"}


class ReverseReranker:
    """A test double for the reranking interface: prefers the passages the first stage ranked last."""

    name = "reverse"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        self.seen.extend(passages)
        return [float(i) for i in range(len(passages))]


def test_reranker_reorders_the_head_of_readable_documents_only(search_services: Services) -> None:
    plain = ids(search(search_services, "bảo hộ công dân", MISSION_READER, k=10))
    reranker = ReverseReranker()
    service = SearchService(search_services, reranker=reranker)
    result = service.search(MISSION_READER, SearchQuery(query="bảo hộ công dân", k=10))
    depth = search_services.settings.rerank_depth
    assert [hit.doc_id for hit in result.results] == list(reversed(plain[:depth])) + plain[depth:]
    assert not any("tuyệt mật" in passage for passage in reranker.seen)
    scores = [hit.score for hit in result.results]
    assert scores == sorted(scores, reverse=True)


def test_reranking_is_off_by_default(search_services: Services) -> None:
    assert search_services.settings.reranker == ""
    assert SearchService(search_services).reranker is None


def test_english_query_finds_the_vietnamese_answer_despite_an_english_document(
    search_services: Services,
) -> None:
    # `english` is an English report on consular protection; the Vietnamese guidance must still rank.
    found = ids(search(search_services, "guidance on consular visits and help for citizens abroad", k=3))
    assert "consular-protection" in found


def test_a_search_counts_as_running_while_it_runs_and_not_after(search_services: Services) -> None:
    """What the query embedder reads to decide its threads (kms/inflight.py), also after a failure."""
    from kms.errors import InvalidInput
    from kms.inflight import SEARCHES

    seen: list[int] = []
    embedder = search_services.query_embedder
    original = embedder.embed_queries

    def counting(texts: list[str]):  # type: ignore[no-untyped-def]
        seen.append(SEARCHES.count)
        return original(texts)

    embedder.embed_queries = counting  # type: ignore[method-assign]
    try:
        search(search_services, "bảo hộ công dân", mode="dense")
    finally:
        embedder.embed_queries = original  # type: ignore[method-assign]
    assert seen == [1] and SEARCHES.count == 0
    with pytest.raises(InvalidInput):
        search(search_services, "   ")
    assert SEARCHES.count == 0
