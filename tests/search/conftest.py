"""A small corpus with every access case, indexed once for tests/search (real model, real store)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from search_corpus import DOCS

from ingest.runner import ingest_paths
from kms.config import Settings
from kms.services import Services


@pytest.fixture(scope="session")
def search_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("search-corpus")
    folder = root / "files"
    folder.mkdir()
    for doc_id, (text, meta) in DOCS.items():
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        sidecar = {"doc_id": doc_id, **meta}
        (folder / f"{doc_id}.txt.meta.json").write_text(
            json.dumps(sidecar, ensure_ascii=False), encoding="utf-8"
        )
    services = Services.open(Settings(data_dir=root / "data"))
    results = ingest_paths(services, [folder])
    assert all(r.status == "added" for r in results), results
    yield services
    services.close()
