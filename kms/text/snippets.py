"""Result snippets: the part of a chunk that best shows why it matched, with highlight ranges.

Matching is case-insensitive and, for query words typed without diacritics, diacritic-insensitive
(a query "chuyen doi so" highlights "chuyển đổi số"); a word typed with diacritics matches only
itself, so "điện" does not light up "diện". It runs on `search_key` of the text, whose offsets
stay aligned with the text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from kms.text.docnumber import doc_number_key, doc_number_spans
from kms.text.normalize import fold, has_diacritics, nfc, search_key, single_spaced

__all__ = ["make_snippet", "python_make_snippet"]

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
# One occurrence of a query term in the text: (start, end, term). Plain tuples: a snippet holds
# dozens of matches, and a dataclass per match cost a third of its time.
_Match = tuple[int, int, str]
_T = TypeVar("_T", bound=tuple[Any, ...])  # a match, maybe with more fields after (start, end)


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


_ABSENT = object()  # a rule for a key that is not among these words


@functools.lru_cache(maxsize=1024)
def _key_roles(words: tuple[str, ...]) -> dict[str, str | None]:
    """`search_key` of each word -> None if any diacritics match it (typed without them, or typed
    both ways), else the word as typed with diacritics, which the text must match exactly."""
    roles: dict[str, str | None] = {search_key(w): w for w in words if has_diacritics(w)}
    roles.update((search_key(w), None) for w in words if not has_diacritics(w))
    return roles


# How an occurrence of a key counts: the verdict for its surface form (lowercase) if listed, else the
# default. A verdict is True for a word, False for a stop word; None is no match.
_Rule = tuple[dict[str, bool] | None, bool | None]


@functools.lru_cache(maxsize=1024)
def _rules(words: tuple[str, ...], stop_words: tuple[str, ...]) -> dict[str, _Rule]:
    """Each key (`search_key` of a query word) and its rule: any diacritics (a word typed without
    them) or only the word exactly as typed with them."""
    word_roles, stop_roles = _key_roles(words), _key_roles(stop_words)
    return {
        key: _rule(word_roles.get(key, _ABSENT), stop_roles.get(key, _ABSENT))
        for key in {*word_roles, *stop_roles}
    }


def _rule(as_word: object, as_stop: object) -> _Rule:
    """A key's rule from its roles (`_ABSENT`, None: any diacritics, or the exact word); a word wins."""
    if as_word is None:
        return None, True
    exact = {as_stop: False} if isinstance(as_stop, str) else {}
    if isinstance(as_word, str):
        exact[as_word] = True
    return exact or None, (False if as_stop is None else None)


def _word_matches(
    text: str, key_text: str, words: tuple[str, ...], stop_words: tuple[str, ...]
) -> list[tuple[int, int, str, bool]]:
    """The query's words and stop words in `text` (`key_text` is its `search_key`), in one
    left-to-right pass: (start, end, key, is a word, not only a stop word), non-overlapping and in
    order. A word typed with diacritics must match them exactly."""
    rules = _rules(words, stop_words)
    found: list[tuple[int, int, str, bool]] = []
    for start, end, key in _key_occurrences(key_text, rules):
        exact, verdict = rules[key]
        if exact is not None:
            verdict = exact.get(text[start:end].lower(), verdict)
        if verdict is not None:
            found.append((start, end, key, verdict))
    return found


def _key_occurrences(key_text: str, keys: Iterable[str]) -> list[_Match]:
    """(start, end, key) of each whole word of `key_text` that is one of `keys`, in order.

    A key is all word characters, so a whole-word occurrence is a maximal run of them and never
    overlaps another key's: each key is looked for on its own with `str.find`, and only its hits
    reach Python (a page of hits makes ten snippets; a regex alternation with lookarounds, or a loop
    over the text's tokens, cost several times more)."""
    occurrences: list[_Match] = []
    size = len(key_text)
    for key in keys:
        if not key:
            continue
        at = key_text.find(key)
        while at != -1:
            end = at + len(key)
            if (at == 0 or not key_text[at - 1].isalnum()) and (end == size or not key_text[end].isalnum()):
                occurrences.append((at, end, key))
            at = key_text.find(key, at + 1)
    occurrences.sort()
    return occurrences


def _non_overlapping(found: list[_T]) -> list[_T]:
    """Leftmost first, the longer of two starting together (the earlier in `found` if equal)."""
    found.sort(key=lambda m: (m[0], -m[1]))
    matches: list[_T] = []
    last_end = -1
    for match in found:
        if match[0] >= last_end:
            matches.append(match)
            last_end = match[1]
    return matches


