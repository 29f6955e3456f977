"""The edge store reads its searched files back into the page cache, which the engine drops on close.

Residency is read with util-linux's `fincore` (mincore(2) per page), as an operator would check it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from store_scenario import default_layout, random_corpus

from kms.index import preload
from kms.index.edge_store import EdgeChunkStore
from kms.index.preload import read_into_cache, searched_files

DIM = 64
FINCORE = shutil.which("fincore")
needs_fincore = pytest.mark.skipif(FINCORE is None, reason="util-linux fincore is not installed")


def _resident(paths: list[Path]) -> int:
    """Bytes of `paths` in the page cache."""
    assert FINCORE is not None
    out = subprocess.run(
        [FINCORE, "--bytes", "--noheadings", "--output", "RES", *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(value) for value in out.split())


def _dense_and_payload_files(store: EdgeChunkStore) -> list[Path]:
    generation = store._collection()._gen.path
    return searched_files(generation, ("vector_storage-dense", "payload_storage"))


def _filled_store(root: Path, *, preload: bool = True) -> EdgeChunkStore:
    store = EdgeChunkStore(root, default_layout(), auto_optimize=0, preload=preload)
    store.ensure_active("test-model", DIM)
    store.upsert(random_corpus(3, documents=400, dim=DIM).chunks)
    return store


def test_read_into_cache_reads_every_byte_and_a_missing_file_is_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3 * 2**20 + 5))
    assert read_into_cache(data) == 3 * 2**20 + 5
    assert read_into_cache(tmp_path / "gone.bin") == 0
    (tmp_path / "empty").touch()
    assert read_into_cache(tmp_path / "empty") == 0


def test_searched_files_are_those_of_the_named_folders_most_useful_first(tmp_path: Path) -> None:
    for name in (
        "s1/payload_storage/page_0.dat",
        "s1/vector_storage-dense/matrix.dat",
        "s1/wal/open-1",
        "s2/vector_storage-dense/matrix.dat",
        "s2/vector_storage-lex/page_0.dat",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = searched_files(tmp_path, ("vector_storage-dense", "payload_storage"))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "s1/vector_storage-dense/matrix.dat",
        "s2/vector_storage-dense/matrix.dat",
        "s1/payload_storage/page_0.dat",
    ]


@needs_fincore
def test_a_reopened_index_is_read_back_into_the_page_cache(tmp_path: Path) -> None:
    store = _filled_store(tmp_path)
    store.close()  # the engine drops its files from the page cache here
    reopened = EdgeChunkStore(tmp_path, default_layout(), auto_optimize=0)
    try:
        files = _dense_and_payload_files(reopened)
        size = sum(p.stat().st_size for p in files)
        assert files and _resident(files) < size // 4  # cold: what the preload is for
        assert reopened.wait_warm(120)
        assert _resident(files) >= size * 9 // 10
    finally:
        reopened.close()


@needs_fincore
def test_without_preload_the_index_stays_on_disk(tmp_path: Path) -> None:
    store = _filled_store(tmp_path)
    store.close()
    reopened = EdgeChunkStore(tmp_path, default_layout(), auto_optimize=0, preload=False)
    try:
        files = _dense_and_payload_files(reopened)
        assert reopened.wait_warm(0)  # nothing to wait for
        assert _resident(files) < sum(p.stat().st_size for p in files) // 4
    finally:
        reopened.close()


@needs_fincore
def test_an_optimized_generation_is_read_in_before_it_is_swapped_in(tmp_path: Path) -> None:
    layout = replace(default_layout(), indexing_threshold_kb=64)
    store = EdgeChunkStore(tmp_path, layout, auto_optimize=0)
    try:
        store.ensure_active("test-model", DIM)
        store.upsert(random_corpus(4, documents=400, dim=DIM).chunks)
        assert store.wait_warm(120)  # a server asked for a warm index
        before = store._collection()._gen.number
        store.optimize(wait=True)
        assert store._collection()._gen.number == before + 1
        files = _dense_and_payload_files(store)
        assert _resident(files) >= sum(p.stat().st_size for p in files) * 9 // 10
    finally:
        store.close()


@pytest.mark.parametrize(
    ("limit", "usage", "left"),
    [("max", "100", None), (str(2**63 - 4096), "100", None), ("1000", "300", 700), ("1000", "1200", 0)],
)
def test_headroom_under_a_cgroup_limit_as_v1_and_v2_write_it(
    tmp_path: Path, limit: str, usage: str, left: int | None
) -> None:
    (tmp_path / "limit").write_text(f"{limit}\n")
    (tmp_path / "usage").write_text(f"{usage}\n")
    assert preload._left_under(tmp_path / "limit", tmp_path / "usage") == left
    assert preload._left_under(tmp_path / "absent", tmp_path / "usage") is None


def test_the_budget_is_at_most_half_of_the_available_memory() -> None:
    available = preload._available_memory()
    budget = preload.memory_budget()
    if available is None:
        pytest.skip("no /proc/meminfo on this system")
    assert budget is not None and 0 <= budget <= available // 2 + 2**20


def test_the_warmer_reads_in_priority_order_only_what_fits_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = {"first": 600_000, "too-big": 900_000, "small": 300_000, "last": 200_000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * size)
    monkeypatch.setattr(preload, "memory_budget", lambda: 1_000_000)
    warmer = preload.PageCacheWarmer([tmp_path / name for name in sizes], name="test")
    assert warmer.wait(30)
    assert warmer.bytes_read == 600_000 + 300_000  # "too-big" and then "last" would not fit


@needs_fincore
def test_a_reindexed_collection_goes_live_read_in_when_the_server_asked_for_a_warm_index(
    tmp_path: Path,
) -> None:
    store = _filled_store(tmp_path)
    try:
        assert store.wait_warm(120)
        fresh = store.create_collection("test-model", DIM)
        store.upsert(random_corpus(5, documents=400, dim=DIM).chunks, collection=fresh)
        store.close()  # drops the files of both from the page cache
        store = EdgeChunkStore(tmp_path, default_layout(), auto_optimize=0)
        assert store.wait_warm(120)
        store.swap_alias(fresh)
        files = _dense_and_payload_files(store)
        assert store.active_collection() == fresh
        assert _resident(files) >= sum(p.stat().st_size for p in files) * 9 // 10
    finally:
        store.close()
