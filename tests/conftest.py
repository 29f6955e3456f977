"""Shared fixtures: one sample-corpus index per test run (real model, real embedded Qdrant, real SQLite)."""

from __future__ import annotations

import os

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before anything imports haystack

from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PgServer, run_pg_server

from ingest.runner import FileResult, ingest_paths
from kms.config import Settings
from kms.demo import samples_dir
from kms.services import Services

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sample_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The bundled sample corpus, ingested once for the whole run. Treat as read-only."""
    services = Services.open(make_settings(tmp_path_factory.mktemp("sample-data")))
    results = ingest_paths(services, [samples_dir()])
    failed = [r for r in results if r.status == "failed"]
    assert not failed, failed
    services.sample_results = results  # type: ignore[attr-defined]
    yield services
    services.close()


@pytest.fixture(scope="session")
def sample_results(sample_services: Services) -> list[FileResult]:
    return list(sample_services.sample_results)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server on loopback for the whole run (skips, saying why, without binaries)."""
    yield from run_pg_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty registry database: a SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """A fresh, empty data dir for tests that write."""
    opened = Services.open(make_settings(tmp_path / "data"))
    yield opened
    opened.close()
