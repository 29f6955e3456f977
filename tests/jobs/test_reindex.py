"""`kms reindex` with a worker writing meanwhile: the new collection catches up before the swap."""

from __future__ import annotations

from pathlib import Path

from ingest.check import check
from ingest.reindex import reindex
from ingest.runner import delete_document, ingest_paths, set_access
from kms.db.models import DocumentRow
from kms.domain import Principal, SearchQuery
from kms.search import SearchService
from kms.services import Services

TEXT = "Nghị quyết số {n} về hợp tác quốc tế trong lĩnh vực lãnh sự.\n\nĐiều 1. Phạm vi {n}."


def write(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"nq{n}.txt"
    path.write_text(TEXT.format(n=n), encoding="utf-8")
    return path


def test_writes_during_a_reindex_are_in_the_new_collection(services: Services, tmp_path: Path) -> None:
    access = {"classification": "internal", "allow": ["all-staff"]}
    first = ingest_paths(services, [write(tmp_path / "a", n) for n in range(3)], access)
    ids = [str(r.doc_id) for r in first]
    old = services.store.active_collection()
    during: list[str] = []

    def progress(done: int, total: int) -> None:
        if not during:  # what a worker might do while the rebuild runs
            during.extend(str(r.doc_id) for r in ingest_paths(services, [write(tmp_path / "b", 9)], access))
            delete_document(services, ids[0])
            set_access(services, ids[1], "secret", ["group:leadership"])

    result = reindex(services, progress=progress)
    assert result["collection"] != old and services.store.active_collection() == result["collection"]
    assert result["caught_up"] >= 3 and not result["failed"]
    assert check(services).clean
    reader = Principal("r", "internal", "hq")
    found = {
        h.doc_id
        for h in SearchService(services).search(reader, SearchQuery(query="hợp tác lãnh sự", k=20)).results
    }
    assert found == {ids[2], *during}  # deleted and re-classified documents are not shown
    with services.sessions() as session:
        row = session.get(DocumentRow, ids[2])
        assert row is not None and row.source_path == str(tmp_path / "a" / "nq2.txt")  # not a temporary link
