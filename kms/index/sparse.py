"""Vietnamese lexical sparse vectors: syllables + syllable bigrams, exact and diacritic-folded.

Qdrant applies IDF at query time (the `idf` modifier in collection.yaml); documents carry a BM25
term-frequency saturation, queries a weight of 1 per distinct term, so the dot product is BM25.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

from kms.text.tokens import terms

LEX = "lex"
LEX_FOLDED = "lex_folded"
_K1 = 1.2
_B = 0.75
_AVG_TERMS = 400.0  # typical term count of a ~250-word chunk (unigrams + bigrams)


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


def term_id(term: str) -> int:
    """Stable 32-bit id of a term (Qdrant sparse indices are u32)."""
    return zlib.crc32(term.encode("utf-8"))


def _vector(weights: dict[int, float]) -> SparseVec:
    indices = sorted(weights)
    return SparseVec(indices=indices, values=[weights[i] for i in indices])


def _bm25_doc(counts: Counter[str], length: int) -> SparseVec:
    norm = _K1 * (1 - _B + _B * length / _AVG_TERMS)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        index = term_id(term)
        weights[index] = weights.get(index, 0.0) + tf * (_K1 + 1) / (tf + norm)
    return _vector(weights)


def encode_passage(text: str) -> dict[str, SparseVec]:
    exact = terms(text, folded=False)
    folded = terms(text, folded=True)
    return {
        LEX: _bm25_doc(Counter(exact), len(exact)),
        LEX_FOLDED: _bm25_doc(Counter(folded), len(folded)),
    }


def encode_query(text: str) -> dict[str, SparseVec]:
    return {
        LEX: _vector({term_id(t): 1.0 for t in set(terms(text, folded=False))}),
        LEX_FOLDED: _vector({term_id(t): 1.0 for t in set(terms(text, folded=True))}),
    }
