"""GET /api/v1/admin/documents: the registry by status, for admins and ingestors.

Ingestors see their own unit's documents that they may read. Admins see the rows within their own
clearance (`access.administer_clause`), but the title and number only of documents they may read
themselves (managing is not reading).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select

from kms.api.deps import IngestorOrAdmin, ServicesDep
from kms.db.models import DocumentRow
from kms.db.registry import count_by_status
from kms.domain import Principal
from kms.security import access
from kms.services import Services

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class AdminDocument(BaseModel):
    doc_id: str
    status: str
    title: str | None
    doc_number: str | None
    classification: str | None
    owner_unit: str | None
    chunk_count: int
    version: int
    error: str | None
    updated_at: str


class AdminDocuments(BaseModel):
    data: list[AdminDocument]
    count: int
    by_status: dict[str, int]


def _scope(principal: Principal, services: Services) -> Select[Any]:
    if principal.has_role("admin"):  # admins manage only what is within their own clearance
        return select(DocumentRow).where(access.administer_clause(principal, services.classification))
    return select(DocumentRow).where(
        DocumentRow.owner_unit == principal.unit, access.registry_clause(principal, services.classification)
    )


@router.get("/documents", response_model=AdminDocuments)
def list_documents(
    principal: IngestorOrAdmin,
    services: ServicesDep,
    status: Literal["indexed", "failed", "deleted"] | None = None,
    offset: int = Query(default=0, ge=0, le=10**9),
    limit: int = Query(default=50, ge=1, le=500),
) -> AdminDocuments:
    statement = _scope(principal, services)
    if status:
        statement = statement.where(DocumentRow.status == status)
    with services.sessions() as session:
        total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        rows = list(
            session.scalars(statement.order_by(DocumentRow.updated_at.desc()).offset(offset).limit(limit))
        )
        readable = access.registry_clause(principal, services.classification)
        visible = set(
            session.scalars(
                select(DocumentRow.doc_id).where(DocumentRow.doc_id.in_([r.doc_id for r in rows]), readable)
            )
        )
        by_status = count_by_status(session) if principal.has_role("admin") else {}
    data = [
        AdminDocument(
            doc_id=row.doc_id,
            status=row.status,
            title=row.title if row.doc_id in visible else None,
            doc_number=row.doc_number if row.doc_id in visible else None,
            classification=row.classification,
            owner_unit=row.owner_unit,
            chunk_count=row.chunk_count,
            version=row.version,
            error=row.error,
            updated_at=row.updated_at.isoformat(),
        )
        for row in rows
    ]
    return AdminDocuments(data=data, count=int(total), by_status=by_status)
