"""Lexical terms for sparse (BM25-style) retrieval of Vietnamese text.

Vietnamese words are mostly two syllables written apart ("chuyển đổi" = convert), so adjacent
syllable bigrams stand in for a word segmenter. Document numbers stay whole so `292/NQ-CP` is
one term; `terms` also emits their pieces (`292`, `nq`, `cp`) so "nghị quyết 292" still matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from kms.text.docnumber import doc_number_key, doc_number_spans
from kms.text.normalize import fold, nfc

__all__ = ["DOC_PREFIX", "syllables", "terms"]

DOC_PREFIX = "#"
"""Prefix of document-number terms, so `#292/nq-cp` never collides with a word."""

# Words are letter/digit runs (no underscore: it joins bigrams); sentence punctuation breaks phrases.
_WORD_OR_BREAK = re.compile(r"[^\W_]+|[.,;:?!\n]")
_PIECE = re.compile(r"[^\W_]+")


def _units(text: str) -> Iterator[str | None]:
    """Lowercase syllables and doc-number keys in order; None marks a phrase break."""
    text = nfc(text)
    position = 0
    for start, end, number in [*doc_number_spans(text), (len(text), len(text), "")]:
        for match in _WORD_OR_BREAK.finditer(text[position:start].lower()):
            token = match.group()
            yield token if _PIECE.fullmatch(token) else None
        if number:
            yield doc_number_key(number)
        position = end


def _is_doc_number(unit: str) -> bool:
    return "/" in unit


def syllables(text: str) -> list[str]:
    """Lowercase syllables; a document number is one token, its `doc_number_key` (pieces not added)."""
    return [unit for unit in _units(text) if unit is not None]


def _phrases(text: str) -> list[list[str]]:
    """Runs of syllables between punctuation; a document number stands alone as its own run."""
    phrases: list[list[str]] = [[]]
    for unit in _units(text):
        if unit is None:
            phrases.append([])
        elif _is_doc_number(unit):
            phrases += [[unit], []]
        else:
            phrases[-1].append(unit)
    return [phrase for phrase in phrases if phrase]


def _unigrams(phrase: list[str]) -> list[str]:
    if len(phrase) == 1 and _is_doc_number(phrase[0]):
        return [DOC_PREFIX + phrase[0], *_PIECE.findall(phrase[0])]
    return phrase


def terms(text: str, *, folded: bool) -> list[str]:
    """Unigrams, then `_`-joined bigrams within phrases; doc numbers as `#key` plus their pieces.

    `folded=True` strips diacritics from every term, for matching queries typed without them.
    """
    phrases = _phrases(text)
    if folded:
        phrases = [[fold(unit) for unit in phrase] for phrase in phrases]
    unigrams = [term for phrase in phrases for term in _unigrams(phrase)]
    bigrams = [
        f"{first}_{second}"
        for phrase in phrases
        if not _is_doc_number(phrase[0])
        for first, second in pairwise(phrase)
    ]
    return unigrams + bigrams
