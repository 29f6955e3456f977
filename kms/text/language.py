"""Vietnamese-or-English detection for queries and documents.

Queries are often a few words and Vietnamese is often typed without diacritics ("bao ho cong
dan"), so besides diacritics we use frequent syllables and the shape of a Vietnamese syllable:
most English words ("protection", "Japan") cannot be spelled as one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from kms.text.docnumber import doc_number_spans
from kms.text.normalize import fold, nfc

__all__ = ["detect_language"]

Language = Literal["vi", "en"]

_TONES = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")
_VI_LETTERS = frozenset(
    nfc(base + tone) for base in "aăâeêioôơuưy" for tone in _TONES if base + tone not in "aeiouy"
) | {"đ"}

_EN_FUNCTION_WORDS = """
    the of and to in is are was were be been for on with as by at from that this it an a or not have has
    had will would can could should which who what when where how about into their its our his her they
    we you he she all any more than also such between under over after before other these those there do
    does if no so but per may must i my me us them
"""
# Frequent syllables of Vietnamese typed without diacritics; words that are also English are dropped.
_VI_FREQUENT_SYLLABLES = """
    cua va cac nhung duoc trong cho voi nguoi viet nam mot khong nay da den theo tai ve cong dan bao ho
    quan nuoc ngoai giao quyet nghi dinh thong tu van ban lanh su chinh phu bo truong hop tac quoc te phat
    trien kinh xa hoi nhan lam viec nhu nhieu tren duoi sau truoc neu thi ma vao ra len dang se cung hien
    tinh thanh pho ha noi chi minh doi moi chuyen ky thuat tieu chuan huong thu tuc dai dien co nhat
    nhiem vu trach cap giay phep khi de hay thang ngay
"""
_EN_WORDS = frozenset(_EN_FUNCTION_WORDS.split())
_VI_SYLLABLES = frozenset(_VI_FREQUENT_SYLLABLES.split()) - _EN_WORDS
_SYLLABLE = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx])?[aeiouy]{1,3}(?:ch|ng|nh|[cmnpt])?"
)
_WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=8192)
def _word_score(word: str) -> tuple[float, float]:
    """(Vietnamese, English) evidence carried by one lowercase word."""
    if any(ch in _VI_LETTERS for ch in word):
        return 1.0, 0.0
    if word in _VI_SYLLABLES:
        return 1.0, 0.0
    if word in _EN_WORDS:
        return 0.0, 1.0
    if _SYLLABLE.fullmatch(fold(word)):
        return 0.5, 0.0
    return 0.0, 1.0


def _without_doc_numbers(text: str) -> str:
    """Drop `292/NQ-CP`-style identifiers, whose letters are abbreviations of neither language."""
    spans = doc_number_spans(text)
    for start, end, _ in reversed(spans):
        text = f"{text[:start]} {text[end:]}"
    return text


def detect_language(text: str) -> Language:
    """ "vi" or "en"; a tie goes to English, no evidence at all to Vietnamese (the corpus's language)."""
    words = _WORD.findall(_without_doc_numbers(nfc(text)).lower())
    vi = en = 0.0
    for word in words:
        vi_score, en_score = _word_score(word)
        vi += vi_score
        en += en_score
    return "en" if en > 0 and en >= vi else "vi"
