"""The compiled snippet module (kms.native): built by `make install`, used only for its own source,
and giving exactly what the Python source gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms import native
from kms.text import snippets
from kms.text.snippets import make_snippet, python_make_snippet

compiled = pytest.mark.skipif(
    make_snippet is python_make_snippet, reason="no compiled copy installed (`kms build-native`)"
)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here: the Python source runs")
def test_the_installed_search_runs_the_compiled_snippets() -> None:
    # `make install` builds it wherever a C compiler is; a failed build would only show as slower
    # searches, so the test suite says it instead.
    assert make_snippet is not python_make_snippet
    digest_name = native.copy_name("kms.text.snippets", Path(snippets.__file__).read_bytes())
    assert type(make_snippet).__name__ == "builtin_function_or_method"
    assert (
        native.compiled_copy("kms.text.snippets", snippets.__file__).__name__ == f"kms_native.{digest_name}"
    )  # type: ignore[union-attr]


def test_an_edited_source_finds_no_compiled_copy(tmp_path: Path) -> None:
    edited = tmp_path / "snippets.py"
    edited.write_bytes(Path(snippets.__file__).read_bytes() + b"\n# edited\n")
    assert native.compiled_copy("kms.text.snippets", str(edited)) is None


def test_kms_native_0_turns_the_copies_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS_NATIVE", "0")
    assert native.compiled_copy("kms.text.snippets", snippets.__file__) is None


WORDS = [
    "Bộ",
    "Ngoại",
    "giao",
    "bảo",
    "hộ",
    "công",
    "dân",
    "lãnh",
    "sự",
    "trọng",
    "tài",
    "thương",
    "mại",
    "của",
    "và",
    "trong",
    "292/NQ-CP",
    "104/2018/NĐ-CP",
    "2025",
    "Tesla",
    "x_y",
    "ﬁ",
    "İ",
    "“hộ",
    "chiếu”",
    "(sự)",
    "hộ-chiếu",
    "…",
]
QUERY_WORDS = [*WORDS, "bao", "ho", "cong", "dan", "trong tai", "thuong mai", "292/nq-cp", "nđ-cp", "cua"]
separators = st.sampled_from([" ", " ", " ", "  ", ", ", ". ", "\n", "-", "/"])
texts = st.lists(st.tuples(st.sampled_from(WORDS), separators), max_size=150).map(
    lambda pieces: "".join(word + sep for word, sep in pieces)
)
queries = st.lists(st.sampled_from(QUERY_WORDS), max_size=8).map(" ".join)


@compiled
@settings(max_examples=400, deadline=None)
@given(texts, queries, st.integers(1, 400))
def test_compiled_and_python_snippets_agree(text: str, query: str, max_chars: int) -> None:
    assert make_snippet(text, query, max_chars=max_chars) == python_make_snippet(
        text, query, max_chars=max_chars
    )


@compiled
def test_compiled_snippets_refuse_what_the_python_refuses() -> None:
    for call in (make_snippet, python_make_snippet):
        with pytest.raises(ValueError):
            call("lãnh sự", "lãnh", max_chars=0)
