"""FastAPI dependencies: each declared once as an `Annotated` alias, read top to bottom."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kms.domain import Principal
from kms.search import SearchService
from kms.security import authn
from kms.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_search(request: Request) -> SearchService:
    search: SearchService = request.app.state.search
    return search


ServicesDep = Annotated[Services, Depends(get_services)]
SearchDep = Annotated[SearchService, Depends(get_search)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def get_principal(request: Request, bearer: BearerDep, services: ServicesDep) -> Principal:
    token = bearer.credentials if bearer else None
    principal = authn.principal_from_bearer(services, token, request.app.state.operator_token)
    if principal is None:
        raise HTTPException(401, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise HTTPException(404, detail="not found")
    return principal


OperatorPrincipal = Annotated[Principal, Depends(require_operator)]
