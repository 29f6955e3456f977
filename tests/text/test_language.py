from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.text.language import detect_language
from kms.text.normalize import fold

VIETNAMESE_PARAGRAPH = (
    "Thực hiện Nghị quyết số 292/NQ-CP của Chính phủ, Bộ Ngoại giao đã chỉ đạo các cơ quan đại diện "
    "Việt Nam ở nước ngoài tăng cường công tác bảo hộ công dân, kịp thời hỗ trợ người lao động gặp "
    "khó khăn và phối hợp chặt chẽ với chính quyền sở tại trong việc giải quyết các vụ việc phát sinh."
)
ENGLISH_PARAGRAPH = (
    "The Ministry of Foreign Affairs of Viet Nam instructed its diplomatic missions abroad to step up "
    "consular protection for Vietnamese citizens, to support workers in difficulty and to coordinate "
    "closely with host authorities in handling incidents, in line with Resolution 292/NQ-CP."
)


@pytest.mark.parametrize(
    "text",
    [
        "bao ho cong dan",
        "nghị quyết 292",
        "chuyen doi so",
        "thu tuc cap ho chieu",
        "quan he viet nam nhat ban",
        "visa Nhật Bản",
        "hội nghị ASEAN",
        "Đại sứ quán",
        VIETNAMESE_PARAGRAPH,
        fold(VIETNAMESE_PARAGRAPH),
    ],
)
def test_detects_vietnamese(text: str) -> None:
    assert detect_language(text) == "vi"


@pytest.mark.parametrize(
    "text",
    [
        "consular protection in Japan",
        "passport renewal",
        "embassy in Ha Noi",
        "ASEAN summit",
        "Mr. Nguyễn Văn An met the Japanese ambassador in Tokyo on Monday",
        ENGLISH_PARAGRAPH,
    ],
)
def test_detects_english(text: str) -> None:
    assert detect_language(text) == "en"


@pytest.mark.parametrize("text", ["", "   ", "292/NQ-CP", "2025"])
def test_text_without_words_defaults_to_vietnamese(text: str) -> None:
    assert detect_language(text) == "vi"


@given(st.text(max_size=200))
def test_always_returns_a_supported_language(text: str) -> None:
    assert detect_language(text) in ("vi", "en")
