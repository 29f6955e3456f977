"""Operator-only routes the CLI uses while `kms serve` owns the embedded store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ingest.reindex import reindex
from ingest.runner import ingest_paths
from kms.api.deps import OperatorPrincipal, ServicesDep
from kms.api.schemas import IngestOut, IngestPathsIn
from kms.stats import collect_stats

router = APIRouter(prefix="/api/v1/local", tags=["operator"])


@router.post("/ingest", response_model=IngestOut)
def ingest(body: IngestPathsIn, _operator: OperatorPrincipal, services: ServicesDep) -> IngestOut:
    results = ingest_paths(services, [Path(p) for p in body.paths], dict(body.overrides))
    return IngestOut.model_validate({"results": [r.as_dict() for r in results]})


@router.post("/reindex")
def run_reindex(_operator: OperatorPrincipal, services: ServicesDep) -> dict[str, Any]:
    return reindex(services)


@router.get("/stats")
def stats(_operator: OperatorPrincipal, services: ServicesDep) -> dict[str, Any]:
    return collect_stats(services)
