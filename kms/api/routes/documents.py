"""Documents: metadata + text, similar documents, deletion."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query, Response

from ingest.runner import delete_document
from kms.api.deps import CurrentPrincipal, OperatorPrincipal, SearchDep, ServicesDep
from kms.api.schemas import DocumentOut, SimilarOut

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])


@router.get("/{doc_id}", response_model=DocumentOut)
def get_document(doc_id: str, principal: CurrentPrincipal, service: SearchDep) -> DocumentOut:
    return DocumentOut.model_validate(service.document(principal, doc_id))


@router.get("/{doc_id}/similar", response_model=SimilarOut)
def similar(
    doc_id: str, principal: CurrentPrincipal, service: SearchDep, k: int = Query(default=10, ge=1, le=100)
) -> SimilarOut:
    return SimilarOut.model_validate({"results": [asdict(h) for h in service.similar(principal, doc_id, k)]})


@router.delete("/{doc_id}", status_code=204)
def delete(doc_id: str, _operator: OperatorPrincipal, services: ServicesDep) -> Response:
    delete_document(services, doc_id)
    return Response(status_code=204)
