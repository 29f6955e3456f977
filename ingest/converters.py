"""Convert uploaded files (TXT, Markdown, HTML, PDF, DOCX, EML) to plain text.

Pure functions, no Haystack. The type of a file is decided by its content first and its name
second. Every failure is a `ConversionError` whose message is a reason a user can act on; no raw
parser exception and no parser warning escapes from `convert_bytes` / `convert_file`.

Untrusted input is bounded by `Limits`: file size, DOCX (zip) decompression size, ratio and member
count, PDF page count and extracted text length. Text is never decoded by guessing a legacy
encoding: it must be UTF-8 (optionally with a BOM) or UTF-16 with a BOM.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import default as default_email_policy
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "ConversionError",
    "Converted",
    "Limits",
    "check_content",
    "convert_bytes",
    "convert_file",
    "detect_type",
    "image_type",
    "pdf_page_texts",
]


class ConversionError(Exception):
    """A file could not be converted; ``str(err)`` is a clear, user-facing reason."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every file (all must be positive)."""

    max_file_bytes: int = 50 * 2**20
    max_uncompressed_bytes: int = 200 * 2**20  # total for a DOCX zip
    max_compression_ratio: float = 100.0  # per zip member
    max_zip_members: int = 2000
    max_pdf_pages: int = 2000
    max_text_chars: int = 5_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = int if f.type == "int" else int | float
            if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
                noun = "integer" if kind is int else "number"
                raise ValueError(f"limit {f.name} must be a positive {noun}, got {value!r}")


DEFAULT_LIMITS = Limits()

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".eml"}
)
# Scanned pages: converted to empty text for the OCR stage (only with `allow_textless_pdf`).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})


@dataclass(frozen=True)
class Converted:
    """The text of one converted file."""

    text: str  # NFC, paragraphs separated by blank lines
    title: str | None
    file_type: str  # "txt" | "md" | "html" | "pdf" | "docx" | "eml"
    pages_without_text: list[int] = field(default_factory=list)  # PDF pages (1-based) without text


# --------------------------------------------------------------------------------------------------
# Public API


def convert_file(
    path: Path, *, limits: Limits = DEFAULT_LIMITS, allow_textless_pdf: bool = False
) -> Converted:
    """Convert the file at `path`; its size is checked (stat) before anything is read."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConversionError("file not found") from None
    except OSError as e:
        raise ConversionError(f"cannot read file: {e.strerror or e}") from None
    if path.is_dir():
        raise ConversionError("not a regular file (it is a directory)")
    _check_size(st.st_size, limits)
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes + 1)  # the file may have grown since stat()
    except OSError as e:
        raise ConversionError(f"cannot read file: {e.strerror or e}") from None
    return convert_bytes(path.name, data, limits=limits, allow_textless_pdf=allow_textless_pdf)


def convert_bytes(
    name: str, data: bytes, *, limits: Limits = DEFAULT_LIMITS, allow_textless_pdf: bool = False
) -> Converted:
    """Convert the content `data` of a file called `name`.

    With `allow_textless_pdf`, a PDF none of whose pages has a text layer is returned with empty
    text and `pages_without_text` filled (for a later OCR stage) instead of raising, and so is a
    PNG, JPEG or TIFF image (`file_type` "image", `pages_without_text` [1]).
    """
    _check_size(len(data), limits)
    if not data:
        raise ConversionError(_EMPTY)
    if allow_textless_pdf and image_type(data) is not None:
        return Converted(text="", title=None, file_type="image", pages_without_text=[1])
    label = "file"
    try:
        with _no_warnings_escape():
            file_type = _detect(name, data, limits)
            label = file_type.upper()
            if file_type == "pdf":
                return _convert_pdf(data, limits, allow_textless_pdf)
            if file_type == "docx":
                return _convert_docx(data, limits)
            if file_type == "html":
                text, title = _html_to_text(_decode_text(data))
                return _finish(text, title, "html", limits)
            if file_type == "eml":
                return _convert_eml(data, limits)
            text = _decode_text(data)
            if file_type == "md":
                return _finish(strip_markdown(text), _markdown_title(text), "md", limits)
            return _finish(text, None, file_type, limits)
    except ConversionError:
        raise
    except MemoryError:
        raise ConversionError(
            f"{label} conversion failed: out of memory (document too large or complex)"
        ) from None
    except RecursionError:
        raise ConversionError(f"{label} conversion failed: document structure is nested too deeply") from None
    except Exception as e:
        raise ConversionError(f"{label} conversion failed: {_describe(e)}") from e


def image_type(data: bytes) -> str | None:
    """The image kind (png, jpeg, tiff) when `data` starts like such an image (OCR input), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


