"""End-to-end ingestion into a real embedded Qdrant + SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

import docx
import pytest
from qdrant_client import models

from ingest.runner import delete_document, ingest_paths
from kms.db.models import DocumentRow
from kms.domain import Principal
from kms.errors import NotFound
from kms.search import SearchService
from kms.services import Services

LEGAL = """CHÍNH PHỦ
Số: 77/NQ-CP

NGHỊ QUYẾT
Về tăng cường bảo hộ công dân ở nước ngoài

Điều 1. Phạm vi điều chỉnh
Nghị quyết này quy định việc bảo hộ công dân Việt Nam ở nước ngoài trong các tình huống khẩn cấp.

Điều 2. Trách nhiệm của cơ quan đại diện
1. Cơ quan đại diện tiếp nhận thông tin và xác minh trong vòng 24 giờ.
2. Cơ quan đại diện phối hợp với chính quyền sở tại để hỗ trợ công dân.
"""


def chunk_count(services: Services, doc_id: str) -> int:
    flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
    return services.store.count(flt)


def write(path: Path, text: str, **meta: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if meta:
        path.with_name(path.name + ".meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def test_ingest_then_unchanged_then_replaced(services: Services, tmp_path: Path) -> None:
    source = write(
        tmp_path / "src" / "nq77.md", LEGAL, doc_id="nq-77", classification="Công khai", allow=["all-staff"]
    )
    first = ingest_paths(services, [source.parent])
    assert [(r.doc_id, r.status) for r in first] == [("nq-77", "added")]
    assert chunk_count(services, "nq-77") == first[0].chunks > 0

    again = ingest_paths(services, [source.parent])
    assert [(r.status, r.chunks) for r in again] == [("unchanged", first[0].chunks)]

    write(source, LEGAL + "\nĐiều 3. Hiệu lực thi hành\nNghị quyết có hiệu lực từ ngày ký.\n")
    replaced = ingest_paths(services, [source.parent])
    assert replaced[0].status == "replaced"
    assert chunk_count(services, "nq-77") == replaced[0].chunks
    with services.sessions() as session:
        row = session.get(DocumentRow, "nq-77")
        assert row is not None and row.version == 2 and row.chunk_count == replaced[0].chunks
        assert row.classification == "public" and row.doc_number == "77/NQ-CP"
    versions = {(r.payload or {})["version"] for r in services.store.scroll(None)}
    assert versions == {2}  # no stale chunks of version 1


def test_delete_removes_chunks_and_hides_document(services: Services, tmp_path: Path) -> None:
    source = write(tmp_path / "a.txt", LEGAL, doc_id="to-delete", classification="public", allow="all-staff")
    ingest_paths(services, [source])
    delete_document(services, "to-delete")
    assert chunk_count(services, "to-delete") == 0
    with pytest.raises(NotFound):
        SearchService(services).document(Principal.operator(), "to-delete")
    with pytest.raises(NotFound):
        delete_document(services, "to-delete")


def test_bad_files_fail_alone(services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    write(folder / "good.md", LEGAL, classification="public", allow=["all-staff"])
    (folder / "empty.txt").write_bytes(b"")
    (folder / "junk.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "legacy.txt").write_bytes("Nghị quyết".encode("utf-16-le"))
    (folder / "broken.docx").write_bytes(b"not a zip at all")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<<")
    write(folder / "badlevel.md", "Nội dung", classification="secretissimo")
    write(folder / "badtoken.md", "Nội dung", allow=["unit:../etc"])
    results = {Path(r.path).name: r for r in ingest_paths(services, [folder])}
    assert results["good.md"].status == "added"
    for name in (
        "empty.txt",
        "junk.txt",
        "legacy.txt",
        "broken.docx",
        "broken.pdf",
        "badlevel.md",
        "badtoken.md",
    ):
        assert results[name].status == "failed", name
        assert results[name].error, name
    assert "classification" in (results["badlevel.md"].error or "")
    assert "token" in (results["badtoken.md"].error or "")


def test_sidecars_are_not_documents_and_precedence_holds(services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "prec"
    (folder).mkdir()
    (folder / ".kms.yaml").write_text(
        "classification: internal\nallow: [unit:hq]\nissuer: Bộ Ngoại giao\n", encoding="utf-8"
    )
    write(folder / "doc.md", LEGAL, doc_id="prec-doc", classification="confidential")
    results = ingest_paths(services, [folder], {"owner_unit": "hq/consular", "classification": "secret"})
    assert [r.doc_id for r in results] == ["prec-doc"]
    with services.sessions() as session:
        row = session.get(DocumentRow, "prec-doc")
        assert row is not None
        assert row.classification == "secret"  # CLI flag > sidecar > folder default
        assert row.allow == ["unit:hq"] and row.issuer == "Bộ Ngoại giao" and row.owner_unit == "hq/consular"


def test_docx_is_ingested_with_its_text(services: Services, tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Báo cáo tình hình lao động tại Nhật Bản", level=1)
    document.add_paragraph("Số lượng thực tập sinh kỹ năng tăng mạnh trong năm 2025.")
    path = tmp_path / "report.docx"
    document.save(str(path))
    results = ingest_paths(services, [path], {"classification": "internal", "allow": ["all-staff"]})
    assert results[0].status == "added", results[0].error
    text = SearchService(services).document(Principal.operator(), str(results[0].doc_id))["text"]
    assert "thực tập sinh kỹ năng" in text


def test_document_without_access_fields_is_stored_but_hidden(services: Services, tmp_path: Path) -> None:
    source = write(tmp_path / "noacl.md", LEGAL, doc_id="no-acl")
    assert ingest_paths(services, [source])[0].status == "added"
    reader = Principal(user_id="u1", clearance="top_secret", unit="hq")
    service = SearchService(services)
    with pytest.raises(NotFound):
        service.document(reader, "no-acl")
    assert service.document(Principal.operator(), "no-acl")["doc_id"] == "no-acl"
