"""Fixtures for the security tests (helpers live in security_helpers.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from security_helpers import MATCH_ALL, OPERATOR_TOKEN, SEED, SecureCorpus, build_corpus

from kms.api.app import create_app
from kms.config import Settings
from kms.domain import Principal, SearchQuery
from kms.search import SearchService
from kms.services import Services


@pytest.fixture(scope="session")
def secure_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCorpus]:
    root = tmp_path_factory.mktemp("secure-corpus")
    services = Services.open(Settings(data_dir=root / "data"))
    rng = random.Random(SEED)
    docs = build_corpus(services, root / "files", rng)
    catalog: dict[str, dict[str, Any]] = {}
    service = SearchService(services)
    operator = Principal.operator()
    for offset in range(0, len(docs), 100):
        result = service.search(operator, SearchQuery(query=MATCH_ALL, k=100, offset=offset, mode="sparse"))
        catalog.update({hit.doc_id: vars(hit) for hit in result.results})
    assert set(catalog) == set(docs), "the operator must see every document"
    with TestClient(create_app(services, operator_token=OPERATOR_TOKEN)) as client:
        yield SecureCorpus(services=services, client=client, docs=docs, catalog=catalog, rng=rng)
    services.close()


@pytest.fixture(scope="session")
def operator_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {OPERATOR_TOKEN}"}


STATS = pytest.StashKey[dict[str, Any]]()


@pytest.fixture(scope="session")
def security_stats(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Counters the randomized test fills; printed at the end of the run."""
    return request.config.stash.setdefault(STATS, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stats = config.stash.get(STATS, None)
    if stats:
        terminalreporter.write_sep("-", "access differential test")
        for key, value in stats.items():
            terminalreporter.write_line(f"{key}: {value}")
