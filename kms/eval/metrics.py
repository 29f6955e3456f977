"""Retrieval metrics with trec_eval's conventions (the same as `shared/eval/score.py`).

- ranking: score descending, ties broken by document id descending (trec_eval's order);
- nDCG@k: gain = the qrels grade, discount 1/log2(rank + 1), ideal DCG from the qrels' grades;
- a document is relevant when its grade is > 0;
- MRR@10: 1/rank of the first relevant document in the top 10, else 0;
- Recall@k: relevant documents in the top k / all relevant documents.

Averages run over every query in the qrels with at least one relevant document; a query missing
from the run scores 0 (trec_eval `-c`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["METRICS", "Qrels", "Run", "evaluate", "mrr_at", "ndcg_at", "per_query", "rank", "recall_at"]

Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> grade
Run = Mapping[str, Mapping[str, float]]  # query id -> document id -> score
METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def rank(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first: score descending, then id descending."""
    return [
        doc for doc, _ in sorted(scores.items(), key=lambda item: (float(item[1]), item[0]), reverse=True)
    ]


def ndcg_at(ranked: list[str], judged: Mapping[str, int], k: int) -> float:
    dcg = sum(
        judged.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if judged.get(doc, 0) > 0
    )
    ideal = sorted((grade for grade in judged.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at(ranked: list[str], judged: Mapping[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(ranked: list[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def per_query(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """Each judged query's metrics (queries without a relevant document are left out)."""
    scores: dict[str, dict[str, float]] = {}
    for query_id, judged in qrels.items():
        if not any(grade > 0 for grade in judged.values()):
            continue
        ranked = rank(run.get(query_id, {}))
        scores[query_id] = {
            "ndcg@10": ndcg_at(ranked, judged, 10),
            "mrr@10": mrr_at(ranked, judged, 10),
            "recall@10": recall_at(ranked, judged, 10),
            "recall@100": recall_at(ranked, judged, 100),
        }
    return scores


def evaluate(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean of each metric over the judged queries, plus `num_queries`."""
    scores = per_query(qrels, run)
    count = len(scores)
    means: dict[str, float] = {
        metric: (sum(s[metric] for s in scores.values()) / count if count else 0.0) for metric in METRICS
    }
    means["num_queries"] = count
    return means
