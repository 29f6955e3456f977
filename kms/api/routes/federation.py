"""The search response at a mission: each hit says which node answered it, and whether HQ did."""

from __future__ import annotations

from dataclasses import asdict

from pydantic import BaseModel

from kms.api.schemas import HitOut
from kms.network.federation import FederatedResult


class FederatedHitOut(HitOut):
    origin: str  # the node that answered: this mission (its replica) or HQ


class FederatedSearchOut(BaseModel):
    results: list[FederatedHitOut]
    total: int
    facets: dict[str, dict[str, int]]
    hq_reachable: bool | None  # None: HQ was not asked (the operator searched)


def federated_out(federated: FederatedResult) -> FederatedSearchOut:
    body = asdict(federated.result)
    for hit, origin in zip(body["results"], federated.origins, strict=True):
        hit["origin"] = origin
    return FederatedSearchOut.model_validate({**body, "hq_reachable": federated.hq_reachable})
