"""MetadataExtractor: fill metadata nobody gave from the text itself (lowest precedence)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from haystack import Document, component

from kms.text.docnumber import extract_doc_number
from kms.text.language import detect_language

log = logging.getLogger(__name__)

_DATE_VI = re.compile(r"ngày\s+(\d{1,2})\s+tháng\s+(\d{1,2})\s+năm\s+(\d{4})", re.IGNORECASE)
# Symbol part of a document number -> document type (Vietnamese administrative conventions).
_TYPE_BY_SYMBOL = {
    "NQ": "resolution",
    "NĐ": "decree",
    "TT": "circular",
    "TTLT": "circular",
    "QĐ": "decision",
    "CT": "directive",
    "BC": "report",
    "HD": "guidance",
    "BB": "minutes",
}
_TYPE_BY_WORDS = [
    ("nghị quyết", "resolution"),
    ("nghị định", "decree"),
    ("thông tư", "circular"),
    ("quyết định", "decision"),
    ("chỉ thị", "directive"),
    ("biên bản", "minutes"),
    ("hướng dẫn", "guidance"),
    ("điện", "cable"),
    ("báo cáo", "report"),
    ("cable", "cable"),
    ("minutes", "minutes"),
    ("report", "report"),
    ("guidance", "guidance"),
]


def guess_doc_type(doc_number: str | None, title: str) -> str:
    if doc_number:
        for piece in re.split(r"[/-]", doc_number.upper()):
            if piece in _TYPE_BY_SYMBOL:
                return _TYPE_BY_SYMBOL[piece]
    lowered = title.lower()
    for words, doc_type in _TYPE_BY_WORDS:
        if lowered.startswith(words) or f" {words} " in f" {lowered[:60]} ":
            return doc_type
    return "other"


def issued_date_from_text(text: str) -> str | None:
    match = _DATE_VI.search(text[:2000])
    if not match:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def first_line_title(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().strip("#*").strip()
        if len(stripped) >= 4:
            return stripped[:300]
    return ""


@component
class MetadataExtractor:
    """Fill `title`, `doc_number`, `doc_type`, `issued_date` and `language` when they were not given.

    Usage: `MetadataExtractor().run(documents=[Document(content="Số: 292/NQ-CP ...", meta={})])`
    """

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: cleaned documents whose meta holds what people gave.
        :returns: `documents` with every metadata field present (None when unknown).
        """
        return {"documents": [Document(content=d.content, meta=self._complete(d)) for d in documents]}

    def _complete(self, document: Document) -> dict[str, Any]:
        text = document.content or ""
        meta = dict(document.meta)
        if not meta.get("title"):
            meta["title"] = first_line_title(text)
        if not meta.get("doc_number"):
            meta["doc_number"] = extract_doc_number(text)
        if not meta.get("doc_type"):
            meta["doc_type"] = guess_doc_type(meta["doc_number"], str(meta["title"]))
        if not meta.get("issued_date"):
            meta["issued_date"] = issued_date_from_text(text)
        if not meta.get("language"):
            meta["language"] = detect_language(text[:5000])
        for key in ("issuer", "classification", "owner_unit"):
            meta.setdefault(key, None)
        meta.setdefault("allow", [])
        if not meta["classification"] or not meta["allow"]:
            log.warning(
                "document %s has no %s: it is stored but visible to nobody",
                meta.get("doc_id"),
                "classification" if not meta["classification"] else "allow list",
            )
        return meta
