"""What only the edge backend has: its process lock, WAL durability, and optimization off the request path."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from qdrant_client import models
from store_scenario import default_layout, random_corpus, unit_vector

from kms.config import Settings
from kms.errors import ConfigError, InvalidInput, StoreBusy
from kms.index.edge_store import EdgeChunkStore
from kms.index.store import open_store

DIM = 32


def test_one_process_at_a_time(tmp_path: Path) -> None:
    store = EdgeChunkStore(tmp_path, default_layout())
    try:
        with pytest.raises(StoreBusy, match="open in another process"):
            EdgeChunkStore(tmp_path, default_layout())
    finally:
        store.close()
    EdgeChunkStore(tmp_path, default_layout()).close()  # released on close


def test_a_killed_owner_neither_blocks_a_restart_nor_loses_acknowledged_writes(tmp_path: Path) -> None:
    child = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from kms.config import Settings, load_collection_layout
        from kms.index.base import ChunkPoint
        from kms.index.edge_store import EdgeChunkStore
        store = EdgeChunkStore(Path({str(tmp_path)!r}), load_collection_layout(Settings().index_config_dir))
        store.ensure_active("test-model", {DIM})
        store.upsert([
            ChunkPoint(doc_id=f"d{{i}}", version=1, chunk_no=0, dense=[1.0] + [0.0] * {DIM - 1}, sparse={{}},
                       payload={{"doc_id": f"d{{i}}", "allow": ["all-staff"], "classification_rank": 0}})
            for i in range(50)
        ])
        print("written", flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None and process.stdout.readline().strip() == "written"
            os.kill(process.pid, signal.SIGKILL)  # no flush, no close
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    store = EdgeChunkStore(tmp_path, default_layout())
    try:
        info = store.info()
        assert info is not None and info.points == 50
    finally:
        store.close()


def test_search_answers_while_the_index_is_optimized(tmp_path: Path) -> None:
    """optimize() holds the GIL for seconds at scale: it runs in a child process on a copy."""
    layout = replace(default_layout(), indexing_threshold_kb=64)
    store = EdgeChunkStore(tmp_path, layout, auto_optimize=0)
    try:
        store.ensure_active("test-model", DIM)
        corpus = random_corpus(1, documents=600, dim=DIM)
        store.upsert(corpus.chunks)
        before = store.shard_info()["indexed_vectors"]  # sparse vectors only: no HNSW graph yet
        rng = random.Random(2)
        store.optimize(wait=False)
        answered, slowest = 0, 0.0
        late = random_corpus(2, documents=3, dim=DIM)
        late_chunks = [
            replace(c, doc_id=f"late-{c.doc_id}", payload={**c.payload, "doc_id": f"late-{c.doc_id}"})
            for c in late.chunks
        ]
        wrote_during = False
        while store.optimizing():
            started = time.perf_counter()
            hits = store.query(query=unit_vector(rng, DIM), using="dense", query_filter=None, limit=10)
            slowest = max(slowest, time.perf_counter() - started)
            assert len(hits) == 10
            answered += 1
            if not wrote_during:
                store.upsert(late_chunks)  # journaled, replayed onto the optimized copy
                wrote_during = True
            time.sleep(0.005)
        assert store.optimize(wait=True) is not None  # a finished job reports; a new one is harmless
        assert answered >= 3, answered
        assert slowest < 2.0, slowest  # a GIL-holding optimize would stall every search until done
        info = store.shard_info()
        assert info["indexed_vectors"] >= before + len(corpus.chunks)  # the dense HNSW graph was built
        assert store.count(None) == len(corpus.chunks) + len(
            late_chunks
        )  # nothing written meanwhile was lost
        late_filter = models.Filter(
            must=[
                models.FieldCondition(
                    key="doc_id", match=models.MatchAny(any=[c.doc_id for c in late_chunks])
                )
            ]
        )
        assert store.count(late_filter) == len(late_chunks)
        generations = sorted(p.name for p in (tmp_path / "collections" / "chunks_1").glob("g*"))
        assert len(generations) == 1 and generations != ["g1"]  # the old generation was removed
    finally:
        store.close()


@pytest.mark.parametrize("on_disk", [True, False])
def test_collection_yaml_on_disk_places_vectors_and_sparse_indexes_in_memory_maps(
    tmp_path: Path, on_disk: bool
) -> None:
    """`on_disk` in collection.yaml (the shipped default: 1M chunks in < 4 GiB RSS) reaches the engine:
    optimized segments keep the float32 originals and the sparse inverted indexes memory-mapped
    instead of loading them into RAM. Read from the segments' own description of themselves."""
    shipped = default_layout()
    assert shipped.dense_on_disk and shipped.sparse_on_disk == frozenset(shipped.sparse)
    layout = replace(
        shipped,
        indexing_threshold_kb=1,
        dense_on_disk=on_disk,
        sparse_on_disk=shipped.sparse_on_disk if on_disk else frozenset(),
    )
    store = EdgeChunkStore(tmp_path, layout, auto_optimize=0)
    try:
        store.ensure_active("test-model", DIM)
        store.upsert(random_corpus(3, documents=60, dim=DIM).chunks)
        store.optimize(wait=True)
        assert store.count(None) > 0
    finally:
        store.close()
    segments = [json.loads(p.read_text()) for p in tmp_path.glob("collections/*/g*/segments/*/segment.json")]
    optimized = [
        s["config"] for s in segments if s["config"]["vector_data"]["dense"]["index"]["type"] == "hnsw"
    ]
    assert optimized, segments
    for config in optimized:
        dense = config["vector_data"]["dense"]["storage_type"]
        sparse = {v["index"]["index_type"] for v in config["sparse_vector_data"].values()}
        assert (dense, sparse) == (("Mmap", {"Mmap"}) if on_disk else ("InRamMmap", {"ImmutableRam"}))


