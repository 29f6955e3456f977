"""Admin routes: users, API keys and document access. Role `admin` (or the operator) only.

Roles never raise clearance: an admin manages only users at or below their own clearance (so they
cannot mint a key that reads more than they may) and only documents at or below it
(`access.can_administer`); anything else answers 403 for users and 404 for documents.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ingest.runner import set_access
from kms.api.deps import AdminPrincipal, AuditDep, ServicesDep
from kms.config import Classification
from kms.db.registry import get_document
from kms.domain import Principal
from kms.errors import NotFound
from kms.security import users
from kms.security.access import can_administer

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Name = Annotated[str, Field(min_length=1, max_length=128)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Name
    clearance: str = Field(min_length=1, max_length=64)
    unit: str = Field(min_length=1, max_length=200)
    groups: list[Name] = Field(default_factory=list, max_length=100)
    roles: list[Name] = Field(default_factory=lambda: ["reader"], max_length=4)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clearance: str | None = Field(default=None, min_length=1, max_length=64)
    unit: str | None = Field(default=None, min_length=1, max_length=200)
    groups: list[Name] | None = Field(default=None, max_length=100)
    roles: list[Name] | None = Field(default=None, max_length=4)
    disabled: bool | None = None


class UserPublic(BaseModel):
    user_id: str
    clearance: str
    unit: str
    groups: list[str]
    roles: list[str]
    disabled: bool
    created_at: str | None


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


class KeyPublic(BaseModel):
    key_id: str
    user_id: str
    created_at: str | None
    revoked_at: str | None


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class KeyCreated(BaseModel):
    key_id: str
    user_id: str
    key: str  # shown once; only a salted hash is stored


class AccessUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classification: str = Field(min_length=1, max_length=64)
    allow: list[Annotated[str, Field(max_length=300)]] = Field(max_length=1000)


class DocumentAccessPublic(BaseModel):
    """Admin view of a document's access fields: never its title or text."""

    doc_id: str
    classification: str | None
    allow: list[str]
    owner_unit: str | None


def _within_clearance(principal: Principal, clearance: str, classification: Classification) -> bool:
    if principal.is_operator:
        return True
    own = classification.rank(principal.clearance)
    theirs = classification.rank(clearance)
    top = max(level.rank for level in classification.levels)
    return own is not None and (theirs if theirs is not None else top) <= own


def _check_user_in_reach(principal: Principal, clearance: str, classification: Classification) -> None:
    if not _within_clearance(principal, clearance, classification):
        raise HTTPException(403, detail="beyond your clearance")


@router.get("/users", response_model=UsersPublic)
def list_users(_admin: AdminPrincipal, services: ServicesDep) -> UsersPublic:
    with services.sessions() as session:
        data = [u.as_dict() for u in users.list_users(session)]
    return UsersPublic.model_validate({"data": data, "count": len(data)})


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(
    body: UserCreate, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep
) -> UserPublic:
    clearance = users.check_clearance(body.clearance, services.classification)
    _check_user_in_reach(admin, clearance, services.classification)
    with services.sessions() as session:
        info = users.create_user(
            session,
            user_id=body.user_id,
            clearance=clearance,
            unit=body.unit,
            groups=body.groups,
            roles=body.roles,
            classification=services.classification,
        )
        session.commit()
    audit.record("user.create", info.user_id, **_user_detail(info))
    return UserPublic.model_validate(info.as_dict())


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(
    user_id: str, body: UserUpdate, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep
) -> UserPublic:
    with services.sessions() as session:
        current = users.get_user(session, user_id)
        _check_user_in_reach(admin, current.clearance, services.classification)
        if body.clearance is not None:
            wanted = users.check_clearance(body.clearance, services.classification)
            _check_user_in_reach(admin, wanted, services.classification)
        info = users.update_user(
            session,
            user_id=user_id,
            classification=services.classification,
            clearance=body.clearance,
            unit=body.unit,
            groups=body.groups,
            roles=body.roles,
            disabled=body.disabled,
        )
        session.commit()
    audit.record("user.update", user_id, changes=body.model_dump(exclude_none=True))
    return UserPublic.model_validate(info.as_dict())


@router.post("/users/{user_id}/keys", response_model=KeyCreated, status_code=201)
def create_key(user_id: str, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep) -> KeyCreated:
    with services.sessions() as session:
        user = users.get_user(session, user_id)
        _check_user_in_reach(admin, user.clearance, services.classification)
        info, key = users.create_key(session, user_id=user_id)
        session.commit()
    audit.record("key.create", info.key_id, user_id=user_id)
    return KeyCreated(key_id=info.key_id, user_id=user_id, key=key)


@router.get("/keys", response_model=KeysPublic)
def list_keys(
    _admin: AdminPrincipal,
    services: ServicesDep,
    user_id: str | None = Query(default=None, max_length=128),
) -> KeysPublic:
    with services.sessions() as session:
        data = [k.as_dict() for k in users.list_keys(session, user_id=user_id)]
    return KeysPublic.model_validate({"data": data, "count": len(data)})


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep) -> Response:
    with services.sessions() as session:
        info = users.get_key(session, key_id)
        _check_user_in_reach(admin, users.get_user(session, info.user_id).clearance, services.classification)
        users.revoke_key(session, key_id=key_id)
        session.commit()
    audit.record("key.revoke", key_id, user_id=info.user_id)
    return Response(status_code=204)


def _administrable(services: ServicesDep, admin: Principal, doc_id: str) -> DocumentAccessPublic:
    with services.sessions() as session:
        row = get_document(session, doc_id)
        if row is None or row.status != "indexed":
            raise NotFound()
        meta = row.as_meta()
    if not can_administer(admin, meta, services.classification):
        raise NotFound()
    return DocumentAccessPublic(
        doc_id=doc_id,
        classification=meta["classification"],
        allow=[str(t) for t in meta["allow"]],
        owner_unit=meta["owner_unit"],
    )


@router.get("/documents/{doc_id}/access", response_model=DocumentAccessPublic)
def get_access(
    doc_id: str, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep
) -> DocumentAccessPublic:
    try:
        result = _administrable(services, admin, doc_id)
    except NotFound:
        audit.record("document.access.view", doc_id, outcome="not_found")
        raise
    audit.record("document.access.view", doc_id, outcome="ok")
    return result


@router.put("/documents/{doc_id}/access", response_model=DocumentAccessPublic)
def put_access(
    doc_id: str, body: AccessUpdate, admin: AdminPrincipal, services: ServicesDep, audit: AuditDep
) -> DocumentAccessPublic:
    """Re-classify and/or replace the allow list; every chunk is updated before this returns."""
    try:
        _administrable(services, admin, doc_id)
    except NotFound:
        audit.record("document.access", doc_id, outcome="not_found")
        raise
    result = set_access(services, doc_id, body.classification, body.allow, actor=audit.actor)
    return DocumentAccessPublic.model_validate(result)


def _user_detail(info: users.UserInfo) -> dict[str, object]:
    return {"clearance": info.clearance, "unit": info.unit, "groups": info.groups, "roles": info.roles}
