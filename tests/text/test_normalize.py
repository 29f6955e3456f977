from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.text.normalize import _search_char, clean_text, fold, has_diacritics, nfc, search_key, single_spaced

VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyàằầèềìòồờùừỳáắấéếíóốớúứýảẳẩẻểỉỏổởủửỷãẵẫẽễĩõỗỡũữỹạặậẹệịọộợụựỵ"
vietnamese_text = st.text(alphabet=VIETNAMESE + VIETNAMESE.upper() + " .,\n\t0123456789/-", max_size=200)


def test_nfc_composes_decomposed_vietnamese() -> None:
    decomposed = unicodedata.normalize("NFD", "Bộ Ngoại giao")
    assert nfc(decomposed) == "Bộ Ngoại giao"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hà Nội\r\nngày 14/3/2025", "Hà Nội\nngày 14/3/2025"),
        ("Đại sứ quán\rtại Tokyo", "Đại sứ quán\ntại Tokyo"),
        ("\ufeffCông hàm", "Công hàm"),
        ("lãnh\u200bsự", "lãnhsự"),
        ("bảo\u00adhộ", "bảohộ"),
        ("công\x00dân\x07", "côngdân"),
        ("Bộ\u00a0Ngoại\u202fgiao", "Bộ Ngoại giao"),
        ("Điều   5.\t\tPhạm vi", "Điều 5.\tPhạm vi"),
        ("Chương I   \nQUY ĐỊNH CHUNG", "Chương I\nQUY ĐỊNH CHUNG"),
        ("Điều 1.\n\n\n\nĐiều 2.", "Điều 1.\n\nĐiều 2."),
        ("  \n Nghị quyết số 292/NQ-CP \n\n", "Nghị quyết số 292/NQ-CP"),
        ("trang 1\fTrang 2", "trang 1\nTrang 2"),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_text_recomposes_after_removing_invisible_chars() -> None:
    assert clean_text("Vie\u200b\u0302\u0323t") == "Việt"


def test_clean_text_of_whitespace_is_empty() -> None:
    assert clean_text(" \u00a0\r\n\t\u200b ") == ""


@given(st.text(max_size=300))
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


@given(st.text(max_size=300))
def test_clean_text_output_has_no_controls_but_newline_and_tab(text: str) -> None:
    cleaned = clean_text(text)
    assert all(ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") for ch in cleaned)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nghị định", "Nghi dinh"),
        ("ĐẠI SỨ QUÁN", "DAI SU QUAN"),
        ("đường", "duong"),
        ("Cộng hòa xã hội chủ nghĩa Việt Nam", "Cong hoa xa hoi chu nghia Viet Nam"),
        ("ươ ỰỮ ỹ", "uo UU y"),
        ("Français, São Paulo, Łódź, Øresund", "Francais, Sao Paulo, Lodz, Oresund"),
        ("292/NĐ-CP", "292/ND-CP"),
        ("東京 Москва", "東京 Москва"),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


@given(vietnamese_text)
def test_fold_preserves_length_and_positions(text: str) -> None:
    text = nfc(text)
    folded = fold(text)
    assert len(folded) == len(text)
    assert all(fold(ch) == out for ch, out in zip(text, folded, strict=True))


@given(st.text(max_size=200))
def test_fold_is_length_preserving_on_any_nfc_text(text: str) -> None:
    text = nfc(text)
    assert len(fold(text)) == len(text)


@given(vietnamese_text)
def test_fold_result_has_no_diacritics(text: str) -> None:
    assert not has_diacritics(fold(nfc(text)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bao ho cong dan", False),
        ("bảo hộ công dân", True),
        ("Đ", True),
        ("café", True),
        ("Viet Nam 2025", False),
        (unicodedata.normalize("NFD", "Việt"), True),
        ("東京", False),
        ("", False),
    ],
)
def test_has_diacritics(text: str, expected: bool) -> None:
    assert has_diacritics(text) is expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Chuyển đổi số", "chuyen doi so"),
        ("ĐẠI SỨ QUÁN", "đại sứ quán"),
        (unicodedata.normalize("NFD", "Bộ Ngoại giao"), "bo ngoai giao"),
    ],
)
def test_search_key_ignores_case_and_diacritics(a: str, b: str) -> None:
    assert search_key(a) == search_key(b)


def test_search_key_is_folded_lowercase() -> None:
    assert search_key("Nghị Quyết 292/NQ-CP") == "nghi quyet 292/nq-cp"


@given(st.text(max_size=200))
def test_search_key_aligns_with_nfc_text(text: str) -> None:
    assert len(search_key(text)) == len(nfc(text))


def _search_key_reference(text: str) -> str:
    return "".join(_search_char(ch) for ch in nfc(text))


@given(st.text(max_size=300))
def test_search_key_is_the_search_form_of_each_character(text: str) -> None:
    # Short and long texts take different paths (`str.translate`, an array of code points).
    assert search_key(text) == _search_key_reference(text)
    assert search_key(text * 5) == _search_key_reference(text * 5)


@pytest.mark.parametrize(
    "text",
    [
        "Nghị quyết số 292/NQ-CP về chuyển đổi số quốc gia, ĐẠI SỨ QUÁN tại Tokyo. " * 3,
        "Giá 100€ cho hộ chiếu điện tử — thủ tục lãnh sự ở nước ngoài. " * 3,  # beyond the table
        "ĐIỆN MẬT " * 10 + "\ud800",  # a lone surrogate
        "x" * 63,
        "x" * 64,
    ],
)
def test_search_key_of_long_texts(text: str) -> None:
    assert search_key(text) == _search_key_reference(text)


@given(
    st.text(alphabet=st.sampled_from(["a", "ă", " ", "\n", "\t", "\xa0", "\u2028", "\x1c", ","]), max_size=60)
)
def test_single_spaced_is_split_and_join(text: str) -> None:
    assert single_spaced(text) == " ".join(text.split())
