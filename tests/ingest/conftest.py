"""File factories for the converter tests: real files written into tmp_path, no mocks."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import docx
import pytest

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

VI_PARAGRAPH_1 = "Bộ Ngoại giao Việt Nam tổ chức hội nghị về hợp tác quốc tế."
VI_PARAGRAPH_2 = "Đại sứ quán tại Hà Nội tiếp nhận hồ sơ của công dân Nguyễn Thị Hương."
VI_TITLE = "Báo cáo công tác đối ngoại"

PdfFactory = Callable[..., Path]


@dataclass(frozen=True)
class VietnameseSample:
    title: str = VI_TITLE
    paragraph_1: str = VI_PARAGRAPH_1
    paragraph_2: str = VI_PARAGRAPH_2


@pytest.fixture
def vi() -> VietnameseSample:
    """The Vietnamese strings the generated files contain."""
    return VietnameseSample()


@pytest.fixture
def make_pdf(tmp_path: Path) -> PdfFactory:
    """`make_pdf(pages, name=..., title=..., **encryption)`: one page per item; None = a drawn box only."""
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 is needed to generate test PDFs (pip install fpdf2)")
    if not DEJAVU.is_file():
        pytest.skip(f"DejaVu font missing at {DEJAVU} (apt-get install fonts-dejavu-core); PDF tests need it")

    def factory(
        pages: list[str | None],
        *,
        name: str = "doc.pdf",
        title: str | None = None,
        **encryption: Any,
    ) -> Path:
        pdf = fpdf.FPDF()
        pdf.add_font("DejaVu", "", str(DEJAVU))
        pdf.set_font("DejaVu", size=12)
        if title is not None:
            pdf.set_title(title)
        if encryption:
            pdf.set_encryption(**encryption)
        for page in pages:
            pdf.add_page()
            if page is None:
                pdf.rect(20, 20, 120, 80, style="F")
            else:
                for paragraph in page.split("\n\n"):
                    pdf.multi_cell(0, 8, paragraph)
                    pdf.ln()
        path = tmp_path / name
        path.write_bytes(bytes(pdf.output()))
        return path

    return factory


@pytest.fixture
def text_pdf(make_pdf: PdfFactory) -> Path:
    return make_pdf([f"{VI_PARAGRAPH_1}\n\n{VI_PARAGRAPH_2}"], title=VI_TITLE)


@pytest.fixture
def scanned_pdf(make_pdf: PdfFactory) -> Path:
    return make_pdf([None, None], name="scan.pdf")


@pytest.fixture
def truncated_pdf(make_pdf: PdfFactory, tmp_path: Path) -> Path:
    data = make_pdf([VI_PARAGRAPH_1, VI_PARAGRAPH_2], name="full.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 2])
    return path


def build_docx(*, core_title: str | None = None) -> bytes:
    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    document.add_heading(VI_TITLE, level=1)
    document.add_paragraph(VI_PARAGRAPH_1)
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=3)
    for row, values in zip(
        table.rows, [("Họ tên", "Chức vụ", "Nơi công tác"), ("Trần Văn Đức", "Đại sứ", "Hà Nội")], strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_heading("Phần hai", level=2)
    document.add_paragraph(VI_PARAGRAPH_2)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def make_docx() -> Callable[..., bytes]:
    """`make_docx(core_title=None)`: DOCX bytes (headings, paragraphs, a 2x3 table)."""
    return build_docx


@pytest.fixture
def docx_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.docx"
    path.write_bytes(build_docx())
    return path


@pytest.fixture
def html_file(tmp_path: Path) -> Path:
    path = tmp_path / "page.html"
    path.write_text(
        """<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><title>Tin tức  đối ngoại</title>
<style>p { color: red }</style><script>document.write("<p>không hiện</p>")</script></head>
<body><noscript>Bật JavaScript</noscript><h1>Thông cáo báo chí</h1>
<p>Bộ trưởng   đã
tiếp Đại sứ <b>Nhật Bản</b>.</p><div>Dòng một<br>Dòng hai</div>
<table><tr><th>Ngày</th><th>Sự kiện</th></tr><tr><td>01/02</td><td>Hội đàm</td></tr></table>
<template><p>mẫu ẩn</p></template></body></html>""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def md_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.md"
    path.write_text(
        f"Lời mở đầu.\n\n```\n# không phải tiêu đề\n```\n\n# {VI_TITLE}\n\n{VI_PARAGRAPH_1}\n\n## Mục 2\n\n"
        f"{VI_PARAGRAPH_2}\n",
        encoding="utf-8",
    )
    return path


def build_email(*, html_only: bool = False, subject: str = "Công điện khẩn") -> bytes:
    message = EmailMessage()
    message["From"] = "Vụ Lễ tân <le-tan@example.gov.vn>"
    message["To"] = "dsq@example.gov.vn"
    message["Subject"] = subject
    if html_only:
        message.set_content(
            f"<html><body><p>{VI_PARAGRAPH_1}</p><p>{VI_PARAGRAPH_2}</p></body></html>", subtype="html"
        )
    else:
        message.set_content(f"{VI_PARAGRAPH_1}\n\n{VI_PARAGRAPH_2}\n")
        message.add_alternative("<html><body><p>Bản HTML</p></body></html>", subtype="html")
    message.add_attachment(b"\x89PNG\r\n\x1a\n attachment", maintype="image", subtype="png", filename="a.png")
    return message.as_bytes()


@pytest.fixture
def make_email() -> Callable[..., bytes]:
    """`make_email(html_only=False, subject=...)`: RFC 822 bytes with a PNG attachment."""
    return build_email


@pytest.fixture
def eml_file(tmp_path: Path) -> Path:
    path = tmp_path / "cable.eml"
    path.write_bytes(build_email())
    return path


@pytest.fixture
def bom_txt(tmp_path: Path) -> Path:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"{VI_PARAGRAPH_1}\r\n\r\n{VI_PARAGRAPH_2}\r\n".encode())
    return path


@pytest.fixture
def utf16_txt(tmp_path: Path) -> Path:
    path = tmp_path / "utf16.txt"
    path.write_bytes(f"{VI_PARAGRAPH_1}\n\n{VI_PARAGRAPH_2}".encode("utf-16"))  # BOM + native order
    return path


def write_zip(path: Path, members: dict[str, bytes], *, zeros: tuple[str, int] | None = None) -> Path:
    """A deflated zip; `zeros=(name, size)` streams `size` zero bytes into one member (zip bomb)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if zeros is not None:
            name, size = zeros
            chunk = bytes(2**20)
            with zf.open(name, "w", force_zip64=True) as fh:
                for _ in range(size // len(chunk)):
                    fh.write(chunk)
    return path


@pytest.fixture
def make_zip() -> Callable[..., Path]:
    """`make_zip(path, members, zeros=(name, size))`, see `write_zip`."""
    return write_zip


@pytest.fixture(scope="session")
def zip_bomb_docx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`word/document.xml` of 300 MiB of zeros (about 300 KB on disk)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.docx"
    return write_zip(path, {"[Content_Types].xml": b"<Types/>"}, zeros=("word/document.xml", 300 * 2**20))
