from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.text.legal import Section, split_text

DECREE = """CHÍNH PHỦ
Số: 15/2024/NĐ-CP

NGHỊ ĐỊNH
Quy định về công tác bảo hộ công dân Việt Nam ở nước ngoài

Căn cứ Luật Cơ quan đại diện nước Cộng hòa xã hội chủ nghĩa Việt Nam ở nước ngoài;
Theo đề nghị của Bộ trưởng Bộ Ngoại giao;
Chính phủ ban hành Nghị định quy định về công tác bảo hộ công dân.

Chương I
QUY ĐỊNH CHUNG

Điều 1. Phạm vi điều chỉnh
Nghị định này quy định về công tác bảo hộ công dân Việt Nam ở nước ngoài.

Điều 2. Đối tượng áp dụng
Nghị định này áp dụng đối với cơ quan đại diện, cơ quan, tổ chức và cá nhân có liên quan.

Chương II
TRÁCH NHIỆM BẢO HỘ CÔNG DÂN

Điều 5. Trách nhiệm của cơ quan đại diện
1. Tiếp nhận và xử lý kịp thời thông tin về công dân gặp nạn.
2. Phối hợp với chính quyền sở tại:
a) Thăm lãnh sự công dân bị bắt, tạm giữ;
b) Hỗ trợ thủ tục hồi hương.

Nơi nhận:
- Các Bộ, cơ quan ngang Bộ;
- Lưu: VT, LS.
"""


def words(n: int, word: str = "công") -> str:
    return " ".join([word] * n)


def check_slices(text: str, sections: list[Section]) -> None:
    assert all(text[s.start : s.end] == s.text for s in sections)


def headings(text: str, **kwargs: int) -> list[str]:
    return [s.heading for s in split_text(text, **kwargs)]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_whitespace_only_gives_no_sections(text: str) -> None:
    assert split_text(text) == []


def test_sections_are_exact_slices_of_the_input() -> None:
    check_slices(DECREE, split_text(DECREE, target_words=20, max_words=30, overlap_words=5))


def test_decree_headings_follow_structure() -> None:
    assert headings(DECREE, target_words=30, max_words=60, overlap_words=5) == [
        "",
        "",
        "Chương I. QUY ĐỊNH CHUNG > Điều 1. Phạm vi điều chỉnh",
        "Chương I. QUY ĐỊNH CHUNG > Điều 2. Đối tượng áp dụng",
        "Chương II. TRÁCH NHIỆM BẢO HỘ CÔNG DÂN > Điều 5. Trách nhiệm của cơ quan đại diện",
        "",
    ]


def test_preamble_is_its_own_chunk() -> None:
    first = split_text(DECREE)[0]
    assert first.text.startswith("CHÍNH PHỦ") and first.text.endswith("bảo hộ công dân.")


def test_chapter_heading_lines_travel_with_first_article() -> None:
    article = split_text(DECREE)[1]
    assert article.text.startswith("Chương I\nQUY ĐỊNH CHUNG\n\nĐiều 1.")


def test_small_articles_of_one_chapter_are_merged() -> None:
    sections = split_text(DECREE)
    assert (
        sections[1].heading
        == "Chương I. QUY ĐỊNH CHUNG > Điều 1. Phạm vi điều chỉnh | Điều 2. Đối tượng áp dụng"
    )


def test_articles_of_different_chapters_are_not_merged() -> None:
    assert not any("Điều 2" in s.text and "Điều 5" in s.text for s in split_text(DECREE))


def test_closing_matter_is_separate() -> None:
    assert split_text(DECREE)[-1].text.startswith("Nơi nhận:")


def test_article_within_max_words_is_never_cut() -> None:
    text = f"Điều 1. Giải thích từ ngữ\n1. {words(150)}\n2. {words(150)}\n"
    assert [s.text for s in split_text(text, target_words=200, max_words=350)] == [text.strip()]