def check_content(
    name: str, data: bytes, *, limits: Limits = DEFAULT_LIMITS, allow_images: bool = False
) -> str:
    """The type of an upload judged by its content, or `ConversionError` with the reason it is refused.

    Cheap checks only (magic bytes, text sniffing, a DOCX's zip directory against the decompression
    limits), so an upload is refused before it is queued; conversion checks everything again.
    """
    _check_size(len(data), limits)
    if not data:
        raise ConversionError(_EMPTY)
    if allow_images and image_type(data) is not None:
        return "image"
    with _no_warnings_escape():
        file_type = _detect(name, data, limits)
        if file_type == "docx":
            try:
                _check_docx_zip(data, limits)
            except ConversionError:
                raise
            except Exception as e:
                raise ConversionError(
                    f"not a valid DOCX file (corrupt zip archive: {_describe(e)})"
                ) from None
    return file_type


def pdf_page_texts(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """The cleaned text layer of each page of a PDF ("" for a page without one), for merging OCR."""
    from pypdf import PdfReader

    with _no_warnings_escape():
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                reader.decrypt("")
            pages = list(reader.pages)[: limits.max_pdf_pages]
            return [_clean(page.extract_text() or "") for page in pages]
        except (MemoryError, RecursionError):
            raise
        except Exception as e:
            raise ConversionError(f"corrupt or truncated PDF: {_describe(e)}") from None


def detect_type(name: str, data: bytes) -> str:
    """Return "txt" | "md" | "html" | "pdf" | "docx" | "eml", judged by content first, then by name.

    Raises `ConversionError` ("unsupported file type: ...", "binary content, not text", ...).
    """
    with _no_warnings_escape():
        return _detect(name, data, DEFAULT_LIMITS)


# --------------------------------------------------------------------------------------------------
# Helpers shared by all formats

_EMPTY = "empty document: no text found"
_NO_TEXT_LAYER = "no text layer in PDF (scanned document?); OCR is not enabled"
_MAX_TITLE_CHARS = 500


@contextlib.contextmanager
def _no_warnings_escape() -> Iterator[None]:
    """Keep parser warnings (pypdf, python-docx, lxml, email) from reaching the caller.

    They describe problems the parsers recovered from; they are logged at DEBUG level.
    Note: `warnings.catch_warnings` changes process-global state (not thread-safe before 3.14).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.debug("converter warning: %s: %s", w.category.__name__, w.message)


def _check_size(size: int, limits: Limits) -> None:
    if size > limits.max_file_bytes:
        raise ConversionError(f"file too large: {size} bytes (limit {limits.max_file_bytes} bytes)")


def _describe(e: BaseException) -> str:
    msg = str(e).strip()
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _ext(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff\ue000-\ue002]")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_WHITESPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    """NFC, \\n line ends, no control characters or trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\x0b", "\n").replace("\x0c", "\n\n").replace("\x85", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _CONTROL_CHARS.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))  # (a regex here can go quadratic)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _clean_title(title: object) -> str | None:
    if title is None:
        return None
    text = _collapse(_CONTROL_CHARS.sub("", unicodedata.normalize("NFC", str(title))))
    if not text:
        return None
    return text[:_MAX_TITLE_CHARS]


def _finish(
    text: str, title: str | None, file_type: str, limits: Limits, pages_without_text: list[int] | None = None
) -> Converted:
    text = _clean(text)
    if len(text) > limits.max_text_chars:
        raise ConversionError(
            f"document text too long: {len(text)} characters (limit {limits.max_text_chars})"
        )
    if not text:
        raise ConversionError(_EMPTY)
    return Converted(
        text=text,
        title=_clean_title(title),
        file_type=file_type,
        pages_without_text=list(pages_without_text or []),
    )


# --------------------------------------------------------------------------------------------------
# Type detection

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_ZIP_CENTRAL = b"PK\x01\x02"
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x00\x00\x01\x00", "icon image"),
    (_OLE2, "legacy Microsoft Office document (.doc/.xls/.ppt or password-protected Office file)"),
    (b"{\\rtf", "RTF document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "executable"),
    (b"MZ\x90\x00", "executable"),
)
_RIFF_KINDS = {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}
_HTML_START = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*+<(?:!doctype\s+html|html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_TEXT_SNIFF_BYTES = 8192
_ALLOWED_CONTROLS = frozenset(b"\t\n\x0c\r")


def _detect(name: str, data: bytes, limits: Limits) -> str:
    ext = _ext(name)
    named = f" (named {ext})" if ext else ""
    if data.startswith(b"%PDF-") or (ext == ".pdf" and b"%PDF-" in data[:1024]):
        return "pdf"
    if data.startswith((_ZIP_LOCAL, _ZIP_EMPTY)):
        members = _zip_member_names(data, limits, ext)
        if "word/document.xml" in members:
            return "docx"
        raise ConversionError(f"zip archive is not a DOCX document{_zip_kind(members)}")
    if data[:4] == b"RIFF" and data[8:12] in _RIFF_KINDS:
        raise ConversionError(f"unsupported file type: {_RIFF_KINDS[data[8:12]]}{named}")
    for magic, label in _MAGIC:
        if data.startswith(magic):
            if ext == ".docx" and magic == _OLE2:
                raise ConversionError(
                    "not a valid DOCX file (not a zip archive: a legacy .doc or a password-protected file)"
                )
            raise ConversionError(f"unsupported file type: {label}{named}")
    if ext == ".docx":
        raise ConversionError("not a valid DOCX file (not a zip archive)")
    if ext == ".pdf":
        raise ConversionError("not a valid PDF file (no %PDF- header)")
    head = data[:_TEXT_SNIFF_BYTES]
    if not _looks_like_text(head):
        if ext in (".txt", ".md", ".markdown"):
            raise ConversionError("binary content, not text")
        raise ConversionError(f"unsupported file type: binary content{named}")
    if _HTML_START.match(_decode_head(head)):
        return "html"
    if ext in (".html", ".htm"):
        return "html"
    if ext == ".eml":
        return "eml"
    if ext in (".md", ".markdown"):
        return "md"
    return "txt"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM; validated when decoded
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if (b < 0x20 and b not in _ALLOWED_CONTROLS) or b == 0x7F)
    return controls <= 0.10 * len(head)


def _decode_head(head: bytes) -> str:
    if head.startswith(b"\xff\xfe"):
        return head[2:].decode("utf-16-le", errors="replace")
    if head.startswith(b"\xfe\xff"):
        return head[2:].decode("utf-16-be", errors="replace")
    return head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")


def _zip_member_names(data: bytes, limits: Limits, ext: str) -> set[str]:
    # Every central-directory entry zipfile parses starts with this signature, so counting it
    # bounds the work of opening the archive before zipfile reads the directory.
    entries = data.count(_ZIP_CENTRAL)
    if entries > limits.max_zip_members:
        if ext == ".docx":
            raise ConversionError(
                f"DOCX exceeds decompression limits: {entries} zip members (limit {limits.max_zip_members})"
            )
        raise ConversionError(f"unsupported file type: zip archive with {entries} members")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return set(zf.namelist())
    except Exception as e:
        if ext == ".docx":
            raise ConversionError(f"not a valid DOCX file (corrupt zip archive: {_describe(e)})") from None
        raise ConversionError(f"unsupported file type: corrupt zip archive ({_describe(e)})") from None


def _zip_kind(members: set[str]) -> str:
    if "xl/workbook.xml" in members:
        return " (it looks like an Excel .xlsx workbook)"
    if "ppt/presentation.xml" in members:
        return " (it looks like a PowerPoint .pptx presentation)"
    if "mimetype" in members and "content.xml" in members:
        return " (it looks like an OpenDocument file)"
    return ""


# --------------------------------------------------------------------------------------------------
# Plain text and Markdown


def _decode_text(data: bytes) -> str:
    """UTF-8 (BOM stripped) or UTF-16 with a BOM; anything else is an error, never a guess."""
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        encoding = "utf-16-le" if data.startswith(b"\xff\xfe") else "utf-16-be"
        try:
            return data[2:].decode(encoding)
        except UnicodeDecodeError as e:
            raise ConversionError(
                f"not valid UTF-16 text ({e.reason} at offset {e.start + 2}); save the file as UTF-8"
            ) from None
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    body = data[offset:]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversionError(
            f"not valid UTF-8 text (invalid byte 0x{body[e.start]:02x} at offset {e.start + offset}); "
            "save the file as UTF-8"
        ) from None


# Markdown markup is removed line by line instead of rendering: a renderer reflows lines and drops
# list numbers, and in legal texts those numbers are the clauses (Khoản 1., 2.) the splitter needs.
_MD_LINE_MARKUP = re.compile(r"^ {0,3}(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+(?=\S))")
_MD_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_MD_RULE = re.compile(r"^ {0,3}(?:[-*_][ \t]*){3,}$|^ {0,3}(?:`{3,}|~{3,}).*$")


def strip_markdown(text: str) -> str:
    """Plain text from Markdown, keeping every line, list number and clause marker in place."""
    lines = []
    for line in text.split("\n"):
        if _MD_RULE.match(line):
            lines.append("")
            continue
        line = _MD_LINE_MARKUP.sub("", line)
        line = _MD_LINK.sub(r"\1", _MD_EMPHASIS.sub(r"\2", line))
        lines.append(re.sub(r"[ \t]+#+[ \t]*$", "", line))
    return "\n".join(lines)


_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_H1 = re.compile(r"^ {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")


def _markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading (`# Title`) outside fenced code blocks."""
    fence: str | None = None
    for line in text.splitlines():
        if len(line) > _MAX_TITLE_CHARS * 2:  # not a title; also keeps the regex below linear
            continue
        m = _MD_FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        h = _MD_H1.match(line)
        if h and h.group(1).strip():
            return h.group(1).strip()
    return None


# --------------------------------------------------------------------------------------------------
# HTML

_PARA, _BR, _CELL = "\ue000", "\ue001", "\ue002"  # private-use markers, stripped from the input
_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object", "embed", "canvas")
_CELL_TAGS = frozenset({"td", "th"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li",
        "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip


def _html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML document (blocks separated by blank lines) and its title."""
    from lxml import etree
    from lxml import html as lxml_html

    html = html.translate({ord(_PARA): None, ord(_BR): None, ord(_CELL): None})
    if not html.strip():
        raise ConversionError(_EMPTY)
    # The HTML parser never loads external resources (no_network) and has no external-entity
    # support (lxml's HTMLParser takes no resolve_entities option: it never resolves them).
    # huge_tree lifts libxml2's 10 MB text-node and 256-level depth limits, which otherwise
    # truncate real documents silently; the input is already bounded by Limits.max_file_bytes and
    # the walk below is iterative. Whatever still exceeds libxml2's limits (depth > 2048) is an
    # error, never a silently truncated text.
    parser = lxml_html.HTMLParser(
        encoding="utf-8", no_network=True, remove_comments=True, remove_pis=True, huge_tree=True
    )
    try:
        root = lxml_html.document_fromstring(html.encode("utf-8"), parser=parser)
    except etree.ParserError:
        raise ConversionError(_EMPTY) from None
    for error in parser.error_log:
        if error.type_name == "ERR_RESOURCE_LIMIT":
            message = _collapse(str(error.message))
            raise ConversionError(f"HTML exceeds parser limits (nested too deeply?): {message}")

    title = None
    for node in root.xpath("//head/title | //title"):
        title = _clean_title(node.text_content())
        if title:
            break
    if not title:
        for node in root.iter("h1"):
            title = _clean_title(node.text_content())
            if title:
                break

    for node in list(root.iter(*_DROP_TAGS)):
        if node.getparent() is not None:
            node.drop_tree()

    out: list[str] = []
    in_cell = 0
    in_pre = 0

    def add(text: str | None) -> None:
        if text:
            out.append(text.replace("\n", _BR) if in_pre and not in_cell else text)

    for event, node in etree.iterwalk(root, events=("start", "end")):
        tag = node.tag
        if not isinstance(tag, str):  # comment, PI or entity left by the parser
            if event == "start":
                add(node.tail)
            continue
        tag = tag.lower()
        if event == "start":
            if tag in _CELL_TAGS:
                in_cell += 1
                out.append(_CELL)
            elif tag in ("br", "tr"):
                out.append(" " if in_cell else _BR)
            elif tag in _BLOCK_TAGS:
                out.append(" " if in_cell else _PARA)
                if tag == "pre":
                    in_pre += 1
            add(node.text)
        else:
            if tag in _CELL_TAGS:
                in_cell -= 1
            elif tag == "tr":
                out.append(" " if in_cell else _BR)
            elif tag in _BLOCK_TAGS:
                if tag == "pre":
                    in_pre -= 1
                out.append(" " if in_cell else _PARA)
            add(node.tail)

    paragraphs: list[str] = []
    for para in "".join(out).split(_PARA):
        lines = [line for line in (_html_line(raw) for raw in para.split(_BR)) if line]
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs), title


