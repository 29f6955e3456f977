"""`kms serve` warms the search path before serving: every query in every mode, within a budget."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from kms.config import Settings, load_collection_layout
from kms.index.base import ChunkPoint
from kms.index.edge_store import EdgeChunkStore
from kms.search import SearchService
from kms.security import audit
from kms.services import Services
from kms.warmup import MODES, QUERIES, warm_up


def _audit_count(services: Services) -> int:
    with services.sessions() as session:
        return len(audit.records(session))


def test_warm_up_runs_every_query_in_every_mode_and_audits_nothing(sample_services: Services) -> None:
    before = _audit_count(sample_services)
    assert warm_up(SearchService(sample_services), budget_s=600) == len(QUERIES) * len(MODES)
    assert _audit_count(sample_services) == before  # no one asked: nothing to audit


def test_warm_up_stops_at_its_budget(sample_services: Services) -> None:
    service = SearchService(sample_services)
    assert warm_up(service, budget_s=0) == 0
    assert warm_up(service, budget_s=1e-9) == 1  # the budget is checked after each search


def test_warm_up_starts_reading_the_index_in_even_without_a_budget(tmp_path: Path) -> None:
    layout = load_collection_layout(Settings().index_config_dir)
    store = EdgeChunkStore(tmp_path, layout, auto_optimize=0)
    try:
        store.ensure_active("test-model", 8)
        payload = {"doc_id": "d", "allow": ["all-staff"], "classification_rank": 0}
        store.upsert([ChunkPoint("d", 1, 0, [1.0] * 8, {}, payload)])
        collection = store._collection()
        assert collection.warmer is None  # nobody asked yet
        service = SimpleNamespace(services=SimpleNamespace(store=store))
        assert warm_up(service, budget_s=0) == 0  # type: ignore[arg-type]
        assert collection.warmer is not None and collection.warmer.wait(60)
    finally:
        store.close()
