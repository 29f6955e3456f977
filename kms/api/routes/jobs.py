"""Ingestion jobs: list, progress, retry, cancel.

A read path like any other: a caller sees their own jobs (admins and the operator see all), and a
job that is not theirs answers 404 exactly like a missing one. Retry and cancel: the submitter
while they hold the `ingestor` role, or an admin.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ingest import jobs
from kms.api.deps import AuditDep, CurrentPrincipal, RowId, ServicesDep

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobState = Literal["queued", "running", "succeeded", "failed", "dead", "cancelled"]


class JobOut(BaseModel):
    id: int
    kind: str
    state: str
    submitted_by: str
    source: str | None
    files_total: int
    files_done: int
    files_failed: int
    chunks_written: int
    attempts: int
    max_attempts: int
    error: str | None
    cancel_requested: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    next_attempt_at: str | None


class JobFileOut(BaseModel):
    seq: int
    op: str
    name: str
    doc_id: str | None
    size: int
    state: str
    status: str | None
    chunks: int
    error: str | None


class JobDetailOut(JobOut):
    files: list[JobFileOut]


class JobsPage(BaseModel):
    data: list[JobOut]
    count: int


@router.get("", response_model=JobsPage)
def list_jobs(
    principal: CurrentPrincipal,
    services: ServicesDep,
    state: JobState | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> JobsPage:
    rows, total = jobs.list_jobs(services.sessions, principal, state=state, limit=limit, offset=offset)
    return JobsPage.model_validate({"data": [jobs.job_summary(r) for r in rows], "count": total})


@router.get("/{job_id}", response_model=JobDetailOut)
def get_job(job_id: RowId, principal: CurrentPrincipal, services: ServicesDep) -> JobDetailOut:
    """Progress (files done / total, chunks written) and each file's outcome or error."""
    job, files = jobs.get(services.sessions, job_id, principal)
    return JobDetailOut.model_validate(jobs.job_detail(job, files, principal, services.classification))


@router.post("/{job_id}/retry", response_model=JobDetailOut, status_code=202)
def retry_job(
    job_id: RowId, principal: CurrentPrincipal, services: ServicesDep, audit: AuditDep
) -> JobDetailOut:
    """Queue a failed, dead or cancelled job again (its failed files are tried again); 409 otherwise."""
    jobs.retry(services.sessions, job_id, principal)
    audit.record("job.retry", str(job_id))
    job, files = jobs.get(services.sessions, job_id, principal)
    return JobDetailOut.model_validate(jobs.job_detail(job, files, principal, services.classification))


@router.post("/{job_id}/cancel", response_model=JobDetailOut)
def cancel_job(
    job_id: RowId, principal: CurrentPrincipal, services: ServicesDep, audit: AuditDep
) -> JobDetailOut:
    """Cancel a queued job, or stop a running one after its current batch; 409 when already over."""
    jobs.cancel(services.sessions, job_id, principal)
    audit.record("job.cancel", str(job_id))
    job, files = jobs.get(services.sessions, job_id, principal)
    return JobDetailOut.model_validate(jobs.job_detail(job, files, principal, services.classification))
