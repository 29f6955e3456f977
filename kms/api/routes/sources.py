"""Sources (folders kept in sync with the index): list with last sync, and sync now.

Ingestors and admins only. Like document listings for admins, a caller sees a source only when
its default classification is within their clearance (an unknown level hides it), and a hidden
source answers 404 exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ingest import sources
from kms.api.deps import AuditDep, IngestorOrAdmin, ServicesDep
from kms.config import Classification
from kms.db.job_models import JobRow
from kms.domain import Principal
from kms.errors import NotFound
from kms.services import Services

router = APIRouter(prefix="/api/v1/sources", tags=["sources"])


class SourceOut(BaseModel):
    name: str
    path: str
    classification: str | None
    defaults: dict[str, Any]
    schedule_minutes: int | None
    files: int
    last_sync_at: str | None
    last_job_id: int | None
    last_job_state: str | None


class SourcesPage(BaseModel):
    data: list[SourceOut]
    count: int


class SyncOut(BaseModel):
    source: str
    job_id: int | None  # None: nothing changed since the last sync


def visible(view: dict[str, Any], principal: Principal, classification: Classification) -> bool:
    """A source whose files default above the caller's clearance does not exist for them."""
    if principal.is_operator:
        return True
    level = view["defaults"].get("classification")
    if level is None:  # each file brings its own level; the folder itself reveals nothing more
        return True
    rank, ceiling = classification.rank(str(level)), classification.rank(principal.clearance)
    return rank is not None and ceiling is not None and rank <= ceiling


def _views(services: Services, principal: Principal) -> list[dict[str, Any]]:
    views = [v for v in sources.list_sources(services) if visible(v, principal, services.classification)]
    job_ids = [v["last_job_id"] for v in views if v["last_job_id"] is not None]
    with services.sessions() as session:
        states = dict(session.execute(select(JobRow.id, JobRow.state).where(JobRow.id.in_(job_ids))).all())
    for view in views:
        view["classification"] = view["defaults"].get("classification")
        view["last_job_state"] = states.get(view["last_job_id"])
    return views


@router.get("", response_model=SourcesPage)
def list_sources(principal: IngestorOrAdmin, services: ServicesDep) -> SourcesPage:
    """Every source the caller may see, with its last sync time and the state of its last job."""
    views = _views(services, principal)
    return SourcesPage.model_validate({"data": views, "count": len(views)})


@router.post("/{name}/sync", response_model=SyncOut, status_code=202)
async def sync_source(
    name: str, principal: IngestorOrAdmin, services: ServicesDep, audit: AuditDep
) -> SyncOut:
    """Scan the folder now and queue a sync job with what changed (the running one if any)."""
    if not any(v["name"] == name for v in _views(services, principal)):
        raise NotFound()
    job_id, _lease = await run_in_threadpool(sources.sync, services, name, submitter=principal)
    audit.record("source.sync", name, job_id=job_id)
    return SyncOut(source=name, job_id=job_id)
