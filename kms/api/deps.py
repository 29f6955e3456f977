"""FastAPI dependencies: each declared once as an `Annotated` alias, read top to bottom.

services -> bearer -> principal (401, audited) -> role gates -> per-request audit handle.

`CredentialGate` (middleware) authenticates every request under /api/ and /metrics before routing,
so a missing or refused credential is a 401 whatever the path, method or body; `get_principal`
reuses its result. Dependencies are `async def`; database work runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool as run_sync
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Receive, Scope, Send

from kms.domain import Principal
from kms.search import SearchService
from kms.security import audit, users
from kms.security.authn import Authenticator, AuthResult
from kms.services import Services

ACT_AS_HEADER = "x-kms-as"  # the local operator (only) may act as a user: `kms search --as USER`
AUTH_STATE = "kms_auth"  # where CredentialGate leaves the AuthResult for get_principal


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_search(request: Request) -> SearchService:
    search: SearchService = request.app.state.search
    return search


ServicesDep = Annotated[Services, Depends(get_services)]
# An integer id in a path: bounded, so a huge number is a 422, never a database overflow (500).
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SearchDep = Annotated[SearchService, Depends(get_search)]


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, else None."""
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def _unauthorized() -> HTTPException:
    return HTTPException(401, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"})


def authenticate_refusing(
    services: Services, authenticator: Authenticator, token: str, where: dict[str, Any]
) -> AuthResult:
    """Authenticate `token`; a refused credential is a login failure, audited (never the token)."""
    result = authenticator.authenticate(token)
    if result.principal is None:
        audit_refusal(services, result, where)
    return result


def audit_refusal(services: Services, result: AuthResult, where: dict[str, Any]) -> None:
    audit.append(
        services.sessions,
        actor="anonymous",
        action="auth.failure",
        target=result.key_id,
        detail={"reason": result.failure, **where},
    )


def _act_as(services: Services, user_id: str) -> Principal | None:
    with services.sessions() as session:
        return users.active_principal(session, user_id)


async def get_principal(request: Request) -> Principal:
    """Missing, unknown, revoked, disabled and expired credentials all get the same 401.

    Everything comes from the request itself: each FastAPI dependency costs every request, and
    every route has this one (the OpenAPI document names the bearer scheme, see `create_app`)."""
    result: AuthResult | None = getattr(request.state, AUTH_STATE, None)
    services: Services = request.app.state.services
    if result is None:  # no gate in front of this route: authenticate here
        token = bearer_token(request.headers.get("authorization"))
        if not token:
            raise _unauthorized()
        where = {"method": request.method, "path": request.url.path, "client": _client(request.scope)}
        authenticator: Authenticator = request.app.state.authenticator
        result = await run_sync(authenticate_refusing, services, authenticator, token, where)
    if result.principal is None:
        raise _unauthorized()
    principal, actor = result.principal, result.principal.user_id
    act_as = request.headers.get(ACT_AS_HEADER)
    if act_as is not None:
        if not principal.is_operator:
            raise HTTPException(403, detail="only the local operator may act as another user")
        user = await run_sync(_act_as, services, act_as)
        if user is None:
            raise HTTPException(422, detail=f"no enabled user {act_as!r} to act as")
        principal, actor = user, f"{principal.user_id} as {act_as}"
    request.state.actor = actor
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def admit_roles(principal: Principal, roles: Sequence[str], status: int = 403) -> Principal:
    """`principal` if it is the operator or holds any of `roles`, else HTTP `status`."""
    if principal.is_operator or any(role in principal.roles for role in roles):
        return principal
    raise HTTPException(status, detail="not found" if status == 404 else "forbidden")


def require_role(*roles: str, status: int = 403) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting the operator and principals holding any of `roles`.

    `status=404` for document routes, which never answer 403 (STYLE.md §1).
    """

    async def dependency(principal: CurrentPrincipal) -> Principal:
        return admit_roles(principal, roles, status)

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


SEARCH_ROLES = ("reader", "ingestor")
SearchPrincipal = Annotated[Principal, Depends(require_role(*SEARCH_ROLES))]
DocumentReader = Annotated[Principal, Depends(require_role("reader", "ingestor", status=404))]
IngestorOrAdmin = Annotated[Principal, Depends(require_role("ingestor", "admin"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
AuditorPrincipal = Annotated[Principal, Depends(require_role("auditor"))]


async def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise HTTPException(404, detail="not found")
    return principal


OperatorPrincipal = Annotated[Principal, Depends(require_operator)]


@dataclass(frozen=True)
class RequestAudit:
    """Appends audit records as the request's actor (`local:root as alice` when acting as a user)."""

    sessions: Any
    actor: str

    def record(self, action: str, target: str | None = None, **detail: Any) -> None:
        audit.append(self.sessions, actor=self.actor, action=action, target=target, detail=detail)


def request_audit(request: Request, principal: Principal) -> RequestAudit:
    """The audit handle of a request whose caller `get_principal` found."""
    sessions = request.app.state.services.sessions
    return RequestAudit(sessions, str(getattr(request.state, "actor", principal.user_id)))


async def get_audit(request: Request, principal: CurrentPrincipal) -> RequestAudit:
    return request_audit(request, principal)


AuditDep = Annotated[RequestAudit, Depends(get_audit)]


class CredentialGate:
    """ASGI middleware: under `/api/` and `/metrics`, a request whose bearer credential is missing or
    refused gets 401 before routing and before its body is read (so unknown paths, odd methods and
    malformed bodies answer 401 too); API responses are never cached.

    The authentication result is left in the request state for `get_principal`, which every route
    under a protected prefix must depend on (`create_app` refuses to start otherwise).
    """

    def __init__(self, app: ASGIApp, *, prefixes: Sequence[str] = ("/api/", "/metrics")) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    def protects(self, path: str) -> bool:
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protects(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"")
        token = bearer_token(authorization.decode("latin-1"))
        if token is None:
            await _send_json(send, 401, b'{"detail":"not authenticated"}', [(b"www-authenticate", b"Bearer")])
            return
        state = scope["app"].state
        where = {"method": scope.get("method"), "path": scope.get("path"), "client": _client(scope)}
        result = state.authenticator.authenticate_now(token)
        if result is None:
            result = await run_sync(authenticate_refusing, state.services, state.authenticator, token, where)
        elif result.principal is None:
            await run_sync(audit_refusal, state.services, result, where)
        if result.principal is None:
            await _send_json(send, 401, b'{"detail":"not authenticated"}', [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})[AUTH_STATE] = result

        async def send_no_store(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, send_no_store)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def route_authenticates(dependant: Any) -> bool:
    """Does a route's dependency tree include `get_principal`?"""
    if getattr(dependant, "call", None) is get_principal:
        return True
    return any(route_authenticates(d) for d in getattr(dependant, "dependencies", []))


def unauthenticated_routes(app: Any, gate: CredentialGate | None = None) -> list[str]:
    """Routes under a protected prefix whose dependencies do not include `get_principal`.

    Walks the routes the way FastAPI's own OpenAPI generator does (included routers are nested).
    """
    gate = gate or CredentialGate(app)
    missing = []
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if gate.protects(path) and not route_authenticates(getattr(route, "dependant", None)):
            missing.append(f"{','.join(sorted(route.methods or []))} {path}")
    return missing
