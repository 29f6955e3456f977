"""The knowledge network on the main API: status and per-peer metrics, and the operator's sync.

The replication protocol itself is not here: it runs on its own mutual-TLS listener
(kms/network/listener.py), where a peer's identity comes from its certificate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from kms.api.deps import OperatorPrincipal, ServicesDep, require_role
from kms.domain import Principal
from kms.errors import InvalidInput
from kms.network import state
from kms.network.runtime import runtime_for
from kms.services import Services

router = APIRouter(tags=["network"])
NetworkReader = Annotated[Principal, Depends(require_role("admin", "auditor"))]


def _status(services: Services) -> dict[str, Any]:
    with services.sessions() as session:
        return state.status(session, services.settings, services.classification)


@router.get("/api/v1/network/status")
def network_status(_reader: NetworkReader, services: ServicesDep) -> dict[str, Any]:
    """Peers, last sync, lag (changes and seconds), queue depth and counters."""
    return _status(services)


@router.get("/api/v1/network/metrics")
def network_metrics(_reader: NetworkReader, services: ServicesDep) -> Response:
    """The same per peer, in the Prometheus text format."""
    return Response(state.prometheus(_status(services)), media_type="text/plain; version=0.0.4")


@router.post("/api/v1/local/network/sync")
def network_sync(
    _operator: OperatorPrincipal, services: ServicesDep, reconcile: bool = False
) -> dict[str, Any]:
    """`kms network sync` while `kms serve` runs: one sync with HQ now (a mission only)."""
    runtime = runtime_for(services)
    if not runtime.replicates:
        raise InvalidInput("this node does not sync: it is HQ (missions pull from it) or has no KMS_HQ_URL")
    return runtime.sync(reconcile=reconcile).as_dict()
