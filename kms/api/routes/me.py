"""GET /api/v1/me: who the caller's credential says they are (the web page checks a key with it)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from kms.api.deps import CurrentPrincipal

router = APIRouter(prefix="/api/v1", tags=["session"])


class MePublic(BaseModel):
    user_id: str
    clearance: str
    unit: str
    groups: list[str]
    roles: list[str]
    operator: bool


@router.get("/me", response_model=MePublic)
def me(principal: CurrentPrincipal) -> MePublic:
    return MePublic(
        user_id=principal.user_id,
        clearance=principal.clearance,
        unit=principal.unit,
        groups=list(principal.groups),
        roles=list(principal.roles),
        operator=principal.is_operator,
    )
