"""The FileConverter Haystack component on a real batch of good and bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from haystack import Document

from ingest.components.file_converter import FileConverter


def by_path(documents: list[Document]) -> dict[str, Document]:
    return {str(d.meta["source_path"]): d for d in documents}


def test_batch_keeps_good_files_and_reports_each_bad_one(
    tmp_path: Path,
    text_pdf: Path,
    docx_file: Path,
    html_file: Path,
    md_file: Path,
    eml_file: Path,
    bom_txt: Path,
    utf16_txt: Path,
    truncated_pdf: Path,
    scanned_pdf: Path,
    vi: Any,
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00\x01\x02junk" * 10)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes(b"Vi\xea\xf2t Nam")
    fake_docx = tmp_path / "fake.docx"
    fake_docx.write_text("không phải zip", encoding="utf-8")
    missing = tmp_path / "missing.md"

    good = [text_pdf, docx_file, html_file, md_file, eml_file, bom_txt, utf16_txt]
    bad = {
        truncated_pdf: "PDF",
        scanned_pdf: "no text layer in PDF",
        junk: "binary content, not text",
        empty: "empty document: no text found",
        legacy: "not valid UTF-8 text",
        fake_docx: "not a valid DOCX file (not a zip archive)",
        missing: "file not found",
    }
    sources = [str(p) for pair in zip(good, bad, strict=True) for p in pair]  # bad files interleaved

    result = FileConverter().run(sources=sources)

    assert set(result) == {"documents", "failed"}
    documents = by_path(result["documents"])
    assert set(documents) == {str(p) for p in good}
    failed = {f["source_path"]: f["error"] for f in result["failed"]}
    assert set(failed) == {str(p) for p in bad}
    for path, reason in bad.items():
        assert reason in failed[str(path)]
    assert "truncated" in failed[str(truncated_pdf)] or "corrupt" in failed[str(truncated_pdf)]

    pdf = documents[str(text_pdf)]
    assert vi.paragraph_1 in " ".join((pdf.content or "").split())
    assert pdf.meta["title"] == vi.title
    assert pdf.meta["file_type"] == "pdf"
    assert pdf.meta["pages_without_text"] == []
    assert documents[str(docx_file)].meta["file_type"] == "docx"
    assert documents[str(bom_txt)].meta["title"] is None
    assert documents[str(eml_file)].meta["title"] == "Công điện khẩn"


def test_meta_is_merged_and_a_given_title_wins(docx_file: Path, bom_txt: Path, vi: Any) -> None:
    result = FileConverter().run(
        sources=[str(docx_file), str(bom_txt)],
        meta=[
            {"doc_id": "bc-1", "title": "Tiêu đề do người dùng đặt"},
            {"doc_id": "txt-1", "file_type": "x"},
        ],
    )
    docx_doc, txt_doc = result["documents"]
    assert docx_doc.meta == {
        "doc_id": "bc-1",
        "title": "Tiêu đề do người dùng đặt",
        "source_path": str(docx_file),
        "file_type": "docx",
        "pages_without_text": [],
    }
    assert txt_doc.meta["doc_id"] == "txt-1"
    assert txt_doc.meta["file_type"] == "txt"  # the converter's own keys win over stray meta
    assert txt_doc.meta["title"] is None
    assert txt_doc.content == f"{vi.paragraph_1}\n\n{vi.paragraph_2}"


def test_empty_input_returns_both_keys() -> None:
    assert FileConverter().run(sources=[]) == {"documents": [], "failed": []}
    assert FileConverter().run(sources=[], meta=[]) == {"documents": [], "failed": []}


def test_meta_length_must_match_sources(bom_txt: Path) -> None:
    with pytest.raises(ValueError, match="meta has 2 entries for 1 sources"):
        FileConverter().run(sources=[str(bom_txt)], meta=[{}, {}])


def test_limits_are_applied(bom_txt: Path, make_pdf: Callable[..., Path]) -> None:
    pdf = make_pdf(["một", "hai"])
    result = FileConverter(limits={"max_file_bytes": 50, "max_pdf_pages": 1}).run(
        sources=[str(bom_txt), str(pdf)]
    )
    errors = [f["error"] for f in result["failed"]]
    assert result["documents"] == []
    assert errors[0].startswith("file too large")
    assert errors[1].startswith("file too large")
    result = FileConverter(limits={"max_pdf_pages": 1}).run(sources=[str(pdf)])
    assert result["failed"][0]["error"] == "PDF has too many pages: 2 (limit 1)"


def test_textless_pdf_kept_for_ocr_when_allowed(scanned_pdf: Path) -> None:
    result = FileConverter(allow_textless_pdf=True).run(sources=[str(scanned_pdf)])
    assert result["failed"] == []
    (document,) = result["documents"]
    assert document.content == ""
    assert document.meta["pages_without_text"] == [1, 2]


def test_unknown_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_pages"):
        FileConverter(limits={"max_pages": 3})
    with pytest.raises(ValueError, match="max_file_bytes"):
        FileConverter(limits={"max_file_bytes": -1})


def test_serialisation_round_trip() -> None:
    default = FileConverter.from_dict(FileConverter().to_dict())
    assert default.to_dict() == FileConverter().to_dict()
    assert default.to_dict()["init_parameters"] == {"limits": None, "allow_textless_pdf": False}

    custom = FileConverter(limits={"max_pdf_pages": 10}, allow_textless_pdf=True)
    data = custom.to_dict()
    assert data["type"] == "ingest.components.file_converter.FileConverter"
    assert data["init_parameters"] == {"limits": {"max_pdf_pages": 10}, "allow_textless_pdf": True}
    restored = FileConverter.from_dict(data)
    assert restored.to_dict() == data
