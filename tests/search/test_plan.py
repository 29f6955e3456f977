"""Query analysis: which retrievers a query leans on (pure functions, no index)."""

from __future__ import annotations

import pytest

from kms.search import plan_query, quoted_phrases


def test_english_query_uses_dense_only_balanced_across_languages() -> None:
    plan = plan_query("rules for handling classified documents at embassies", "hybrid")
    assert (plan.kind, plan.dense, plan.lex, plan.folded) == ("en", 1.0, 0.0, 0.0)
    assert plan.balance_languages and not plan_query("rules for embassies", "dense").balance_languages


def test_query_with_vietnamese_letters_is_not_planned_as_english() -> None:
    assert plan_query("Ai đã giành Super Bowl XLIX?", "hybrid").kind == "vi"


def test_vietnamese_without_diacritics_leans_on_the_folded_index() -> None:
    plan = plan_query("nghi quyet chuyen doi so nganh ngoai giao", "hybrid")
    assert plan.kind == "vi_nodiacritics"
    assert plan.folded > plan.dense > 0 and plan.lex == 0


def test_vietnamese_with_diacritics_uses_dense_and_the_exact_index() -> None:
    plan = plan_query("nghị quyết chuyển đổi số ngành ngoại giao", "hybrid")
    assert plan.kind == "vi" and plan.dense > 0 and plan.lex > 0


@pytest.mark.parametrize("text", ["Nghị định 104/2018/NĐ-CP", '"trọng tài thương mại" là gì'])
def test_document_numbers_and_quoted_phrases_lean_on_the_exact_index(text: str) -> None:
    plan = plan_query(text, "hybrid")
    assert plan.kind == "exact" and plan.lex >= plan.dense


def test_document_number_keys_are_found_in_every_mode() -> None:
    for mode in ("hybrid", "dense", "sparse"):
        assert plan_query("104/2018/nd-cp", mode).doc_number_keys == ("104/2018/nd-cp",)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("dense", (1.0, 0.0, 0.0)), ("sparse", (0.0, 1.0, 0.0))],
)
def test_single_retriever_modes(mode: str, expected: tuple[float, float, float]) -> None:
    plan = plan_query("bảo hộ công dân", mode)
    assert (plan.dense, plan.lex, plan.folded) == expected


def test_sparse_mode_without_diacritics_uses_the_folded_index() -> None:
    plan = plan_query("bao ho cong dan", "sparse")
    assert (plan.dense, plan.lex, plan.folded) == (0.0, 0.0, 1.0)


def test_quoted_phrases_are_folded_lowercase_keys() -> None:
    assert quoted_phrases('về "Trọng Tài  thương mại" và “bảo hộ”') == ("trong tai thuong mai", "bao ho")
    assert quoted_phrases("không có ngoặc") == ()
    assert quoted_phrases('""') == ()
