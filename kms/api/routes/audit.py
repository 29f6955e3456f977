"""The audit log, for role `auditor` (or the operator): read it page by page, verify the chain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kms.api.deps import AuditDep, AuditorPrincipal, ServicesDep
from kms.security import audit as audit_log

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditRecordPublic(BaseModel):
    id: int
    ts: str
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    data: list[AuditRecordPublic]
    count: int  # records matching the filters in the whole log


class VerificationPublic(BaseModel):
    ok: bool
    records: int
    head_hash: str
    first_bad_id: int | None
    problem: str | None


@router.get("", response_model=AuditPage)
def read_audit(
    _auditor: AuditorPrincipal,
    services: ServicesDep,
    audit: AuditDep,
    after_id: int = Query(default=0, ge=0, le=2**62),
    limit: int = Query(default=100, ge=1, le=1000),
    actor: str | None = Query(default=None, max_length=300),
    action: str | None = Query(default=None, max_length=64),
) -> AuditPage:
    with services.sessions() as session:
        page = audit_log.records(session, after_id=after_id, limit=limit, actor=actor, action=action)
        total = audit_log.count(session, actor=actor, action=action)
    audit.record("audit.read", after_id=after_id, limit=limit, filters={"actor": actor, "action": action})
    return AuditPage.model_validate({"data": [r.as_dict() for r in page], "count": total})


@router.get("/verify", response_model=VerificationPublic)
def verify_audit(_auditor: AuditorPrincipal, services: ServicesDep) -> VerificationPublic:
    """Check the chain (read-only: verifying appends nothing, like `kms audit verify`)."""
    with services.sessions() as session:
        result = audit_log.verify(session)
    return VerificationPublic.model_validate(result.as_dict())
