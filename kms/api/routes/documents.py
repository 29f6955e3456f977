"""Documents: metadata + text, similar documents, deletion."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from ingest.runner import delete_document
from kms.api.deps import AuditDep, DocumentReader, IngestorOrAdmin, SearchDep, ServicesDep
from kms.api.schemas import DocumentOut, SimilarOut
from kms.db.registry import get_document as registry_document
from kms.errors import NotFound
from kms.security.access import can_delete

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])


@router.get("/{doc_id}", response_model=DocumentOut)
def get_document(doc_id: str, principal: DocumentReader, service: SearchDep, audit: AuditDep) -> DocumentOut:
    try:
        document = service.document(principal, doc_id)
    except NotFound:
        audit.record("document.read", doc_id, outcome="not_found")
        raise
    audit.record("document.read", doc_id, outcome="ok", version=document.get("version"))
    return DocumentOut.model_validate(document)


@router.get("/{doc_id}/similar", response_model=SimilarOut)
def similar(
    doc_id: str,
    principal: DocumentReader,
    service: SearchDep,
    audit: AuditDep,
    k: int = Query(default=10, ge=1, le=100),
) -> SimilarOut:
    try:
        hits = service.similar(principal, doc_id, k)
    except NotFound:
        audit.record("document.similar", doc_id, outcome="not_found")
        raise
    audit.record("document.similar", doc_id, outcome="ok", results=[h.doc_id for h in hits])
    return SimilarOut.model_validate({"results": hits}, from_attributes=True)


@router.delete("/{doc_id}", status_code=204)
def delete(doc_id: str, principal: IngestorOrAdmin, services: ServicesDep, audit: AuditDep) -> Response:
    """Admins (within their clearance) and ingestors (own unit, readable documents); otherwise 404."""
    with services.sessions() as session:
        row = registry_document(session, doc_id)
        allowed = (
            row is not None
            and row.status != "deleted"
            and can_delete(principal, row.as_meta(), services.classification)
        )
    if not allowed:
        audit.record("document.delete", doc_id, outcome="not_found")
        raise NotFound()
    delete_document(services, doc_id, actor=audit.actor)
    return Response(status_code=204)
