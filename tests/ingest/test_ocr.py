"""OCR with Tesseract: scanned PDF pages (no text layer) and images, keeping Vietnamese diacritics.

The scanned page is made here: Vietnamese text rendered to an image with Pillow and DejaVu Sans,
placed in a PDF with fpdf2's `image()` (so the PDF has no text layer), and also saved as PNG/JPEG.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from ingest.components.ocr_reader import OcrReader
from ingest.converters import convert_file
from ingest.ocr import available_languages
from ingest.runner import ingest_paths
from kms.domain import Principal
from kms.search import SearchService
from kms.services import Services
from kms.text.normalize import nfc

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LINES = (
    "Bộ Ngoại giao Việt Nam tổ chức hội nghị",
    "Đại sứ quán tiếp nhận hồ sơ của công dân",
    "về hợp tác kinh tế và bảo hộ lãnh sự",
)
WORDS = ("Ngoại", "Việt", "hội", "Đại", "sứ", "quán", "tiếp", "nhận", "hồ", "sơ", "công", "dân", "lãnh", "sự")

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None or "vie" not in available_languages(),
    reason="Tesseract with Vietnamese is not installed (apt-get install tesseract-ocr tesseract-ocr-vie; "
    "`make test` installs them)",
)


def scanned_page() -> bytes:
    image = pytest.importorskip("PIL.Image", reason="Pillow renders the test page (it comes with fpdf2)")
    draw_module = pytest.importorskip("PIL.ImageDraw")
    font_module = pytest.importorskip("PIL.ImageFont")
    if not DEJAVU.is_file():
        pytest.skip(f"DejaVu font missing at {DEJAVU} (apt-get install fonts-dejavu-core)")
    font = font_module.truetype(str(DEJAVU), 44)
    page = image.new("L", (1700, 520), 255)
    draw = draw_module.Draw(page)
    for number, line in enumerate(LINES):
        draw.text((70, 70 + 140 * number), line, font=font, fill=0)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


def to_jpeg(png: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("L").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def scanned_pdf(path: Path, png: bytes, *, text_page: str | None = None) -> Path:
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 builds the test PDF")
    pdf = fpdf.FPDF()
    if text_page is not None:
        pdf.add_font("DejaVu", "", str(DEJAVU))
        pdf.set_font("DejaVu", size=12)
        pdf.add_page()
        pdf.multi_cell(0, 8, text_page)
    pdf.add_page()
    pdf.image(io.BytesIO(png), x=10, y=20, w=190)  # an image only: no text layer on this page
    path.write_bytes(bytes(pdf.output()))
    return path


def recognised(text: str) -> int:
    return sum(1 for word in WORDS if word in text)


def test_the_test_pdf_has_no_text_layer(tmp_path: Path) -> None:
    converted = convert_file(scanned_pdf(tmp_path / "scan.pdf", scanned_page()), allow_textless_pdf=True)
    assert (converted.text, converted.pages_without_text) == ("", [1])


def test_a_scanned_pdf_is_read_with_its_diacritics(services: Services, tmp_path: Path) -> None:
    path = scanned_pdf(tmp_path / "scan.pdf", scanned_page())
    [result] = ingest_paths(services, [path], {"classification": "public", "allow": ["all-staff"]})
    assert result.status == "added", result.error
    text = SearchService(services).document(Principal.operator(), str(result.doc_id))["text"]
    assert text == nfc(text)
    assert "Bộ Ngoại giao" in text and "Đại sứ quán" in text, text
    assert recognised(text) >= len(WORDS) - 2, text
    hits = SearchService(services).search(Principal.operator(), _query("tiếp nhận hồ sơ công dân"))
    assert hits.results and hits.results[0].doc_id == result.doc_id


def test_images_are_read_directly(services: Services, tmp_path: Path) -> None:
    png, folder = scanned_page(), tmp_path / "images"
    folder.mkdir()
    (folder / "page.png").write_bytes(png)
    (folder / "page.jpg").write_bytes(to_jpeg(png))
    results = ingest_paths(services, [folder], {"classification": "public", "allow": ["all-staff"]})
    assert [r.status for r in results] == ["added", "added"], [r.error for r in results]
    for result in results:
        text = SearchService(services).document(Principal.operator(), str(result.doc_id))["text"]
        assert "Bộ Ngoại giao" in text and recognised(text) >= len(WORDS) - 2, text


def test_a_mixed_pdf_gets_ocr_text_in_place_of_its_scanned_page(tmp_path: Path) -> None:
    path = scanned_pdf(tmp_path / "mixed.pdf", scanned_page(), text_page="Trang một có lớp chữ thật.")
    converted = convert_file(path, allow_textless_pdf=True)
    assert converted.pages_without_text == [2]
    from haystack import Document

    document = Document(
        content=converted.text,
        meta={"source_path": str(path), "file_type": "pdf", "pages_without_text": [2], "doc_id": "m"},
    )
    [read] = OcrReader().run(documents=[document])["documents"]
    assert read.content is not None
    assert read.content.startswith("Trang một có lớp chữ thật.") and "Bộ Ngoại giao" in read.content
    assert read.meta["ocr_pages"] == [2] and read.meta["pages_without_text"] == []


def test_ocr_failures_fail_the_file_alone(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    from haystack import Document

    document = Document(
        content="", meta={"source_path": str(broken), "file_type": "image", "pages_without_text": [1]}
    )
    outcome = OcrReader().run(documents=[document, Document(content="chữ", meta={})])
    assert len(outcome["documents"]) == 1 and outcome["failed"][0]["source_path"] == str(broken)
    disabled = OcrReader(enabled=False).run(documents=[document])
    assert "OCR is not enabled" in disabled["failed"][0]["error"]


def _query(text: str) -> object:
    from kms.domain import SearchQuery

    return SearchQuery(query=text, k=3)