def _html_line(raw: str) -> str:
    if _CELL not in raw:
        return _collapse(raw)
    before, *cells = raw.split(_CELL)
    texts = [_collapse(c) for c in cells]
    lead = _collapse(before)
    if not any(texts):
        return lead
    row = " | ".join(texts)
    return f"{lead} {row}" if lead else row


# --------------------------------------------------------------------------------------------------
# PDF


def _convert_pdf(data: bytes, limits: Limits, allow_textless_pdf: bool) -> Converted:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    if data.rfind(b"%%EOF") == -1:
        raise ConversionError("corrupt or truncated PDF: end-of-file marker %%EOF not found")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except DependencyError as e:
        raise ConversionError(f"encrypted PDF: cannot decrypt it ({e})") from None
    except LimitReachedError as e:
        raise ConversionError(f"PDF exceeds processing limits: {e}") from None
    except (MemoryError, RecursionError):
        raise
    except Exception as e:
        raise ConversionError(f"corrupt or truncated PDF: {_describe(e)}") from None

    if encrypted:
        try:
            result = reader.decrypt("")
        except DependencyError as e:
            raise ConversionError(f"encrypted PDF: cannot decrypt it ({e})") from None
        except Exception as e:
            raise ConversionError(f"encrypted PDF: cannot decrypt it ({_describe(e)})") from None
        if result == PasswordType.NOT_DECRYPTED:
            raise ConversionError("encrypted PDF: a password is required to open it")

    try:
        page_count = len(reader.pages)
    except LimitReachedError as e:
        raise ConversionError(f"PDF exceeds processing limits: {e}") from None
    except (MemoryError, RecursionError):
        raise
    except Exception as e:
        raise ConversionError(f"corrupt or truncated PDF: {_describe(e)}") from None
    if page_count > limits.max_pdf_pages:
        raise ConversionError(f"PDF has too many pages: {page_count} (limit {limits.max_pdf_pages})")
    if page_count == 0:
        raise ConversionError(_EMPTY)

    title = _pdf_title(reader)
    texts: list[str] = []
    without_text: list[int] = []
    total = 0
    for number in range(1, page_count + 1):
        try:
            raw = reader.pages[number - 1].extract_text() or ""
        except LimitReachedError as e:
            raise ConversionError(f"PDF exceeds processing limits: page {number}: {e}") from None
        except (MemoryError, RecursionError):
            raise
        except Exception as e:
            raise ConversionError(f"corrupt or truncated PDF: page {number}: {_describe(e)}") from None
        text = _clean(raw)
        if not text:
            without_text.append(number)
            continue
        texts.append(text)
        total += len(text) + 2
        if total > limits.max_text_chars:
            raise ConversionError(f"document text too long: more than {limits.max_text_chars} characters")

    if not texts:
        if allow_textless_pdf:
            return Converted(text="", title=title, file_type="pdf", pages_without_text=without_text)
        raise ConversionError(_NO_TEXT_LAYER)
    return _finish("\n\n".join(texts), title, "pdf", limits, without_text)


