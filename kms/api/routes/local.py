"""Operator-only routes the CLI uses while `kms serve` owns the embedded store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from ingest.check import check
from ingest.reindex import reindex
from ingest.runner import ingest_paths
from kms.api.deps import AuditDep, OperatorPrincipal, ServicesDep
from kms.api.schemas import IngestOut, IngestPathsIn
from kms.stats import collect_stats

router = APIRouter(prefix="/api/v1/local", tags=["operator"])


@router.post("/ingest", response_model=IngestOut)
def ingest(
    body: IngestPathsIn, _operator: OperatorPrincipal, services: ServicesDep, audit: AuditDep
) -> IngestOut:
    results = ingest_paths(services, [Path(p) for p in body.paths], dict(body.overrides), actor=audit.actor)
    return IngestOut.model_validate({"results": [r.as_dict() for r in results]})


@router.post("/reindex")
def run_reindex(_operator: OperatorPrincipal, services: ServicesDep, audit: AuditDep) -> dict[str, Any]:
    result = reindex(services)
    audit.record("index.reindex", result.get("collection"), documents=result.get("documents"))
    return result


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repair: bool = False
    deep: bool = False


@router.post("/check")
def run_check(
    body: CheckIn, _operator: OperatorPrincipal, services: ServicesDep, audit: AuditDep
) -> dict[str, Any]:
    """`kms check`: compare the registry, the index and the originals; `repair` fixes what it can."""
    report = check(services, repair=body.repair, deep=body.deep).as_dict()
    if body.repair:
        audit.record("index.check", repaired=len(report["repaired"]), problems=len(report["problems"]))
    return report


@router.get("/stats")
def stats(_operator: OperatorPrincipal, services: ServicesDep) -> dict[str, Any]:
    return collect_stats(services)
