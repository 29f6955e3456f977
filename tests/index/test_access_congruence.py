"""Randomized access control on every backend: what a store returns == what `access.can_read` allows.

Random documents carry every access-field edge case (no classification, an unknown one, a missing,
empty, string or mapping allow list, malformed tokens); random principals include a bogus clearance
and malformed units. Every read shape is checked: scroll, count, dense, sparse, fused and recommend.
"""

from __future__ import annotations

import random

import pytest
from qdrant_client import models
from store_scenario import classification, random_corpus, random_principal, sparse_vector, unit_vector

from kms.domain import Principal
from kms.index.sparse import LEX
from kms.index.store import ChunkStore, ScoredChunk, chunk_point_id
from kms.security import access

DIM = 12
SEEDS = range(4)


def _docs(points: list[ScoredChunk] | list[models.Record]) -> set[str]:
    return {str((p.payload or {})["doc_id"]) for p in points}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_read_shows_exactly_what_can_read_allows(seed: int, store: ChunkStore) -> None:
    rng = random.Random(seed)
    levels = classification()
    corpus = random_corpus(seed, documents=80, dim=DIM)
    store.ensure_active("test-model", DIM)
    store.upsert(corpus.chunks)
    everything = len(corpus.chunks)
    principals = [random_principal(rng) for _ in range(20)] + [Principal.operator()]
    for principal in principals:
        expected = {d["doc_id"] for d in corpus.documents if access.can_read(principal, d, levels)}
        expected_chunks = sum(1 for c in corpus.chunks if c.doc_id in expected)
        flt = access.qdrant_filter(principal, levels)
        assert _docs(list(store.scroll(flt))) == expected, (seed, principal)
        assert store.count(flt) == expected_chunks, (seed, principal)
        dense = store.query(query=unit_vector(rng, DIM), using="dense", query_filter=flt, limit=everything)
        assert _docs(dense) == expected, (seed, principal)
        sparse = sparse_vector(rng, 30)
        query = models.SparseVector(indices=sparse.indices, values=[1.0] * len(sparse.indices))
        hits = store.query(query=query, using=LEX, query_filter=flt, limit=everything)
        assert _docs(hits) <= expected, (seed, principal)
        fused = store.fused_query(
            prefetch=[
                models.Prefetch(query=unit_vector(rng, DIM), using="dense", filter=flt, limit=everything),
                models.Prefetch(query=query, using=LEX, filter=flt, limit=everything),
            ],
            weights=[1.0, 0.5],
            k_rrf=60,
            query_filter=flt,
            limit=everything,
        )
        assert _docs(fused) == expected, (seed, principal)
        if expected:
            example = next(c for c in corpus.chunks if c.doc_id in expected)
            similar = store.recommend(
                positive=[chunk_point_id(example.doc_id, 1, example.chunk_no)],
                query_filter=flt,
                limit=everything,
            )
            assert _docs(similar) <= expected and len(similar) == expected_chunks - 1, (seed, principal)


def test_a_principal_without_clearance_sees_nothing(store: ChunkStore) -> None:
    corpus = random_corpus(99, documents=30, dim=DIM)
    store.ensure_active("test-model", DIM)
    store.upsert(corpus.chunks)
    nobody = Principal(user_id="u1", clearance="bogus", unit="hq", groups=("g7",))
    flt = access.qdrant_filter(nobody, classification())
    assert store.count(flt) == 0
    assert list(store.scroll(flt)) == []
    assert (
        store.query(query=unit_vector(random.Random(1), DIM), using="dense", query_filter=flt, limit=50) == []
    )