def _pdf_title(reader: Any) -> str | None:
    try:
        metadata = reader.metadata
        return _clean_title(metadata.title) if metadata is not None else None
    except Exception as e:  # a broken /Info dictionary must not cost the document
        log.debug("unreadable PDF metadata: %s", _describe(e))
        return None


# --------------------------------------------------------------------------------------------------
# DOCX

# Members smaller than this cannot be a zip bomb on their own; the ratio test skips them so that
# small, very repetitive XML parts do not reject ordinary documents.
_RATIO_CHECK_MIN_BYTES = 2**20
_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_docx_zip(data: bytes, limits: Limits) -> None:
    """Enforce decompression limits and safe member names before python-docx opens the zip.

    Python's zipfile never inflates a member past its declared size (a mismatch fails the CRC
    check), so the declared sizes checked here bound what python-docx will decompress.
    """
    prefix = "DOCX exceeds decompression limits"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    if len(infos) > limits.max_zip_members:
        raise ConversionError(f"{prefix}: {len(infos)} zip members (limit {limits.max_zip_members})")
    total = 0
    for info in infos:
        member = info.filename
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if member.startswith(("/", "\\")) or _DRIVE.match(member) or ".." in parts:
            raise ConversionError(f"not a valid DOCX file (unsafe member path {member!r})")
        if info.flag_bits & 0x1:
            raise ConversionError("not a valid DOCX file (encrypted zip members)")
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise ConversionError(
                f"{prefix}: more than {limits.max_uncompressed_bytes} bytes uncompressed (zip bomb?)"
            )
        if info.file_size >= _RATIO_CHECK_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise ConversionError(
                    f"{prefix}: member {member!r} has compression ratio {ratio:.0f}:1 "
                    f"(limit {limits.max_compression_ratio:.0f}:1, zip bomb?)"
                )