def test_long_article_is_cut_at_clauses_and_keeps_its_heading() -> None:
    text = f"Chương II\nĐiều 7. Thủ tục\n1. {words(80)}\n2. {words(80)}\n3. {words(80)}\n"
    sections = split_text(text, target_words=100, max_words=120, overlap_words=10)
    assert [s.text.split("\n")[-1][:2] for s in sections] == ["1.", "2.", "3."]
    assert {s.heading for s in sections} == {"Chương II > Điều 7. Thủ tục"}


def test_long_clause_is_cut_at_points() -> None:
    text = f"Điều 3. Hồ sơ\n1. Hồ sơ gồm:\na) {words(70)};\nb) {words(70)};\nđ) {words(70)}.\n"
    sections = split_text(text, target_words=80, max_words=100, overlap_words=10)
    assert [s.text.split("\n")[-1][:2] for s in sections] == ["a)", "b)", "đ)"]


def test_article_without_boundaries_falls_back_to_word_windows() -> None:
    text = "Điều 9. Hiệu lực thi hành\n" + " ".join(f"từ{i}" for i in range(300))
    sections = split_text(text, target_words=100, max_words=150, overlap_words=20)
    assert [len(s.text.split()) for s in sections] == [100, 100, 100, 66]  # 6 heading words + 300
    assert sections[1].text.split()[0] == sections[0].text.split()[80]


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("**Điều 4. Nguyên tắc bảo hộ**", "Điều 4. Nguyên tắc bảo hộ"),
        ("### Điều 4. Nguyên tắc bảo hộ", "Điều 4. Nguyên tắc bảo hộ"),
        ("ĐIỀU 4. NGUYÊN TẮC BẢO HỘ", "ĐIỀU 4. NGUYÊN TẮC BẢO HỘ"),
        ("điều 4: nguyên tắc bảo hộ", "điều 4: nguyên tắc bảo hộ"),
    ],
)
def test_article_heading_variants(line: str, heading: str) -> None:
    assert headings(f"{line}\nCơ quan đại diện thực hiện bảo hộ kịp thời.") == [heading]


@pytest.mark.parametrize(
    ("container", "path"),
    [
        ("Phần thứ nhất", "Phần thứ nhất"),
        ("PHẦN I", "PHẦN I"),
        ("Chương 1. Những quy định chung", "Chương 1. Những quy định chung"),
        ("## CHƯƠNG III", "CHƯƠNG III"),
        ("Mục 2. Thủ tục lãnh sự", "Mục 2. Thủ tục lãnh sự"),
    ],
)
def test_container_heading_variants(container: str, path: str) -> None:
    text = f"{container}\nĐiều 10. Cấp hộ chiếu\nCơ quan đại diện cấp hộ chiếu cho công dân."
    assert headings(text) == [f"{path} > Điều 10. Cấp hộ chiếu"]


def test_nested_structure_path() -> None:
    text = "Phần thứ hai\nChương IV\nMục 1\nĐiều 20. Thị thực\nNội dung về thị thực."
    assert headings(text) == ["Phần thứ hai > Chương IV > Mục 1 > Điều 20. Thị thực"]


def test_new_chapter_resets_section() -> None:
    text = "Chương I\nMục 1\nĐiều 1. A\nNội dung.\nChương II\nĐiều 2. B\nNội dung."
    assert headings(text)[-1] == "Chương II > Điều 2. B"


@pytest.mark.parametrize(
    "line",
    ["Chương trình hành động của Bộ", "Mục tiêu của đề án", "Phần lớn công dân", "Điều kiện cấp thị thực"],
)
def test_words_starting_like_headings_are_prose(line: str) -> None:
    assert headings(f"{line}\n\nNội dung chi tiết.") == [""]


def test_prose_paragraphs_are_packed_to_target() -> None:
    text = "\n\n".join(words(40, f"đoạn{i}") for i in range(5))
    sections = split_text(text, target_words=100, max_words=150, overlap_words=10)
    assert [len(s.text.split()) for s in sections] == [80, 80, 40]


