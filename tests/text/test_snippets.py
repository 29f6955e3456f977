from __future__ import annotations

import re
import unicodedata
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.text import snippets
from kms.text.normalize import nfc, search_key
from kms.text.snippets import make_snippet

FILLER = "Các cơ quan đại diện ở nước ngoài tăng cường công tác thông tin đối ngoại. " * 6
TEXT = (
    "Thực hiện Nghị quyết số 292/NQ-CP của Chính phủ, Bộ Ngoại giao tổ chức hội nghị tổng kết. "
    + FILLER
    + "Bộ Ngoại giao đẩy mạnh chuyển đổi số trong công tác lãnh sự, triển khai hộ chiếu điện tử. "
    + FILLER
)


def highlighted(text: str, query: str, max_chars: int = 160) -> list[str]:
    snippet, ranges = make_snippet(text, query, max_chars=max_chars)
    return [snippet[start:end] for start, end in ranges]


def test_query_without_diacritics_highlights_accented_phrase() -> None:
    text = "Bộ Ngoại giao đẩy mạnh chuyển đổi số trong công tác lãnh sự."
    assert highlighted(text, "chuyen doi so") == ["chuyển đổi số"]


def test_window_is_where_the_query_terms_are() -> None:
    snippet, _ = make_snippet(TEXT, "hộ chiếu điện tử", max_chars=160)
    assert "hộ chiếu điện tử" in snippet and snippet.startswith("…") and snippet.endswith("…")


def test_window_prefers_more_distinct_terms() -> None:
    text = "lãnh sự " + FILLER + "lãnh sự và hộ chiếu điện tử."
    assert highlighted(text, "lãnh sự hộ chiếu", max_chars=80) == ["lãnh sự", "hộ chiếu"]


def test_matching_ignores_case() -> None:
    assert highlighted("Bộ Ngoại giao tổ chức hội nghị.", "BỘ NGOẠI GIAO") == ["Bộ Ngoại giao"]


def test_accented_query_word_matches_only_itself() -> None:
    assert highlighted("Cơ quan đại diện cấp thẻ điện tử.", "điện") == ["điện"]


def test_doc_number_in_query_is_matched_whole() -> None:
    assert highlighted(TEXT, "292/nq-cp") == ["292/NQ-CP"]


def test_number_alone_matches_inside_doc_number() -> None:
    text = "Thực hiện Nghị quyết số 292/NQ-CP của Chính phủ."
    assert highlighted(text, "nghị quyết 292") == ["Nghị quyết", "292"]


def test_adjacent_terms_merge_into_one_range() -> None:
    assert highlighted("Tăng cường bảo hộ công dân ở nước ngoài.", "bảo hộ công dân") == ["bảo hộ công dân"]


def test_terms_separated_by_punctuation_stay_apart() -> None:
    assert highlighted("Phối hợp lãnh sự, hộ chiếu.", "lãnh sự hộ chiếu") == ["lãnh sự", "hộ chiếu"]


@pytest.mark.parametrize("query", ["của và các", "the of and", "a b c", "cua va cac", ""])
def test_stop_words_and_single_letters_are_not_matched(query: str) -> None:
    assert highlighted(TEXT, query) == []


def test_stop_word_typed_without_diacritics_does_not_hide_other_words() -> None:
    assert highlighted("Mở cửa biên giới.", "cửa") == ["cửa"]


def test_stop_words_inside_a_matched_phrase_are_highlighted_with_it() -> None:
    text = "Trọng tài thương mại là phương thức giải quyết tranh chấp."
    assert highlighted(text, "trong tai thuong mai") == ["Trọng tài thương mại"]
    assert highlighted("Quyền của công dân ở nước ngoài.", "quyền của công dân") == ["Quyền của công dân"]


def test_stop_word_next_to_nothing_matched_stays_plain() -> None:
    assert highlighted("Ở trong nước và tại nước ngoài.", "trong tai thuong mai") == []
    assert highlighted("Công tác tại cơ quan đại diện.", "tại cơ quan") == ["tại cơ quan"]


def test_no_match_returns_start_of_text() -> None:
    snippet, ranges = make_snippet(TEXT, "Tokyo", max_chars=100)
    assert snippet.startswith("Thực hiện Nghị quyết") and snippet.endswith("…") and ranges == []


