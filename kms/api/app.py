"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from kms.api.deps import CredentialGate, unauthenticated_routes
from kms.api.routes import admin, admin_documents, alerts, audit, documents, health, local, me, search
from kms.api.routes import ingest as ingest_routes
from kms.api.routes import jobs as jobs_routes
from kms.api.routes import metrics as metrics_routes
from kms.api.routes import replication as replication_routes
from kms.api.routes import sources as sources_routes
from kms.errors import ConfigError, Conflict, Forbidden, InvalidInput, KmsError, NotFound, TooLarge
from kms.search import SearchService
from kms.security.authn import Authenticator
from kms.services import Services

log = logging.getLogger(__name__)


def _web_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("kms.web")))


def create_app(services: Services, *, operator_token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="kms",
        version="0.1.0",
        description="Knowledge management and semantic search for HQ and missions.",
    )
    app.state.services = services
    app.state.search = SearchService(services)
    app.state.operator_token = operator_token
    app.state.authenticator = Authenticator(
        sessions=services.sessions,
        settings=services.settings,
        classification=services.classification,
        operator_token=operator_token,
    )
    routers = (
        health.router,
        search.router,
        documents.router,
        local.router,
        admin.router,
        audit.router,
        me.router,
        alerts.router,
        admin_documents.router,
        ingest_routes.router,
        jobs_routes.router,
        sources_routes.router,
        metrics_routes.router,
        replication_routes.router,
    )
    for router in routers:
        app.include_router(router)
    # Fail closed at start-up: every route under /api/ and /metrics must authenticate its caller.
    unauthenticated = unauthenticated_routes(app)
    if unauthenticated:
        raise ConfigError(f"routes that do not authenticate (add CurrentPrincipal): {unauthenticated}")
    app.add_middleware(CredentialGate)
    app.openapi = _openapi_with_bearer_scheme(app, CredentialGate(app))  # type: ignore[method-assign]
    app.state.metrics = metrics_routes.Metrics(services)
    app.add_middleware(metrics_routes.MetricsMiddleware, metrics=app.state.metrics)
    _install_error_handlers(app)
    app.mount("/", StaticFiles(directory=_web_dir(), html=True), name="web")
    return app


def _openapi_with_bearer_scheme(app: FastAPI, gate: CredentialGate) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document, naming the bearer scheme on every route behind the gate: routes
    authenticate through the gate and `get_principal`, not a FastAPI security dependency (each
    dependency is work on every request), so FastAPI cannot see that they need a credential."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in schema.get("paths", {}).items():
                if gate.protects(path):
                    for operation in operations.values():
                        operation["security"] = [{"HTTPBearer": []}]
        return app.openapi_schema or generate()

    return openapi


def _install_error_handlers(app: FastAPI) -> None:
    statuses: list[tuple[type[KmsError], int]] = [
        (NotFound, 404),
        (TooLarge, 413),
        (InvalidInput, 422),
        (Forbidden, 403),
        (Conflict, 409),
    ]

    @app.exception_handler(KmsError)
    async def kms_error(_request: Request, exc: KmsError) -> JSONResponse:
        for cls, status in statuses:
            if isinstance(exc, cls):
                detail = "not found" if status == 404 else str(exc)
                return JSONResponse({"detail": detail}, status_code=status)
        log.error("unhandled kms error: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": message or "invalid request", "errors": errors}, status_code=422)
