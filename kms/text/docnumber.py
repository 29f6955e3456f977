"""Vietnamese official document numbers (số ký hiệu văn bản) such as `104/2018/NĐ-CP`.

Users search by these identifiers and documents cite each other by them, so they are found,
normalised and compared as whole tokens rather than split into digits and letters.
"""

from __future__ import annotations

import re

from kms.text.normalize import nfc, search_key

__all__ = [
    "DOC_NUMBER_PATTERN",
    "doc_number_key",
    "doc_number_spans",
    "extract_doc_number",
    "find_doc_numbers",
    "normalize_doc_number",
]

# One symbol segment: uppercase letters/digits, optionally ending in one lowercase letter (TTg, TTr).
_SEGMENT = r"[A-ZĐ](?:[A-ZĐ0-9]+[a-z]?)?"
_NUMBER = r"(?<![\w/])[0-9]{1,6}(?: ?/ ?(?:19|20)[0-9]{2})?"
_END = r"(?!\w)(?!-\w)"

DOC_NUMBER_PATTERN = re.compile(rf"{_NUMBER} ?/ ?{_SEGMENT}(?:-{_SEGMENT})*{_END}")
"""Document numbers as printed: `292/NQ-CP`, `104/2018/NĐ-CP`, `12/CT-TTg`, `03/2020/QH14`."""

# Typed in a query: any case, maybe without diacritics. To keep `5/km` or `3/năm` out, the loose
# forms need a hyphenated symbol or a year part.
_LOOSE_SEGMENT = r"[a-zđ][a-zđ0-9]*"
_LOOSE_PATTERNS = (
    re.compile(rf"{_NUMBER} ?/ ?{_LOOSE_SEGMENT}(?:-{_LOOSE_SEGMENT})+{_END}", re.IGNORECASE),
    re.compile(
        rf"(?<![\w/])[0-9]{{1,6}} ?/ ?(?:19|20)[0-9]{{2}} ?/ ?{_LOOSE_SEGMENT}(?:-{_LOOSE_SEGMENT})*{_END}",
        re.IGNORECASE,
    ),
)
_SPACED_SEPARATOR = re.compile(r"\s*([/-])\s*")
_TTG = re.compile(r"(?<![A-ZĐ0-9])TTG(?![A-ZĐ0-9])")

# The document's own number sits after "Số:" / "No." / "Điện số" in the header block.
_HEADER_LINES = 15
_LINE_START_MARKER = re.compile(r"(?:^|[|\t])[\s*_#>|]*(?:dien\s+so|so|no\.?)\s*:?[*_]*\s*")
_INLINE_MARKER = re.compile(r"(?<!\w)(?:(?:Số|SỐ|No\.?)\s*:|(?:Điện|ĐIỆN)\s+(?:số|SỐ)\s*:?)[*_]*\s*")


def normalize_doc_number(s: str) -> str:
    """Canonical spelling: NFC, no inner spaces, uppercase except the conventional `TTg`."""
    compact = _SPACED_SEPARATOR.sub(r"\1", nfc(s).strip())
    return _TTG.sub("TTg", compact.upper())


def doc_number_key(s: str) -> str:
    """Key equal for `104/2018/NĐ-CP` and `104/2018/nd-cp`: case- and diacritic-insensitive."""
    return search_key(normalize_doc_number(s))


def _candidate_spans(text: str) -> list[tuple[int, int]]:
    """Spans matched by the strict or a loose pattern, longest first at equal starts."""
    patterns = (DOC_NUMBER_PATTERN, *_LOOSE_PATTERNS)
    spans = [m.span() for pattern in patterns for m in pattern.finditer(text)]
    return sorted(spans, key=lambda span: (span[0], -span[1]))


def doc_number_spans(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, normalized)` of each document number, in order, overlaps resolved to the longest."""
    spans: list[tuple[int, int, str]] = []
    for start, end in _candidate_spans(text):
        if spans and start < spans[-1][1]:
            continue
        spans.append((start, end, normalize_doc_number(text[start:end])))
    return spans


def find_doc_numbers(text: str) -> list[str]:
    """Every document number in the text, normalized, in order; spellings of one number kept once."""
    by_key: dict[str, str] = {}
    for _, _, number in doc_number_spans(nfc(text)):
        by_key.setdefault(search_key(number), number)
    return list(by_key.values())


def _number_at(line: str, pos: int) -> str | None:
    """The document number starting exactly at `pos`, if any."""
    for start, _, number in doc_number_spans(line):
        if start == pos:
            return number
    return None


def _number_after_marker(line: str) -> str | None:
    """Number right after a "Số:"-style marker at line start (or a table cell) or inline with a colon."""
    for match in _LINE_START_MARKER.finditer(search_key(line)):
        number = _number_at(line, match.end())
        if number:
            return number
    for match in _INLINE_MARKER.finditer(line):
        number = _number_at(line, match.end())
        if number:
            return number
    return None


def extract_doc_number(text: str) -> str | None:
    """The document's own number from its header; numbers merely cited in the body are ignored."""
    lines = [line for line in nfc(text).splitlines() if line.strip()]
    for line in lines[:_HEADER_LINES]:
        number = _number_after_marker(line)
        if number:
            return number
    return None
