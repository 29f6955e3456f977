"""`kms serve` warms the search path before serving: every query in every mode, within a budget."""

from __future__ import annotations

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