def _convert_docx(data: bytes, limits: Limits) -> Converted:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _check_docx_zip(data, limits)
    document = docx.Document(io.BytesIO(data))

    blocks: list[str] = []
    heading_title: str | None = None
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            blocks.append(text)
            if heading_title is None and _is_heading(block):
                heading_title = text
        elif isinstance(block, Table):
            text = _docx_table_text(block)
            if text:
                blocks.append(text)

    title: str | None = None
    try:
        title = _clean_title(document.core_properties.title)
    except Exception as e:  # broken docProps/core.xml must not cost the document
        log.debug("unreadable DOCX core properties: %s", _describe(e))
    return _finish("\n\n".join(blocks), title or heading_title, "docx", limits)


def _is_heading(paragraph: Any) -> bool:
    try:
        name = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    except Exception:
        return False
    return name == "title" or name.startswith("heading")


def _docx_table_text(table: Any) -> str:
    """One line per row, cells joined with " | "; merged cells appear once per row."""
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a horizontally merged cell is repeated by python-docx
                continue
            previous = cell._tc
            cells.append(_docx_cell_text(cell))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _docx_cell_text(cell: Any) -> str:
    from docx.table import Table

    parts: list[str] = []
    for block in cell.iter_inner_content():
        text = _docx_table_text(block).replace("\n", "; ") if isinstance(block, Table) else block.text
        if text.strip():
            parts.append(text)
    return _collapse(" ".join(parts))


# --------------------------------------------------------------------------------------------------
# EML


def _convert_eml(data: bytes, limits: Limits) -> Converted:
    message = BytesParser(policy=default_email_policy).parsebytes(data)
    if not message.keys():
        raise ConversionError("not a valid email message (no RFC 822 headers)")
    title = _clean_title(message.get("subject"))
    body = message.get_body(preferencelist=("plain", "html")) if isinstance(message, EmailMessage) else None
    if body is None:
        raise ConversionError(f"{_EMPTY} (the email has no text body)")
    text = _email_part_text(body)
    if body.get_content_subtype() == "html":
        text, _ = _html_to_text(text)
    return _finish(text, title, "eml", limits)


def _email_part_text(part: Message) -> str:
    """Decode a text part by its declared charset; undeclared (or declared ASCII) it must be UTF-8."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    if charset in (None, "us-ascii", "ascii"):
        return _decode_text(payload)
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        raise ConversionError(f"email body uses an unknown charset {charset!r}") from None
