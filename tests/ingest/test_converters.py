"""ingest.converters on real files: good inputs round-trip Vietnamese text, bad inputs give clear reasons."""

from __future__ import annotations

import io
import time
import unicodedata
import zipfile
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from ingest.converters import (
    DEFAULT_LIMITS,
    SUPPORTED_EXTENSIONS,
    ConversionError,
    Limits,
    convert_bytes,
    convert_file,
    detect_type,
    strip_markdown,
)


def flat(text: str) -> str:
    """Whitespace-insensitive view (PDF lines wrap where the generator chose)."""
    return " ".join(text.split())


def conversion_error(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(ConversionError) as info:
        convert_file(path, limits=limits)
    return str(info.value)


def assert_nfc(text: str) -> None:
    assert unicodedata.is_normalized("NFC", text)


# --- PDF ---


def test_pdf_vietnamese_text_and_title(text_pdf: Path, vi: Any) -> None:
    result = convert_file(text_pdf)
    assert result.file_type == "pdf"
    assert result.title == vi.title
    assert vi.paragraph_1 in flat(result.text)
    assert vi.paragraph_2 in flat(result.text)
    assert result.pages_without_text == []
    assert_nfc(result.text)


def test_pdf_pages_are_separated_and_textless_pages_listed(make_pdf: Callable[..., Path], vi: Any) -> None:
    path = make_pdf([vi.paragraph_1, None, vi.paragraph_2])
    result = convert_file(path)
    assert result.pages_without_text == [2]
    first, second = result.text.split("\n\n")
    assert flat(first) == vi.paragraph_1
    assert flat(second) == vi.paragraph_2
    assert result.title is None


def test_scanned_pdf_needs_ocr(scanned_pdf: Path) -> None:
    reason = conversion_error(scanned_pdf)
    assert reason == "no text layer in PDF (scanned document?); OCR is not enabled"


def test_scanned_pdf_allowed_for_later_ocr(scanned_pdf: Path) -> None:
    result = convert_file(scanned_pdf, allow_textless_pdf=True)
    assert result.text == ""
    assert result.pages_without_text == [1, 2]
    assert result.file_type == "pdf"


def test_truncated_pdf_is_reported_as_corrupt(truncated_pdf: Path) -> None:
    reason = conversion_error(truncated_pdf)
    assert "truncated" in reason or "corrupt" in reason


def test_pdf_with_damaged_body_is_corrupt(text_pdf: Path, tmp_path: Path) -> None:
    data = text_pdf.read_bytes()
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(data[:200] + b"%%EOF")
    reason = conversion_error(damaged)
    assert reason.startswith("corrupt or truncated PDF: ")


def test_image_named_pdf_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "photo.pdf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    reason = conversion_error(path)
    assert reason.startswith("unsupported file type: PNG image")


def test_text_named_pdf_is_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "letter.pdf"
    path.write_text("just text", encoding="utf-8")
    assert conversion_error(path) == "not a valid PDF file (no %PDF- header)"


def test_pdf_with_owner_password_only_is_decrypted(make_pdf: Callable[..., Path], vi: Any) -> None:
    path = make_pdf([vi.paragraph_1], owner_password="chu-so-huu")
    assert flat(convert_file(path).text) == vi.paragraph_1


def test_pdf_with_user_password_is_refused(make_pdf: Callable[..., Path], vi: Any) -> None:
    path = make_pdf([vi.paragraph_1], owner_password="chu-so-huu", user_password="mat-khau")
    assert conversion_error(path) == "encrypted PDF: a password is required to open it"


def test_pdf_page_limit(make_pdf: Callable[..., Path]) -> None:
    path = make_pdf(["một", "hai", "ba"])
    assert conversion_error(path, Limits(max_pdf_pages=2)) == "PDF has too many pages: 3 (limit 2)"


# --- DOCX ---


def test_docx_paragraphs_headings_and_table_in_order(docx_file: Path, vi: Any) -> None:
    result = convert_file(docx_file)
    assert result.file_type == "docx"
    blocks = result.text.split("\n\n")
    assert blocks == [
        vi.title,
        vi.paragraph_1,
        "Họ tên | Chức vụ | Nơi công tác\nTrần Văn Đức | Đại sứ | Hà Nội",
        "Phần hai",
        vi.paragraph_2,
    ]
    assert result.title == vi.title  # first Heading-styled paragraph
    assert_nfc(result.text)


def test_docx_core_title_wins(tmp_path: Path, make_docx: Callable[..., bytes]) -> None:
    path = tmp_path / "titled.docx"
    path.write_bytes(make_docx(core_title="Công văn số 12/BNG"))
    assert convert_file(path).title == "Công văn số 12/BNG"


def test_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "fake.docx"
    path.write_text("Tôi không phải là DOCX", encoding="utf-8")
    assert conversion_error(path) == "not a valid DOCX file (not a zip archive)"


def test_docx_zip_bomb_is_refused_before_inflating(zip_bomb_docx: Path) -> None:
    assert zip_bomb_docx.stat().st_size < 2 * 2**20
    started = time.perf_counter()
    reason = conversion_error(zip_bomb_docx)
    assert time.perf_counter() - started < 2
    assert reason.startswith("DOCX exceeds decompression limits: ")


def test_docx_member_with_extreme_compression_ratio(tmp_path: Path, make_zip: Callable[..., Path]) -> None:
    path = make_zip(tmp_path / "ratio.docx", {}, zeros=("word/document.xml", 4 * 2**20))
    reason = conversion_error(path)
    assert reason.startswith("DOCX exceeds decompression limits: ")
    assert "compression ratio" in reason


def test_docx_uncompressed_total_limit(tmp_path: Path, make_zip: Callable[..., Path]) -> None:
    path = make_zip(tmp_path / "big.docx", {}, zeros=("word/document.xml", 3 * 2**20))
    reason = conversion_error(path, Limits(max_uncompressed_bytes=2 * 2**20, max_compression_ratio=1e9))
    assert reason.startswith("DOCX exceeds decompression limits: ")


def test_docx_member_count_limit(tmp_path: Path, make_zip: Callable[..., Path]) -> None:
    members = {f"word/media/{i}.xml": b"<x/>" for i in range(20)}
    path = make_zip(tmp_path / "many.docx", {"word/document.xml": b"<w/>", **members})
    reason = conversion_error(path, Limits(max_zip_members=10))
    assert reason.startswith("DOCX exceeds decompression limits: ")


def test_docx_with_path_traversal_member(tmp_path: Path, make_zip: Callable[..., Path]) -> None:
    path = make_zip(tmp_path / "evil.docx", {"word/document.xml": b"<w/>", "../../etc/cron.d/x": b"x"})
    assert "unsafe member path" in conversion_error(path)


def test_docx_with_broken_xml_is_a_conversion_error(docx_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    with zipfile.ZipFile(docx_file) as src, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = b"<w:document><w:body>" if info.filename == "word/document.xml" else src.read(info)
            dst.writestr(info.filename, data)
    assert conversion_error(broken).startswith("DOCX conversion failed: ")


def test_other_zip_is_not_a_docx(tmp_path: Path, make_zip: Callable[..., Path]) -> None:
    path = make_zip(tmp_path / "book.docx", {"xl/workbook.xml": b"<workbook/>"})
    assert conversion_error(path).startswith("zip archive is not a DOCX document")


# --- HTML ---


def test_html_visible_text_only(html_file: Path) -> None:
    result = convert_file(html_file)
    assert result.file_type == "html"
    assert result.title == "Tin tức đối ngoại"
    assert result.text.split("\n\n") == [
        "Thông cáo báo chí",
        "Bộ trưởng đã tiếp Đại sứ Nhật Bản.",
        "Dòng một\nDòng hai",
        "Ngày | Sự kiện\n01/02 | Hội đàm",
    ]


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "no-title.htm"
    path.write_text("<p>Mở đầu</p><h1> Tuyên  bố chung </h1><h1>Khác</h1>", encoding="utf-8")
    result = convert_file(path)
    assert result.title == "Tuyên bố chung"
    assert result.text == "Mở đầu\n\nTuyên bố chung\n\nKhác"


def test_html_detected_by_content_despite_txt_name(tmp_path: Path) -> None:
    path = tmp_path / "saved.txt"
    path.write_text("<!doctype html><html><body><p>Nội dung</p><script>x()</script></body></html>", "utf-8")
    result = convert_file(path)
    assert (result.file_type, result.text) == ("html", "Nội dung")


def test_html_external_entities_are_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("BÍ-MẬT-NỘI-BỘ", encoding="utf-8")
    path = tmp_path / "xxe.html"
    path.write_text(
        f'<!DOCTYPE html [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<html><body><p>Trước &xxe; sau</p><img src="http://example.invalid/x.png"></body></html>',
        encoding="utf-8",
    )
    result = convert_file(path)
    assert "BÍ-MẬT" not in result.text
    assert "Trước" in result.text


def test_html_with_only_script_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "app.html"
    path.write_text("<html><head><script>alert(1)</script></head><body> </body></html>", "utf-8")
    assert conversion_error(path) == "empty document: no text found"


def test_html_with_hundreds_of_unclosed_tags_keeps_all_text(tmp_path: Path) -> None:
    path = tmp_path / "legacy-editor.html"
    path.write_text("<p>đầu " + "<font>chữ " * 400 + "</p><p>cuối</p>", encoding="utf-8")
    result = convert_file(path)
    assert result.text.startswith("đầu chữ chữ")
    assert result.text.endswith("cuối")


def test_html_nested_beyond_parser_limits_is_an_error_not_a_truncation(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text("<div>" * 50_000 + "sâu" + "</div>" * 50_000 + "<p>sau</p>", encoding="utf-8")
    assert conversion_error(path).startswith("HTML exceeds parser limits")


def test_html_with_a_huge_text_node(tmp_path: Path) -> None:
    path = tmp_path / "log.html"
    path.write_text("<pre>" + "nhật ký " * 1_500_000 + "</pre><p>hết</p>", encoding="utf-8")  # > 10 MB
    result = convert_file(path, limits=Limits(max_text_chars=20_000_000))
    assert result.text.endswith("hết")
    assert len(result.text) > 11_000_000


# --- Markdown ---


def test_markdown_loses_its_markup_but_keeps_lines_and_first_h1_title(md_file: Path, vi: Any) -> None:
    result = convert_file(md_file)
    source = md_file.read_text(encoding="utf-8")
    assert result.file_type == "md"
    assert result.title == vi.title
    assert "# " not in result.text and "**" not in result.text
    for line in strip_markdown(source).splitlines():
        assert line.strip() in result.text


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("## Điều 1. Phạm vi", "Điều 1. Phạm vi"),
        ("1. Khoản một\n2. Khoản hai", "1. Khoản một\n2. Khoản hai"),  # clause numbers stay
        ("a) điểm a;\nb) điểm b.", "a) điểm a;\nb) điểm b."),
        ("**Đậm** và __gạch__ [liên kết](http://x) ![ảnh](y)", "Đậm và gạch liên kết ảnh"),
        ("> trích dẫn\n- mục\n---", "trích dẫn\nmục\n"),
    ],
)
def test_strip_markdown(markdown: str, text: str) -> None:
    assert strip_markdown(markdown) == text


def test_markdown_without_heading_has_no_title(tmp_path: Path) -> None:
    path = tmp_path / "plain.markdown"
    path.write_text("## Mục nhỏ\n\nNội dung", encoding="utf-8")
    assert convert_file(path).title is None


# --- EML ---


def test_eml_prefers_plain_text_and_ignores_attachments(eml_file: Path, vi: Any) -> None:
    result = convert_file(eml_file)
    assert result.file_type == "eml"
    assert result.title == "Công điện khẩn"
    assert result.text == f"{vi.paragraph_1}\n\n{vi.paragraph_2}"


def test_eml_html_only_body(tmp_path: Path, vi: Any, make_email: Callable[..., bytes]) -> None:
    path = tmp_path / "html.eml"
    path.write_bytes(make_email(html_only=True, subject="Thư mời"))
    result = convert_file(path)
    assert result.title == "Thư mời"
    assert result.text == f"{vi.paragraph_1}\n\n{vi.paragraph_2}"


def test_eml_declared_legacy_charset_is_honoured(tmp_path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Hà Nội"
    message.set_content("Hà Nôi, ngày 1", charset="iso-8859-1", cte="quoted-printable")
    path = tmp_path / "latin1.eml"
    path.write_bytes(message.as_bytes())
    assert convert_file(path).text == "Hà Nôi, ngày 1"


def test_eml_without_headers(tmp_path: Path) -> None:
    path = tmp_path / "note.eml"
    path.write_text("chỉ là văn bản\n\nkhông có tiêu đề thư", encoding="utf-8")
    assert conversion_error(path) == "not a valid email message (no RFC 822 headers)"


# --- Text ---


def test_utf8_bom_text(bom_txt: Path, vi: Any) -> None:
    result = convert_file(bom_txt)
    assert (result.file_type, result.title) == ("txt", None)
    assert result.text == f"{vi.paragraph_1}\n\n{vi.paragraph_2}"


def test_utf16_text(utf16_txt: Path, tmp_path: Path, vi: Any) -> None:
    assert convert_file(utf16_txt).text == f"{vi.paragraph_1}\n\n{vi.paragraph_2}"
    big_endian = tmp_path / "be.txt"
    big_endian.write_bytes(b"\xfe\xff" + vi.paragraph_1.encode("utf-16-be"))
    assert convert_file(big_endian).text == vi.paragraph_1


def test_decomposed_text_is_normalised_to_nfc(tmp_path: Path, vi: Any) -> None:
    path = tmp_path / "nfd.txt"
    path.write_text(unicodedata.normalize("NFD", vi.paragraph_1), encoding="utf-8")
    result = convert_file(path)
    assert result.text == vi.paragraph_1
    assert_nfc(result.text)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Vi\xea\xf2t Nam", "not valid UTF-8 text (invalid byte 0xea at offset 2); save the file as UTF-8"),
        (b"H\xe0 N\xf4i", "not valid UTF-8 text (invalid byte 0xe0 at offset 1); save the file as UTF-8"),
        (
            b"\xef\xbb\xbfok \xff",
            "not valid UTF-8 text (invalid byte 0xff at offset 6); save the file as UTF-8",
        ),
    ],
    ids=["windows-1258", "latin-1", "bom-then-bad-byte"],
)
def test_legacy_encodings_are_refused_not_guessed(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(data)
    assert conversion_error(path) == reason


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\x02\x03junk" * 50, bytes(range(1, 9)) * 100 + b"a few letters"],
    ids=["nul-bytes", "control-characters"],
)
@pytest.mark.parametrize("name", ["junk.txt", "junk.md"])
def test_binary_content_named_as_text(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert conversion_error(path) == "binary content, not text"


@pytest.mark.parametrize("data", [b"", b"  \r\n\t \n", b"\xef\xbb\xbf\n"], ids=["zero-bytes", "blank", "bom"])
def test_empty_documents(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(data)
    assert conversion_error(path) == "empty document: no text found"


def test_text_length_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("chữ " * 100, encoding="utf-8")
    assert conversion_error(path, Limits(max_text_chars=50)).startswith("document text too long")


# --- Size and files ---


def test_file_larger_than_limit(bom_txt: Path) -> None:
    reason = conversion_error(bom_txt, Limits(max_file_bytes=100))
    assert reason == f"file too large: {bom_txt.stat().st_size} bytes (limit 100 bytes)"


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "sparse.txt"
    with path.open("wb") as fh:
        fh.truncate(DEFAULT_LIMITS.max_file_bytes + 1)  # sparse: nothing to read quickly if it were read
    assert conversion_error(path).startswith("file too large: ")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert conversion_error(tmp_path / "missing.txt") == "file not found"
    assert conversion_error(tmp_path).startswith("not a regular file")


def test_convert_bytes_size_limit() -> None:
    with pytest.raises(ConversionError, match=r"^file too large"):
        convert_bytes("a.txt", b"x" * 11, limits=Limits(max_file_bytes=10))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pdf_pages"):
        Limits(max_pdf_pages=0)
    with pytest.raises(ValueError, match="max_file_bytes must be a positive integer"):
        Limits(max_file_bytes=1e6)  # type: ignore[arg-type]
    assert Limits(max_compression_ratio=50).max_compression_ratio == 50


# --- Detection ---


def test_detect_by_content_first(text_pdf: Path, vi: Any, make_docx: Callable[..., bytes]) -> None:
    docx_bytes = make_docx()
    assert detect_type("scan.txt", text_pdf.read_bytes()) == "pdf"
    assert detect_type("upload.bin", docx_bytes) == "docx"
    assert detect_type("noext", docx_bytes) == "docx"
    assert detect_type("page.md", b"<!DOCTYPE html><html><body>x</body></html>") == "html"
    assert detect_type("page.txt", b"\xef\xbb\xbf  <html lang='vi'><p>x</p></html>") == "html"


def test_detect_by_extension_second(make_email: Callable[..., bytes]) -> None:
    assert detect_type("a.htm", b"<p>x</p>") == "html"
    assert detect_type("A.MARKDOWN", b"# x") == "md"
    assert detect_type("mail.eml", make_email()) == "eml"
    assert detect_type("README", "Xin chào".encode()) == "txt"
    assert detect_type("data.csv", b"a,b\n1,2\n") == "txt"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        (
            "photo.jpg",
            b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(32),
            "unsupported file type: JPEG image (named .jpg)",
        ),
        ("photo.txt", b"GIF89a" + bytes(32), "unsupported file type: GIF image (named .txt)"),
        (
            "old.doc",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(32),
            "unsupported file type: legacy Microsoft",
        ),
        ("archive.zip", None, "zip archive is not a DOCX document"),
        ("blob.bin", b"\x00\x01\x02" * 20, "unsupported file type: binary content (named .bin)"),
    ],
)
def test_detect_unsupported(name: str, data: bytes | None, reason: str) -> None:
    if data is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("readme.txt", "x")
        data = buffer.getvalue()
    with pytest.raises(ConversionError) as info:
        detect_type(name, data)
    assert str(info.value).startswith(reason)


def test_supported_extensions() -> None:
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".eml"} == SUPPORTED_EXTENSIONS