def test_leftovers_of_an_interrupted_optimization_are_removed(tmp_path: Path) -> None:
    store = EdgeChunkStore(tmp_path, default_layout())
    store.ensure_active("test-model", DIM)
    store.close()
    leftover = tmp_path / "collections" / "chunks_1" / "g2"
    leftover.mkdir()
    (leftover / "partial").write_text("x")
    store = EdgeChunkStore(tmp_path, default_layout())
    try:
        assert store.info() is not None and not leftover.exists()
    finally:
        store.close()


def test_a_condition_it_cannot_express_is_an_error_never_dropped(tmp_path: Path) -> None:
    store = EdgeChunkStore(tmp_path, default_layout())
    try:
        store.ensure_active("test-model", DIM)
        geo = models.FieldCondition(
            key="where",
            geo_radius=models.GeoRadius(center=models.GeoPoint(lon=105.8, lat=21.0), radius=1000.0),
        )
        with pytest.raises(InvalidInput):
            store.count(models.Filter(must=[geo]))
        with pytest.raises(InvalidInput):
            store.count(models.Filter(must=[models.FieldCondition(key="allow")]))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "edge"),
        ({"store": "local"}, "local"),
        ({"qdrant_url": "http://127.0.0.1:6333"}, "server"),
        ({"qdrant_url": "http://127.0.0.1:6333", "store": "server"}, "server"),
    ],
)
def test_store_setting_defaults(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert Settings(data_dir=tmp_path, **env).store_backend == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "env",
    [
        {"store": "edge", "qdrant_url": "http://127.0.0.1:6333"},
        {"store": "local", "qdrant_url": "http://127.0.0.1:6333"},
        {"store": "server"},
        {"store": "qdrant"},
    ],
)
def test_contradictory_store_settings_stop_start_up(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="KMS_STORE"):
        Settings(data_dir=tmp_path, **env)  # type: ignore[arg-type]


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path), default_layout())
    try:
        assert isinstance(store, EdgeChunkStore) and store.root == tmp_path / "edge"
    finally:
        store.close()
