from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.text.normalize import has_diacritics
from kms.text.tokens import syllables, terms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Chuyển đổi số", ["chuyển", "đổi", "số"]),
        ("Bộ Ngoại giao, năm 2025.", ["bộ", "ngoại", "giao", "năm", "2025"]),
        (unicodedata.normalize("NFD", "Việt Nam"), ["việt", "nam"]),
        ("Nghị quyết 292/NQ-CP", ["nghị", "quyết", "292/nq-cp"]),
        ("Nghị định 104/2018/NĐ-CP", ["nghị", "định", "104/2018/nd-cp"]),
        ("theo 104/2018/nd-cp", ["theo", "104/2018/nd-cp"]),
        ("ngày 14/3/2025", ["ngày", "14", "3", "2025"]),
        ("quy_định", ["quy", "định"]),
        ("", []),
    ],
)
def test_syllables(text: str, expected: list[str]) -> None:
    assert syllables(text) == expected


def test_terms_are_unigrams_then_bigrams() -> None:
    assert terms("chuyển đổi số", folded=False) == ["chuyển", "đổi", "số", "chuyển_đổi", "đổi_số"]


def test_folded_terms_drop_diacritics() -> None:
    assert terms("Chuyển đổi số", folded=True) == ["chuyen", "doi", "so", "chuyen_doi", "doi_so"]


@pytest.mark.parametrize("separator", [".", ",", ";", ":", "?", "!", "\n"])
def test_bigrams_stop_at_punctuation(separator: str) -> None:
    assert "giao_bảo" not in terms(f"Bộ Ngoại giao{separator} bảo hộ", folded=False)


def test_doc_number_is_one_prefixed_term_plus_pieces() -> None:
    assert terms("292/NQ-CP", folded=False) == ["#292/nq-cp", "292", "nq", "cp"]


def test_doc_number_term_is_the_same_folded_or_not_and_in_any_case() -> None:
    assert "#104/2018/nd-cp" in terms("Nghị định 104/2018/NĐ-CP", folded=False)
    assert "#104/2018/nd-cp" in terms("nghi dinh 104/2018/nd-cp", folded=True)


def test_doc_numbers_do_not_form_bigrams() -> None:
    found = terms("Nghị quyết 292/NQ-CP về chuyển đổi số", folded=False)
    assert [t for t in found if "_" in t] == ["nghị_quyết", "về_chuyển", "chuyển_đổi", "đổi_số"]


def test_numbers_are_kept_as_unigrams() -> None:
    assert "292" in terms("nghị quyết 292", folded=False)


@given(st.text(alphabet="aăâbcdđeêơưyàằầáắấạậ ĐÀ,.\n0123456789/-", max_size=120))
def test_folded_terms_never_carry_diacritics(text: str) -> None:
    assert not any(has_diacritics(term) for term in terms(text, folded=True))


@given(st.text(max_size=120))
def test_word_terms_never_contain_separators(text: str) -> None:
    words = [t for t in terms(text, folded=False) if not t.startswith("#")]
    assert all(t and not any(ch.isspace() for ch in t) for t in words)
