"""POST /api/v1/search."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from kms.api.deps import CurrentPrincipal, SearchDep
from kms.api.schemas import SearchIn, SearchOut

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.post("/search", response_model=SearchOut)
def search(body: SearchIn, principal: CurrentPrincipal, service: SearchDep) -> SearchOut:
    return SearchOut.model_validate(asdict(service.search(principal, body.to_domain())))
