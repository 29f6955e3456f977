"""Chunking that follows the structure of Vietnamese legal documents (Phần, Chương, Mục, Điều).

An article (Điều) is the unit people cite and ask about, so a chunk never straddles two
articles of different chapters and an article is only cut when it alone is too long: first at
clauses (khoản "1."), then points (điểm "a)"), then word windows. Every chunk carries its
chapter/article path as `heading`, so a retrieved piece of a long article still says where it is
from. Text without articles is chunked as prose by paragraphs and markdown headings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import groupby

from kms.text.normalize import nfc

__all__ = ["Section", "split_text"]

Span = tuple[int, int]


@dataclass(frozen=True)
class Section:
    """One chunk: `text == source[start:end]`; `heading` is its structure path ("" for plain prose)."""

    text: str
    heading: str
    start: int
    end: int


@dataclass(frozen=True)
class _Options:
    target_words: int
    max_words: int
    overlap_words: int


@dataclass(frozen=True)
class _Line:
    start: int
    end: int
    label: str  # NFC text without markdown markers and surrounding whitespace
    kind: str  # part | chapter | section | article | closing | text | blank


@dataclass(frozen=True)
class _Block:
    """A span to pack into chunks; `sticky` blocks (headings) stay with what follows."""

    start: int
    end: int
    words: int
    label: str = ""
    sticky: bool = False


_MARKERS = re.compile(r"^[\s>#*_]+|[\s*_]+$")
_STRUCTURE = (
    ("part", re.compile(r"phần\s+(?:thứ\s+[^\W\d_]+|[ivxlcdm]+\b|\d+\b)", re.IGNORECASE)),
    ("chapter", re.compile(r"chương\s+(?:[ivxlcdm]+|\d+)\b", re.IGNORECASE)),
    ("section", re.compile(r"mục\s+(?:[ivxlcdm]+|\d+)\b", re.IGNORECASE)),
    ("article", re.compile(r"điều\s+\d+[a-zđ]?\s*(?:[.:]|$)", re.IGNORECASE)),
    ("closing", re.compile(r"nơi\s+nhận\s*:", re.IGNORECASE)),
)
_CONTAINERS = ("part", "chapter", "section")
_STARTS_UNIT = frozenset((*_CONTAINERS, "article", "closing"))
_CLAUSE = re.compile(r"\d{1,3}\.(?:\s|$)")
_POINT = re.compile(r"[a-zđ]\)(?:\s|$)")
_BARE_LABEL = re.compile(r"(?:chương|phần|mục)\s+\S+", re.IGNORECASE)
_MD_HEADING = re.compile(r"\s{0,3}(#{1,6})\s+\S")
_WORD = re.compile(r"\S+")
_SPACES = re.compile(r"\s+")


def _count_words(text: str, start: int, end: int) -> int:
    return len(text[start:end].split())


def _label(line: str) -> str:
    """Line text without markdown emphasis/heading markers, whitespace collapsed."""
    return _SPACES.sub(" ", _MARKERS.sub("", nfc(line)))


def _classify(raw: str, label: str) -> str:
    if not raw.strip():
        return "blank"
    for kind, pattern in _STRUCTURE:
        if pattern.match(label):
            return kind
    return "text"


def _lines(text: str) -> list[_Line]:
    """Every line with its offsets (line break included) and structural kind."""
    lines: list[_Line] = []
    position = 0
    for raw in text.splitlines(keepends=True):
        label = _label(raw)
        lines.append(_Line(position, position + len(raw), label, _classify(raw, label)))
        position += len(raw)
    return lines


# --- packing -------------------------------------------------------------------------------------

Packed = tuple[int, int, list[_Block]]
Splitter = Callable[[int, int], list[Span]]


def _windows(text: str, start: int, end: int, opts: _Options) -> list[Span]:
    """Windows of `target_words` words overlapping by `overlap_words`, for text with no boundary."""
    words = [m.span() for m in _WORD.finditer(text, start, end)]
    step = max(1, opts.target_words - opts.overlap_words)
    spans: list[Span] = []
    for first in range(0, len(words), step):
        last = min(first + opts.target_words, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans


def _group_span(group: list[_Block]) -> Packed:
    return group[0].start, group[-1].end, group


def _fits(group: list[_Block], block: _Block, opts: _Options) -> bool:
    """A heading-only group takes its content up to `max_words`; anything else packs to target."""
    if not group:
        return True
    words = sum(b.words for b in group) + block.words
    limit = opts.max_words if all(b.sticky for b in group) else opts.target_words
    return words <= limit


def _pack_long(group: list[_Block], block: _Block, split: Splitter) -> list[Packed]:
    """Emit the open group, then the pieces of an oversized block (a pending heading joins them)."""
    if group and all(b.sticky for b in group):
        glued = replace(block, start=group[0].start)
        return [(s, e, [*group, glued]) for s, e in split(glued.start, glued.end)]
    head = [_group_span(group)] if group else []
    return head + [(s, e, [block]) for s, e in split(block.start, block.end)]


def _pack(blocks: Sequence[_Block], opts: _Options, split: Splitter) -> list[Packed]:
    """Greedily join consecutive blocks up to `target_words`; `split` cuts blocks over `max_words`."""
    out: list[Packed] = []
    group: list[_Block] = []
    for block in blocks:
        if block.words > opts.max_words:
            out += _pack_long(group, block, split)
            group = []
        elif _fits(group, block, opts):
            group.append(block)
        else:
            out.append(_group_span(group))
            group = [block]
    if group:
        out.append(_group_span(group))
    return out


def _to_section(text: str, start: int, end: int, heading: str) -> Section | None:
    """Section for the span trimmed of surrounding whitespace; None if nothing is left."""
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped:
        return None
    first = start + len(chunk) - len(chunk.lstrip())
    return Section(stripped, heading, first, first + len(stripped))


def _sections(text: str, packed: list[tuple[int, int, str]]) -> list[Section]:
    found = (_to_section(text, start, end, heading) for start, end, heading in packed)
    return [section for section in found if section is not None]


# --- prose ---------------------------------------------------------------------------------------


def _join_path(parts: Sequence[str]) -> str:
    return " > ".join(part for part in parts if part)


def _prose_blocks(text: str, lines: Sequence[_Line], base: str) -> list[tuple[str, list[_Block]]]:
    """Paragraph blocks grouped by markdown section; a heading line is a sticky block of its own."""
    sections: list[tuple[str, list[_Block]]] = [(base, [])]
    stack: list[tuple[int, str]] = []
    paragraph: list[_Line] = []

    def close_paragraph() -> None:
        if paragraph:
            start, end = paragraph[0].start, paragraph[-1].end
            sections[-1][1].append(_Block(start, end, _count_words(text, start, end)))
            paragraph.clear()

    for line in lines:
        heading = _MD_HEADING.match(text, line.start, line.end)
        if line.kind == "blank" or heading:
            close_paragraph()
        if heading:
            level = len(heading.group(1))
            stack = [*(item for item in stack if item[0] < level), (level, line.label)]
            block = _Block(line.start, line.end, _count_words(text, line.start, line.end), sticky=True)
            sections.append((_join_path([base, *(label for _, label in stack)]), [block]))
        elif line.kind != "blank":
            paragraph.append(line)
    close_paragraph()
    return sections


def _prose_chunks(text: str, lines: Sequence[_Line], opts: _Options, base: str = "") -> list[Section]:
    """Paragraphs packed up to `target_words` within each markdown section."""
    packed: list[tuple[int, int, str]] = []
    for heading, blocks in _prose_blocks(text, lines, base):
        for start, end, _ in _pack(blocks, opts, lambda s, e: _windows(text, s, e, opts)):
            packed.append((start, end, heading))
    return _sections(text, packed)


# --- legal structure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """A preamble, an article (with the chapter headings just before it), or closing matter."""

    start: int
    end: int
    kind: str  # article | prose
    container: tuple[str, ...]
    label: str = ""


def _container_label(lines: Sequence[_Line], index: int) -> str:
    """Heading label, plus the title when that is the next line in capitals: "Chương II. QUY ĐỊNH CHUNG"."""
    label = lines[index].label
    if not _BARE_LABEL.fullmatch(label.rstrip(".:")):
        return label
    following = next((line for line in lines[index + 1 :] if line.kind != "blank"), None)
    if following and following.kind == "text" and following.label.isupper():
        return f"{label.rstrip('.:')}. {following.label}"
    return label


def _enter(path: dict[str, str], kind: str, label: str) -> None:
    """Open a part/chapter/section, closing any deeper level."""
    for deeper in _CONTAINERS[_CONTAINERS.index(kind) :]:
        path.pop(deeper, None)
    path[kind] = label


def _legal_units(text: str, lines: Sequence[_Line]) -> list[_Unit]:
    """Cut the text into preamble, articles and closing; headings stick to the next article."""
    units: list[_Unit] = []
    path: dict[str, str] = {}
    current = _Unit(0, 0, "prose", ())
    in_headings = False  # the open unit holds only part/chapter/section headings so far
    for index, line in enumerate(lines):
        if line.kind in _STARTS_UNIT and not in_headings:
            units.append(replace(current, end=line.start))
            current = _Unit(line.start, 0, "prose", ())
        if line.kind in _CONTAINERS:
            _enter(path, line.kind, _container_label(lines, index))
            current = replace(current, container=tuple(path.values()))
            in_headings = True
        elif line.kind == "article":
            current = replace(current, kind="article", container=tuple(path.values()), label=line.label)
            in_headings = False
        elif line.kind == "closing":
            in_headings = False
    units.append(replace(current, end=len(text)))
    return [unit for unit in units if text[unit.start : unit.end].strip()]


def _cut(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    """Split a span before every line (after its first) whose label matches `pattern`."""
    cuts = [start]
    position = start
    for raw in text[start:end].splitlines(keepends=True):
        if position > start and pattern.match(_label(raw)):
            cuts.append(position)
        position += len(raw)
    return list(zip(cuts, [*cuts[1:], end], strict=True))


def _split_article(
    text: str, start: int, end: int, opts: _Options, levels: Sequence[re.Pattern[str]]
) -> list[Span]:
    """Cut an over-long article at clauses, then points, then into word windows."""
    if _count_words(text, start, end) <= opts.max_words:
        return [(start, end)]
    if not levels:
        return _windows(text, start, end, opts)
    pieces = _cut(text, start, end, levels[0])
    if len(pieces) < 2:
        return _split_article(text, start, end, opts, levels[1:])
    # The heading/intro before the first clause (or point) stays with what follows it.
    blocks = [_Block(s, e, _count_words(text, s, e), sticky=i == 0) for i, (s, e) in enumerate(pieces)]
    packed = _pack(blocks, opts, lambda s, e: _split_article(text, s, e, opts, levels[1:]))
    return [(s, e) for s, e, _ in packed]


def _article_chunks(text: str, units: Sequence[_Unit], opts: _Options) -> list[Section]:
    """Articles of one chapter: small ones merged up to `target_words`, long ones cut."""
    blocks = [_Block(u.start, u.end, _count_words(text, u.start, u.end), u.label) for u in units]
    container = units[0].container
    packed: list[tuple[int, int, str]] = []
    for start, end, group in _pack(
        blocks, opts, lambda s, e: _split_article(text, s, e, opts, (_CLAUSE, _POINT))
    ):
        articles = " | ".join(_shorten(block.label) for block in group)
        packed.append((start, end, _join_path([*container, articles])))
    return _sections(text, packed)


def _shorten(label: str, limit: int = 160) -> str:
    """Keep headings readable when an article's whole first paragraph sits on its heading line."""
    if len(label) <= limit:
        return label
    return label[:limit].rsplit(" ", 1)[0] + "…"


