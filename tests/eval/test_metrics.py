"""The metric code against hand-computed cases (trec_eval conventions, as shared/eval/score.py)."""

from __future__ import annotations

import math

import pytest

from kms.eval.metrics import evaluate, mrr_at, ndcg_at, rank, recall_at

LOG2_3 = math.log2(3)


def test_rank_orders_by_score_then_id_descending() -> None:
    assert rank({"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5}) == ["b", "c", "a", "d"]


def test_ndcg_single_relevant_at_rank_two() -> None:
    assert ndcg_at(["x", "rel"], {"rel": 1}, 10) == pytest.approx(1 / LOG2_3)


def test_ndcg_with_grades_and_two_relevant() -> None:
    # ranking: r1 (grade 1) at rank 1, r2 (grade 2) at rank 3
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(["r1", "n", "r2"], {"r1": 1, "r2": 2}, 10) == pytest.approx(dcg / idcg)


def test_ndcg_ignores_grade_zero_and_ranks_past_k() -> None:
    judged = {"rel": 1, "judged-not-relevant": 0}
    assert ndcg_at(["judged-not-relevant", *"abcdefghi", "rel"], judged, 10) == 0.0
    assert ndcg_at(["rel"], judged, 10) == 1.0


def test_mrr_is_reciprocal_rank_of_first_relevant_within_ten() -> None:
    assert mrr_at(["a", "b", "r", "r2"], {"r": 1, "r2": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at([*"abcdefghij", "r"], {"r": 1}, 10) == 0.0


def test_recall_counts_relevant_in_top_k() -> None:
    judged = {"r1": 1, "r2": 1, "r3": 1, "n": 0}
    assert recall_at(["r1", "n", "r2"], judged, 10) == pytest.approx(2 / 3)
    assert recall_at(["r1", "n", "r2"], judged, 1) == pytest.approx(1 / 3)
    assert recall_at(["x"], {"n": 0}, 10) == 0.0


def test_evaluate_averages_over_judged_queries_and_missing_queries_score_zero() -> None:
    qrels = {
        "q1": {"d1": 1},  # found at rank 1
        "q2": {"d2": 1},  # found at rank 2 (tie on score: id order decides, "dz" > "d2")
        "q3": {"d3": 1},  # not in the run: scores 0
        "q4": {"d4": 0},  # no relevant document: not averaged
    }
    run = {"q1": {"d1": 3.0, "x": 1.0}, "q2": {"d2": 1.0, "dz": 1.0}, "q4": {"d4": 1.0}}
    result = evaluate(qrels, run)
    assert result["num_queries"] == 3
    assert result["ndcg@10"] == pytest.approx((1 + 1 / LOG2_3 + 0) / 3)
    assert result["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["recall@10"] == pytest.approx(2 / 3)
    assert result["recall@100"] == pytest.approx(2 / 3)


def test_recall_at_100_sees_past_ten() -> None:
    ranked = {f"n{i:03d}": 200.0 - i for i in range(50)} | {"rel": 1.0}
    result = evaluate({"q": {"rel": 1}}, {"q": ranked})
    assert (result["recall@10"], result["recall@100"], result["mrr@10"]) == (0.0, 1.0, 0.0)


def test_empty_qrels() -> None:
    assert evaluate({}, {}) == {
        "ndcg@10": 0.0,
        "mrr@10": 0.0,
        "recall@10": 0.0,
        "recall@100": 0.0,
        "num_queries": 0,
    }
