"""Liveness and readiness: public, and carrying no document data."""

from __future__ import annotations

from fastapi import APIRouter

from kms.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> dict[str, str]:
    services.store.active_collection()  # raises (-> 500) if the index cannot be reached
    return {"status": "ready"}