def test_short_text_is_returned_whole() -> None:
    assert make_snippet("Hội nghị   tổng kết\ncông tác lãnh sự.", "lãnh sự") == (
        "Hội nghị tổng kết công tác lãnh sự.",
        [(27, 34)],
    )


def test_snippet_cuts_at_word_boundaries() -> None:
    snippet, _ = make_snippet(TEXT, "chuyển đổi số", max_chars=120)
    inner = snippet.strip("…")
    assert TEXT.find(inner) != -1
    start = TEXT.find(inner)
    assert TEXT[start - 1] == " " and TEXT[start + len(inner)] == " "


def test_decomposed_input_gives_nfc_snippet() -> None:
    snippet, _ = make_snippet(unicodedata.normalize("NFD", "Bảo hộ công dân"), "bao ho")
    assert snippet == "Bảo hộ công dân"


def test_empty_text() -> None:
    assert make_snippet("", "lãnh sự") == ("", [])


def test_rejects_non_positive_max_chars() -> None:
    with pytest.raises(ValueError):
        make_snippet(TEXT, "lãnh sự", max_chars=0)


VOCAB = [
    "bảo",
    "hộ",
    "công",
    "dân",
    "Cơ",
    "quan",
    "đại",
    "diện",
    "lãnh",
    "sự",
    "292/NQ-CP",
    "của",
    "và",
    "2025",
]
texts = st.lists(st.sampled_from([*VOCAB, ",", "."]), max_size=120).map(" ".join)
queries = st.lists(st.sampled_from([*VOCAB, "bao", "ho", "cong", "dan", "292/nq-cp"]), max_size=5).map(
    " ".join
)


@settings(max_examples=100, deadline=None)
@given(texts, queries, st.integers(20, 200))
def test_snippet_is_nfc_and_bounded(text: str, query: str, max_chars: int) -> None:
    snippet, _ = make_snippet(text, query, max_chars=max_chars)
    assert nfc(snippet) == snippet
    assert len(snippet) <= max_chars + 2


@settings(max_examples=100, deadline=None)
@given(texts, queries, st.integers(20, 200))
def test_ranges_are_ordered_disjoint_and_inside_snippet(text: str, query: str, max_chars: int) -> None:
    snippet, ranges = make_snippet(text, query, max_chars=max_chars)
    assert all(0 <= start < end <= len(snippet) for start, end in ranges)
    assert all(prev[1] < cur[0] for prev, cur in pairwise(ranges))
    assert all(snippet[start:end].strip() == snippet[start:end] for start, end in ranges)


def test_highlighted_word_may_sit_between_punctuation() -> None:
    text = "Về thủ tục (lãnh sự), “hộ chiếu”; cấp lại hộ-chiếu…"
    assert highlighted(text, "lãnh sự hộ chiếu") == ["lãnh sự", "hộ chiếu", "hộ", "chiếu"]


PIECES = [
    *VOCAB,
    "bao",
    "Lãnh",
    "sự,",
    "(sự)",
    "“dân”",
    "hộ-chiếu",
    "x_y",
    "ﬁ",
    "İ",
    "²",
    "€",
    "…",
    "_",
    "-",
    "",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(PIECES), st.sampled_from([" ", " ", ",", "-", "/", "."])), max_size=40
    ),
    st.lists(st.sampled_from([*VOCAB, "bao", "ho", "cong", "dan", "su", "chiếu"]), max_size=6),
)
def test_key_occurrences_are_what_the_pattern_finds(pieces: list[tuple[str, str]], query: list[str]) -> None:
    # The per-key lookup is a faster way to the whole-word matches of the query's keys: what this
    # pattern (longest key first, no word character on either side) finds.
    key_text = search_key(" ".join(piece + sep for piece, sep in pieces))
    words, stop_words, _ = snippets._query_terms(" ".join(query))
    rules = snippets._rules(words, stop_words)
    alternatives = "|".join(re.escape(key) for key in sorted(rules, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])")
    expected = [(m.start(), m.end(), m.group()) for m in pattern.finditer(key_text)] if rules else []
    assert snippets._key_occurrences(key_text, rules) == expected