def _run_key(unit: _Unit) -> tuple[str, ...]:
    """Articles of one part/chapter/section share a key; every prose unit has its own."""
    return ("article", *unit.container) if unit.kind == "article" else ("prose", str(unit.start))


def _legal_chunks(text: str, lines: Sequence[_Line], opts: _Options) -> list[Section]:
    chunks: list[Section] = []
    for key, run in groupby(_legal_units(text, lines), key=_run_key):
        units = list(run)
        if key[0] == "article":
            chunks += _article_chunks(text, units, opts)
            continue
        [unit] = units
        inside = [line for line in lines if unit.start <= line.start < unit.end]
        chunks += _prose_chunks(text, inside, opts, _join_path(unit.container))
    return chunks


def split_text(
    text: str, *, target_words: int = 250, max_words: int = 350, overlap_words: int = 40
) -> list[Section]:
    """Chunks for embedding: by legal structure when the text has articles (Điều), else by paragraphs."""
    if not 0 <= overlap_words < target_words <= max_words:
        raise ValueError("need 0 <= overlap_words < target_words <= max_words")
    opts = _Options(target_words, max_words, overlap_words)
    lines = _lines(text)
    if any(line.kind == "article" for line in lines):
        return _legal_chunks(text, lines, opts)
    return _prose_chunks(text, lines, opts)
