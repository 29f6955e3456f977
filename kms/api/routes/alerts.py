"""Saved searches and alerts: each user sees and changes only their own."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from kms import alerts
from kms.api.deps import RowId, SearchDep, SearchPrincipal
from kms.api.schemas import FiltersIn, HitOut

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class SavedSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    query: str = Field(min_length=1, max_length=1000)
    filters: FiltersIn = Field(default_factory=FiltersIn)


class SavedSearchOut(BaseModel):
    id: int
    name: str
    query: str
    filters: dict[str, Any]
    created_at: dt.datetime
    seen_at: dt.datetime


class SavedSearchList(BaseModel):
    data: list[SavedSearchOut]
    count: int


class AlertOut(BaseModel):
    saved_search_id: int
    name: str
    query: str
    results: list[HitOut]


class AlertList(BaseModel):
    alerts: list[AlertOut]
    count: int


def _out(row: Any) -> SavedSearchOut:
    return SavedSearchOut(
        id=row.id,
        name=row.name,
        query=row.query,
        filters=row.filters,
        created_at=row.created_at,
        seen_at=row.seen_at,
    )


@router.get("/saved-searches", response_model=SavedSearchList)
def list_saved(principal: SearchPrincipal, search: SearchDep) -> SavedSearchList:
    rows = alerts.saved_searches(search, principal)
    return SavedSearchList(data=[_out(r) for r in rows], count=len(rows))


@router.post("/saved-searches", response_model=SavedSearchOut, status_code=201)
def create_saved(body: SavedSearchIn, principal: SearchPrincipal, search: SearchDep) -> SavedSearchOut:
    filters = body.filters.model_dump(exclude_defaults=True, mode="json")
    row = alerts.save_search(
        search, principal, name=body.name.strip(), query=body.query.strip(), filters=filters
    )
    return _out(row)


@router.delete("/saved-searches/{saved_id}", status_code=204)
def delete_saved(saved_id: RowId, principal: SearchPrincipal, search: SearchDep) -> Response:
    alerts.delete_saved_search(search, principal, saved_id)
    return Response(status_code=204)


@router.get("/alerts", response_model=AlertList)
def get_alerts(principal: SearchPrincipal, search: SearchDep) -> AlertList:
    found = alerts.alerts(search, principal)
    return AlertList.model_validate({"alerts": found, "count": len(found)})


@router.post("/alerts/seen", status_code=204)
def alerts_seen(principal: SearchPrincipal, search: SearchDep) -> Response:
    alerts.mark_seen(search, principal)
    return Response(status_code=204)
