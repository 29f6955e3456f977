"""POST /api/v1/search (at a mission: federated with HQ, see kms/network/federation.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from kms.api.deps import AuditDep, RequestAudit, SearchDep, SearchPrincipal, ServicesDep
from kms.api.offload import in_thread
from kms.api.routes.federation import FederatedSearchOut, federated_out
from kms.api.schemas import SearchIn, SearchOut, search_out_json
from kms.domain import Principal
from kms.network.runtime import federator_for
from kms.search import SearchService
from kms.services import Services

router = APIRouter(prefix="/api/v1", tags=["search"])
_MISSION = "At a mission the body is FederatedSearchOut: `origin` on each hit and `hq_reachable`."


@router.post("/search", response_model=None, responses={200: {"model": SearchOut, "description": _MISSION}})
async def search(
    body: SearchIn, principal: SearchPrincipal, service: SearchDep, audit: AuditDep, services: ServicesDep
) -> Response | FederatedSearchOut:
    return await in_thread(_search, body, principal, service, audit, services)


def _search(
    body: SearchIn, principal: Principal, service: SearchService, audit: RequestAudit, services: Services
) -> Response | FederatedSearchOut:
    federation = federator_for(services)  # a mission serving with HQ configured; None elsewhere
    federated = federation.search(principal, body.to_domain(), service.search) if federation else None
    result = federated.result if federated is not None else service.search(principal, body.to_domain())
    extra: dict[str, object] = {"hq_reachable": federated.hq_reachable} if federated is not None else {}
    audit.record(
        "search",
        None,
        query=body.query,
        mode=body.mode,
        k=body.k,
        offset=body.offset,
        filters=body.filters.model_dump(mode="json", exclude_defaults=True),
        total=result.total,
        results=[hit.doc_id for hit in result.results],
        **extra,
    )
    if federated is not None:
        return federated_out(federated)
    # Serialised by pydantic straight from the dataclasses: FastAPI's generic encoder walked every
    # field again (~1-2 ms), `dataclasses.asdict` deep-copies them all (~0.3 ms).
    response = Response(search_out_json(result), media_type="application/json")
    if services.settings.server_timing:
        response.headers["server-timing"] = server_timing(result.timings)
    return response


def server_timing(timings: dict[str, float]) -> str:
    """The W3C `Server-Timing` header value: `retrieve;dur=23.41, search;dur=25.02`."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in timings.items())
