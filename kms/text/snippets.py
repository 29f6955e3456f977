"""Result snippets: the part of a chunk that best shows why it matched, with highlight ranges.

Matching is case-insensitive and, for query words typed without diacritics, diacritic-insensitive
(a query "chuyen doi so" highlights "chuyển đổi số"); a word typed with diacritics matches only
itself, so "điện" does not light up "diện". It runs on `search_key` of the text, whose offsets
stay aligned with the text.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from kms.text.docnumber import doc_number_key, doc_number_spans
from kms.text.normalize import fold, has_diacritics, nfc, search_key

__all__ = ["make_snippet"]

_ELLIPSIS = "…"
_LEAD_CHARS = 60  # context kept before the first match, at most a quarter of the snippet
_STOP_WORDS_TEXT = """
    và của các là những được cho với trong này có một để khi thì mà ở về theo tại đã sẽ
    the of and in to an for on is are was with by at from or as be this that it
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_FOLDED_STOP_WORDS = frozenset(fold(word) for word in _STOP_WORDS)
_WORD = re.compile(r"[^\W_]+")

Range = tuple[int, int]


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    term: str


def _is_stop_word(word: str) -> bool:
    """Stop word as written, or as typed without diacritics ("cua" for "của", not "cửa")."""
    return word in _STOP_WORDS or (not has_diacritics(word) and fold(word) in _FOLDED_STOP_WORDS)


@functools.lru_cache(maxsize=256)  # one query makes a snippet for every hit on its page
def _query_terms(query: str) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    """The query's meaningful words and its stop words (lowercase), and its document-number keys."""
    query = nfc(query)
    spans = doc_number_spans(query)
    numbers = {doc_number_key(number) for _, _, number in spans}
    for start, end, _ in reversed(spans):
        query = f"{query[:start]} {query[end:]}"
    words = list(dict.fromkeys(w for w in _WORD.findall(query.lower()) if len(w) > 1))
    return (
        tuple(w for w in words if not _is_stop_word(w)),
        tuple(w for w in words if _is_stop_word(w)),
        frozenset(numbers),
    )


@functools.lru_cache(maxsize=1024)
def _word_pattern(words: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str], frozenset[str]]:
    """The pattern finding `words` in `search_key` text, the exact-only keys, and the loose keys."""
    exact = {search_key(w): w for w in words if has_diacritics(w)}
    loose = frozenset(search_key(w) for w in words if not has_diacritics(w))
    alternatives = "|".join(re.escape(key) for key in sorted({*exact, *loose}, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])"), exact, loose


def _word_matches(text: str, key_text: str, words: tuple[str, ...]) -> list[_Match]:
    """Occurrences of whole words in `text` (`key_text` is its `search_key`); a word typed with
    diacritics must match them exactly."""
    pattern, exact, loose = _word_pattern(words)
    matches: list[_Match] = []
    for match in pattern.finditer(key_text):
        key = match.group()
        if key in loose or text[match.start() : match.end()].lower() == exact[key]:
            matches.append(_Match(match.start(), match.end(), key))
    return matches


def _non_overlapping(found: list[_Match]) -> list[_Match]:
    found.sort(key=lambda m: (m.start, -m.end))
    matches: list[_Match] = []
    for match in found:
        if not matches or match.start >= matches[-1].end:
            matches.append(match)
    return matches


def _with_linked_stop_words(text: str, strong: list[_Match], weak: list[_Match]) -> list[_Match]:
    """Add the stop-word matches that sit in one phrase (only spaces between) with a real match.

    A stop word alone is no reason to highlight, but inside a matched phrase it is part of it; and a
    query typed without diacritics can't tell "trong" (in) from "trọng", so "trong tai thuong mai"
    must still light up all of "trọng tài thương mại".
    """
    strong_keys = {(m.start, m.end) for m in strong}
    merged = _non_overlapping([*strong, *weak])
    kept: list[_Match] = []
    run: list[_Match] = []

    def close() -> None:
        if any((m.start, m.end) in strong_keys for m in run):
            kept.extend(run)
        run.clear()

    for match in merged:
        if run and text[run[-1].end : match.start].strip():
            close()
        run.append(match)
    close()
    return kept


def _find_matches(text: str, query: str) -> list[_Match]:
    """Non-overlapping occurrences of query terms in `text` (NFC), in order."""
    words, stop_words, numbers = _query_terms(query)
    spans = doc_number_spans(text) if numbers else []
    found = [_Match(s, e, key) for s, e, n in spans if (key := doc_number_key(n)) in numbers]
    key_text = search_key(text) if words or stop_words else text
    if words:
        found += _word_matches(text, key_text, words)
    matches = _non_overlapping(found)
    if matches and stop_words:
        matches = _with_linked_stop_words(text, matches, _word_matches(text, key_text, stop_words))
    return matches


def _best_start(text: str, matches: list[_Match], max_chars: int) -> int:
    """Start of the window holding the most distinct query terms (then most occurrences)."""
    starts = [m.start for m in matches]
    ends = [m.end for m in matches]  # matches do not overlap, so ends are sorted too
    lead = min(_LEAD_CHARS, max_chars // 4)
    best, best_score = 0, (-1, -1)
    for match in matches:
        start = max(0, min(match.start - lead, len(text) - max_chars))
        inside = matches[bisect_left(starts, start) : bisect_right(ends, start + max_chars)]
        score = (len({m.term for m in inside}), len(inside))
        if score > best_score:
            best, best_score = start, score
    return best


def _word_bounds(text: str, start: int, max_chars: int, first_match: int) -> Range:
    """Shrink `[start, start + max_chars)` so it neither starts nor ends inside a word."""
    if start > 0 and text[start - 1] != " ":
        space = text.find(" ", start, max(start, first_match))
        start = space + 1 if space != -1 else max(start, first_match)
    end = min(len(text), start + max_chars)
    if end < len(text) and text[end] != " ":
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    return start, end


def _merge(ranges: list[Range], snippet: str) -> list[Range]:
    """Join ranges separated only by whitespace, so a matched phrase is one highlight."""
    merged: list[Range] = []
    for start, end in ranges:
        if merged and not snippet[merged[-1][1] : start].strip():
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def make_snippet(text: str, query: str, *, max_chars: int = 320) -> tuple[str, list[Range]]:
    """Snippet of at most `max_chars` (+ `…` at cut ends) and highlight `[start, end)` offsets in it."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    flat = " ".join(nfc(text).split())
    matches = _find_matches(flat, query)
    window = _best_start(flat, matches, max_chars) if matches else 0
    following = [m.start for m in matches if m.start >= window]
    start, end = _word_bounds(flat, window, max_chars, following[0] if following else window)
    prefix = _ELLIPSIS if start > 0 else ""
    snippet = prefix + flat[start:end] + (_ELLIPSIS if end < len(flat) else "")
    shift = len(prefix) - start
    ranges = [(m.start + shift, m.end + shift) for m in matches if start <= m.start and m.end <= end]
    return snippet, _merge(ranges, snippet)