def test_prose_markdown_headings_start_sections() -> None:
    text = "# Báo cáo\nMở đầu.\n\n## Bối cảnh\nTình hình khu vực.\n\n## Kiến nghị\nĐề xuất biện pháp."
    assert headings(text) == ["Báo cáo", "Báo cáo > Bối cảnh", "Báo cáo > Kiến nghị"]


def test_prose_heading_line_is_part_of_its_section() -> None:
    text = "Lời nói đầu.\n\n## Bối cảnh\nTình hình khu vực."
    assert split_text(text)[-1].text == "## Bối cảnh\nTình hình khu vực."


def test_long_paragraph_becomes_overlapping_windows() -> None:
    text = " ".join(f"từ{i}" for i in range(500))
    sections = split_text(text, target_words=200, max_words=250, overlap_words=50)
    assert [s.text.split()[0] for s in sections] == ["từ0", "từ150", "từ300"]


def test_heading_stays_with_long_paragraph() -> None:
    text = "## Phụ lục\n" + " ".join(f"từ{i}" for i in range(300))
    assert split_text(text, target_words=100, max_words=150, overlap_words=0)[0].text.startswith(
        "## Phụ lục\ntừ0"
    )


@pytest.mark.parametrize(
    ("target", "maximum", "overlap"),
    [(0, 10, 0), (100, 50, 10), (100, 200, 100), (100, 200, -1)],
)
def test_rejects_inconsistent_sizes(target: int, maximum: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_text("Nội dung.", target_words=target, max_words=maximum, overlap_words=overlap)


# --- properties ----------------------------------------------------------------------------------

VOCAB = [
    "bảo",
    "hộ",
    "công",
    "dân",
    "cơ",
    "quan",
    "đại",
    "diện",
    "lãnh",
    "sự",
    "Việt",
    "Nam",
    "2025",
    "hộ_chiếu",
]
SIZES = {"target_words": 30, "max_words": 45, "overlap_words": 5}

sentences = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=25).map(" ".join)
paragraphs = st.lists(sentences, min_size=1, max_size=4).map("\n".join)
prose = st.lists(st.one_of(paragraphs, sentences.map(lambda s: "## " + s)), min_size=0, max_size=8).map(
    "\n\n".join
)


@st.composite
def legal_texts(draw: st.DrawFn) -> str:
    lines = [draw(paragraphs)]
    article = 0
    for chapter in range(draw(st.integers(1, 3))):
        lines.append(f"Chương {chapter + 1}")
        for _ in range(draw(st.integers(1, 3))):
            article += 1
            lines.append(f"Điều {article}. {draw(sentences)}")
            for clause in range(draw(st.integers(0, 3))):
                lines.append(f"{clause + 1}. {draw(sentences)}")
                lines += [f"{p}) {draw(sentences)}" for p in "abđ"[: draw(st.integers(0, 3))]]
    return "\n".join(lines)


def assert_covers_every_word(text: str, sections: list[Section]) -> None:
    covered = [False] * len(text)
    for section in sections:
        covered[section.start : section.end] = [True] * (section.end - section.start)
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    chunk_words = {w for s in sections for w in s.text.split()}
    assert set(text.split()) <= chunk_words


def assert_well_formed(text: str, sections: list[Section]) -> None:
    check_slices(text, sections)
    assert all(s.text.strip() for s in sections)
    assert all(len(s.text.split()) <= SIZES["max_words"] for s in sections)


@settings(max_examples=60, deadline=None)
@given(prose)
def test_prose_chunks_cover_every_word(text: str) -> None:
    sections = split_text(text, **SIZES)
    assert_covers_every_word(text, sections)
    assert_well_formed(text, sections)


@settings(max_examples=60, deadline=None)
@given(legal_texts())
def test_legal_chunks_cover_every_word(text: str) -> None:
    sections = split_text(text, **SIZES)
    assert_covers_every_word(text, sections)
    assert_well_formed(text, sections)


@settings(max_examples=40, deadline=None)
@given(legal_texts())
def test_every_article_chunk_names_its_article(text: str) -> None:
    sections = split_text(text, **SIZES)
    assert all("Điều" in s.heading for s in sections if "Điều" in s.text)
