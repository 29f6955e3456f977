from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.text.docnumber import (
    DOC_NUMBER_PATTERN,
    doc_number_key,
    doc_number_spans,
    extract_doc_number,
    find_doc_numbers,
    normalize_doc_number,
)

OFFICIAL_NUMBERS = [
    "292/NQ-CP",
    "104/2018/NĐ-CP",
    "15/2024/TT-BNG",
    "1250/QĐ-BNG",
    "45/ĐSQ-TKO",
    "03/2020/QH14",
    "12/CT-TTg",
    "2187/QĐ-TTg",
    "07/L-CTN",
]


@pytest.mark.parametrize("number", OFFICIAL_NUMBERS)
def test_pattern_matches_official_numbers_whole(number: str) -> None:
    match = DOC_NUMBER_PATTERN.search(f"Căn cứ văn bản số {number} ngày 14/3/2025.")
    assert match is not None
    assert match.group() == number


@pytest.mark.parametrize(
    "text",
    [
        "Hà Nội, ngày 14/3/2025",
        "tỷ lệ 1/2 số phiếu",
        "hoạt động 24/7",
        "tốc độ 60 km/h",
        "ngày 05/01/2024/",
        "Chương trình 5/Hà Nội",
    ],
)
def test_pattern_ignores_dates_fractions_and_words(text: str) -> None:
    assert DOC_NUMBER_PATTERN.search(text) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 292/nq-cp ", "292/NQ-CP"),
        ("104 / 2018 / nđ - cp", "104/2018/NĐ-CP"),
        ("12/ct-ttg", "12/CT-TTg"),
        ("12/CT-TTG", "12/CT-TTg"),
        ("1250/QĐ-BNG", "1250/QĐ-BNG"),
        ("03/2020/qh14", "03/2020/QH14"),
    ],
)
def test_normalize_doc_number(raw: str, expected: str) -> None:
    assert normalize_doc_number(raw) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("104/2018/NĐ-CP", "104/2018/nd-cp"),
        ("1250/QĐ-BNG", "1250/qd-bng"),
        ("12/CT-TTg", "12/ct-ttg"),
        ("45/ĐSQ-TKO", "45 / dsq-tko"),
    ],
)
def test_doc_number_key_ignores_case_diacritics_and_spacing(a: str, b: str) -> None:
    assert doc_number_key(a) == doc_number_key(b)


def test_doc_number_key_value() -> None:
    assert doc_number_key("104/2018/NĐ-CP") == "104/2018/nd-cp"


def test_find_doc_numbers_in_order_and_normalized() -> None:
    text = (
        "Căn cứ Luật số 03/2020/QH14; Nghị định số 104/2018/NĐ-CP và Nghị quyết 292/NQ-CP ngày "
        "14/3/2025 của Chính phủ; theo đề nghị tại Công văn 45/ĐSQ-TKO và Chỉ thị 12/CT-TTg."
    )
    assert find_doc_numbers(text) == [
        "03/2020/QH14",
        "104/2018/NĐ-CP",
        "292/NQ-CP",
        "45/ĐSQ-TKO",
        "12/CT-TTg",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("nghi dinh 104/2018/nd-cp", ["104/2018/ND-CP"]),
        ("292/nq-cp về chuyển đổi số", ["292/NQ-CP"]),
        ("quyết định 1250/qđ-bng", ["1250/QĐ-BNG"]),
        ("luat 03/2020/qh14", ["03/2020/QH14"]),
        ("chi thi 12/ct-ttg", ["12/CT-TTg"]),
    ],
)
def test_find_doc_numbers_typed_in_lowercase(query: str, expected: list[str]) -> None:
    assert find_doc_numbers(query) == expected


@pytest.mark.parametrize(
    "text",
    ["học phí 5/năm", "tốc độ 5/km", "ngày 14/3/2025", "tỷ lệ 3/4", "bảo hộ công dân"],
)
def test_find_doc_numbers_ignores_ordinary_text(text: str) -> None:
    assert find_doc_numbers(text) == []


def test_find_doc_numbers_keeps_one_spelling_per_number() -> None:
    assert find_doc_numbers("292/NQ-CP, 292/nq-cp, 292 / NQ-CP") == ["292/NQ-CP"]


def test_doc_number_spans_point_into_the_text() -> None:
    text = "Thực hiện Nghị quyết 292/NQ-CP."
    [(start, end, number)] = doc_number_spans(text)
    assert text[start:end] == number == "292/NQ-CP"


HEADER = """BỘ NGOẠI GIAO | CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
 | Độc lập - Tự do - Hạnh phúc
Số: 1250/QĐ-BNG | Hà Nội, ngày 14 tháng 3 năm 2025

QUYẾT ĐỊNH
Về việc ban hành Quy chế bảo hộ công dân

Căn cứ Nghị định số 81/2022/NĐ-CP ngày 27/10/2022 của Chính phủ;
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER, "1250/QĐ-BNG"),
        ("CHÍNH PHỦ\nSố: 104/2018/NĐ-CP\nNGHỊ ĐỊNH", "104/2018/NĐ-CP"),
        ("THỦ TƯỚNG CHÍNH PHỦ\nSố 12/CT-TTg\nCHỈ THỊ", "12/CT-TTg"),
        ("ĐẠI SỨ QUÁN VIỆT NAM TẠI NHẬT BẢN\nĐiện số 45/ĐSQ-TKO\nKính gửi: Cục Lãnh sự", "45/ĐSQ-TKO"),
        ("MINISTRY OF FOREIGN AFFAIRS\nNo. 15/2024/TT-BNG\nCIRCULAR", "15/2024/TT-BNG"),
        ("**Số:** 292/NQ-CP", "292/NQ-CP"),
        ("BỘ NGOẠI GIAO    Số: 1250/QĐ-BNG    Hà Nội, ngày 14/3/2025", "1250/QĐ-BNG"),
    ],
)
def test_extract_doc_number_from_header(text: str, expected: str) -> None:
    assert extract_doc_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "QUYẾT ĐỊNH\nCăn cứ Nghị định số 15/2020/NĐ-CP của Chính phủ;\nQuyết định:",
        "Báo cáo tình hình thực hiện Nghị quyết 292/NQ-CP trong quý I.",
        "\n".join(["Nội dung báo cáo."] * 20 + ["Số: 99/BC-BNG"]),
        "",
    ],
)
def test_extract_doc_number_does_not_guess_from_body(text: str) -> None:
    assert extract_doc_number(text) is None


symbols = st.lists(
    st.sampled_from(["NQ", "NĐ", "CP", "TT", "BNG", "QĐ", "TTg", "ĐSQ", "QH14", "UBND"]), min_size=1
)


@given(st.integers(1, 99999), st.none() | st.integers(1990, 2030), symbols)
def test_generated_numbers_are_found_whole_in_any_case(
    number: int, year: int | None, parts: list[str]
) -> None:
    written = f"{number}/{year}/" if year else f"{number}/"
    written += "-".join(parts)
    text = f"Căn cứ văn bản {written.lower()}, {written}."
    assert [doc_number_key(n) for n in find_doc_numbers(text)] == [doc_number_key(written)]
