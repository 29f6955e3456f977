"""Equal scores rank the same way every time: one circular sent to many missions, paged through.

Copies of a text score exactly alike in every retriever, and the engine's fusion returns equal
scores in no fixed order (it differs from call to call), so without a tie-break a reader paging
through them could see a copy twice and another never.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ingest.runner import ingest_paths
from kms.config import Settings
from kms.domain import Principal, SearchQuery
from kms.index.base import chunk_point_id
from kms.search import SearchService
from kms.services import Services

CIRCULAR = (
    "Công điện về việc bảo hộ công dân Việt Nam tại vùng có thiên tai: cơ quan đại diện lập danh sách "
    "công dân, giữ liên lạc với cộng đồng và báo cáo Bộ hằng ngày."
)
COPIES = 14
OTHERS = {
    "guide-consular": "Hướng dẫn bảo hộ công dân: cấp giấy thông hành và hỗ trợ hồi hương.",
    "report-flood": "Báo cáo tình hình lũ lụt và công tác hỗ trợ cộng đồng người Việt tại địa bàn.",
}
QUERY = "bảo hộ công dân vùng thiên tai"


@pytest.fixture(scope="module")
def tie_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("ties")
    folder = root / "files"
    folder.mkdir()
    texts = {f"circular-{n:02d}": CIRCULAR for n in range(COPIES)} | OTHERS
    for doc_id, text in texts.items():
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        meta = {"doc_id": doc_id, "classification": "public", "allow": ["all-staff"], "title": "Công điện"}
        (folder / f"{doc_id}.txt.meta.json").write_text(
            json.dumps(meta, ensure_ascii=False), encoding="utf-8"
        )
    services = Services.open(Settings(data_dir=root / "data"))
    assert all(r.status == "added" for r in ingest_paths(services, [folder]))
    yield services
    services.close()


def _page(services: Services, mode: str, k: int, offset: int = 0) -> list[tuple[str, float]]:
    query = SearchQuery(query=QUERY, mode=mode, k=k, offset=offset)
    return [
        (hit.doc_id, hit.score) for hit in SearchService(services).search(Principal.operator(), query).results
    ]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_the_same_search_ranks_tied_documents_the_same_way(tie_services: Services, mode: str) -> None:
    first = _page(tie_services, mode, k=COPIES + 2)
    assert {doc for doc, _ in first} >= {f"circular-{n:02d}" for n in range(COPIES)}
    if mode == "hybrid":  # one retriever alone scores by rank (the ranks of the copies differ)
        assert len({score for doc, score in first if doc.startswith("circular-")}) == 1  # truly tied
    for _ in range(12):
        assert _page(tie_services, mode, k=COPIES + 2) == first


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_pages_of_tied_documents_neither_repeat_nor_skip_one(tie_services: Services, mode: str) -> None:
    whole = [doc for doc, _ in _page(tie_services, mode, k=COPIES + 2)]
    for _ in range(4):
        paged = [doc for offset in range(0, COPIES + 2, 4) for doc, _ in _page(tie_services, mode, 4, offset)]
        assert paged == whole


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_tied_documents_come_in_chunk_id_order(tie_services: Services, mode: str) -> None:
    # The tie-break is the chunk id, fixed per document version; each copy here is one chunk.
    ranked = [doc for doc, _ in _page(tie_services, mode, k=COPIES + 2) if doc.startswith("circular-")]
    assert ranked == sorted(ranked, key=lambda doc: chunk_point_id(doc, 1, 0))


def test_similar_ranks_the_copies_of_a_document_the_same_way_every_time(tie_services: Services) -> None:
    def similar() -> list[tuple[str, float]]:
        hits = SearchService(tie_services).similar(Principal.operator(), "circular-00", k=COPIES)
        return [(hit.doc_id, hit.score) for hit in hits]

    first = similar()
    copies = [doc for doc, _ in first if doc.startswith("circular-")]
    assert sorted(copies) == [f"circular-{n:02d}" for n in range(1, COPIES)]
    assert copies == sorted(copies, key=lambda doc: chunk_point_id(doc, 1, 0))
    for _ in range(8):
        assert similar() == first
