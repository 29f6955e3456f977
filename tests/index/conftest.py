"""One store test suite, every backend: `local` and `edge` always, `server` when KMS_TEST_QDRANT_URL is set.

Tests take the `backend` fixture (parametrized) and open stores with `open_backend`; the scenario
helpers (random documents with edge-case access fields, random principals) live in `store_scenario.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_scenario import BACKENDS, SERVER_URL, dispose, make_store

from kms.config import CollectionLayout
from kms.index.store import ChunkStore


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "server" and not SERVER_URL:
        pytest.skip("KMS_TEST_QDRANT_URL is not set: the server backend is not tested in this run")
    return str(request.param)


@pytest.fixture
def open_backend(tmp_path: Path) -> Iterator[Callable[..., ChunkStore]]:
    """`open_backend(name, layout=None)`: a fresh store in its own data dir, closed after the test."""
    opened: list[ChunkStore] = []

    def factory(name: str, layout: CollectionLayout | None = None) -> ChunkStore:
        store = make_store(name, tmp_path / f"{name}-{len(opened)}", layout)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        dispose(store)


@pytest.fixture
def store(backend: str, open_backend: Callable[..., ChunkStore]) -> ChunkStore:
    return open_backend(backend)