def _with_linked_stop_words(text: str, tagged: list[tuple[int, int, str, bool]]) -> list[_Match]:
    """The strong matches (words, document numbers) with the stop-word matches that sit in one
    phrase with them (only spaces between); `tagged` is in order and non-overlapping.

    A stop word alone is no reason to highlight, but inside a matched phrase it is part of it; and a
    query typed without diacritics can't tell "trong" (in) from "trọng", so "trong tai thuong mai"
    must still light up all of "trọng tài thương mại".
    """
    kept: list[_Match] = []
    run: list[_Match] = []
    run_is_strong = False
    run_end = -1
    for start, end, key, strong in tagged:
        # One space apart (single-spaced text, the usual case) needs no look at what lies between.
        if run and not (start == run_end + 1 and text[run_end] == " ") and text[run_end:start].strip():
            if run_is_strong:
                kept.extend(run)
            run, run_is_strong = [], False
        run.append((start, end, key))
        run_is_strong = run_is_strong or strong
        run_end = end
    if run_is_strong:
        kept.extend(run)
    return kept


def _find_matches(text: str, query: str) -> list[_Match]:
    """Non-overlapping occurrences of query terms in `text` (NFC), in order."""
    words, stop_words, numbers = _query_terms(query)
    spans = doc_number_spans(text) if numbers else []
    numbered = [(s, e, key) for s, e, n in spans if (key := doc_number_key(n)) in numbers]
    if not (words or (numbered and stop_words)):
        return _non_overlapping(numbered)
    tagged = _word_matches(text, search_key(text), words, stop_words)
    if numbered:  # a number wins over a word it overlaps, then stop words fill in around them
        strong = _non_overlapping(numbered + [(s, e, key) for s, e, key, word in tagged if word])
        weak = [m for m in tagged if not m[3]]
        tagged = _non_overlapping([(s, e, key, True) for s, e, key in strong] + weak)
    if not any(strong for *_, strong in tagged):
        return []
    return _with_linked_stop_words(text, tagged)


def _best_start(text: str, matches: list[_Match], max_chars: int) -> int:
    """Start of the window holding the most distinct query terms (then most occurrences).

    Each match proposes a window starting a little before it; windows only move right, so one pass
    keeps the matches inside the current window and a count of their terms."""
    lead = min(_LEAD_CHARS, max_chars // 4)
    last_start = len(text) - max_chars
    best, best_terms, best_count = 0, -1, -1
    terms: dict[str, int] = {}
    first = end = 0  # matches[first:end] lie inside the current window
    for match in matches:
        start = max(0, min(match[0] - lead, last_start))
        while end < len(matches) and matches[end][1] <= start + max_chars:
            term = matches[end][2]
            terms[term] = terms.get(term, 0) + 1
            end += 1
        while first < end and matches[first][0] < start:
            term = matches[first][2]
            terms[term] -= 1
            if not terms[term]:
                del terms[term]
            first += 1
        distinct, count = len(terms), end - first
        if distinct > best_terms or (distinct == best_terms and count > best_count):
            best, best_terms, best_count = start, distinct, count
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


def python_make_snippet(text: str, query: str, *, max_chars: int = 320) -> tuple[str, list[Range]]:
    """Snippet of at most `max_chars` (+ `…` at cut ends) and highlight `[start, end)` offsets in it."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    flat = single_spaced(nfc(text))
    matches = _find_matches(flat, query)
    window = _best_start(flat, matches, max_chars) if matches else 0
    following = [m[0] for m in matches if m[0] >= window]
    start, end = _word_bounds(flat, window, max_chars, following[0] if following else window)
    prefix = _ELLIPSIS if start > 0 else ""
    snippet = prefix + flat[start:end] + (_ELLIPSIS if end < len(flat) else "")
    shift = len(prefix) - start
    ranges = [(m[0] + shift, m[1] + shift) for m in matches if start <= m[0] and m[1] <= end]
    return snippet, _merge(ranges, snippet)


# This module as written, or its compiled copy when one was built from this very file (kms.native):
# every search makes ten snippets, and compiled they take ~0.6 ms less. The copy skips this block.
make_snippet = python_make_snippet
if __name__ == "kms.text.snippets":
    from kms.native import compiled_copy

    _compiled = compiled_copy(__name__, __file__)
    if _compiled is not None:
        make_snippet = _compiled.python_make_snippet
