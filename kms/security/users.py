"""Users and API keys: plain functions over a session, keyword-only arguments, no HTTP.

An API key reads `kms_<key_id>_<secret>`. Only a random per-key salt and HMAC-SHA256(salt,
key_id:secret) are stored. A key whose id is unknown is still hashed and compared (against a dummy
digest) in constant time, so timing does not tell which key ids exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Engine, Table, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from kms.config import Classification
from kms.db.driver import DriverStatement, compile_for, driver_transaction
from kms.db.security_models import ApiKeyRow, UserRow
from kms.domain import ROLES, Principal
from kms.errors import ConfigError, Conflict, InvalidInput, NotFound
from kms.security.access import is_valid_unit

KEY_PREFIX = "kms_"
_KEY_ID_HEX = 16
_KEY = re.compile(rf"^{KEY_PREFIX}([0-9a-f]{{{_KEY_ID_HEX}}})_([A-Za-z0-9_-]{{20,128}})$")
USER_ID = re.compile(r"^[\w.@+-]{1,128}$")
GROUP = re.compile(r"^[\w.@+-]{1,128}$")
_DUMMY_SALT = secrets.token_hex(16)
_DUMMY_DIGEST = hmac.new(bytes.fromhex(_DUMMY_SALT), b"dummy", hashlib.sha256).hexdigest()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---- validation ------------------------------------------------------------------------------
def nfc(value: str) -> str:
    """Tokens are compared exactly, and ingestion stores them NFC: so are user fields."""
    return unicodedata.normalize("NFC", value.strip())


def check_user_id(user_id: str) -> str:
    user_id = nfc(user_id)
    if not USER_ID.fullmatch(user_id):
        raise InvalidInput(f"invalid user id {user_id!r}: use 1-128 letters, digits or . _ @ + -")
    return user_id


def check_clearance(value: str, classification: Classification) -> str:
    try:
        return classification.parse(value)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from exc


def check_unit(unit: str) -> str:
    unit = nfc(unit)
    if not is_valid_unit(unit):
        raise InvalidInput(f"invalid unit {unit!r}: use a unit path like hq/consular or mission/jp-tokyo")
    return unit


def check_groups(groups: Iterable[str]) -> list[str]:
    result = []
    for group in map(nfc, groups):
        if not GROUP.fullmatch(group):
            raise InvalidInput(f"invalid group {group!r}: use 1-128 letters, digits or . _ @ + -")
        result.append(group)
    return list(dict.fromkeys(result))


def check_roles(roles: Iterable[str]) -> list[str]:
    result = []
    for role in roles:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        result.append(role)
    return list(dict.fromkeys(result))


# ---- users -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserInfo:
    user_id: str
    clearance: str
    unit: str
    groups: list[str]
    roles: list[str]
    disabled: bool
    created_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "clearance": self.clearance,
            "unit": self.unit,
            "groups": list(self.groups),
            "roles": list(self.roles),
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def user_info(row: UserRow) -> UserInfo:
    return UserInfo(
        user_id=row.user_id,
        clearance=row.clearance,
        unit=row.unit,
        groups=list(row.groups or []),
        roles=list(row.roles or []),
        disabled=bool(row.disabled),
        created_at=row.created_at,
    )


class UserFields(Protocol):
    """What a principal is made of: a `UserRow`, or a row of `_KEY_AND_USER`."""

    @property
    def user_id(self) -> str: ...
    @property
    def clearance(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def groups(self) -> list[str] | None: ...
    @property
    def roles(self) -> list[str] | None: ...
    @property
    def disabled(self) -> bool: ...


_PRINCIPAL_FIELDS = ("user_id", "clearance", "unit", "groups", "roles", "disabled")


def principal_of(row: UserFields) -> Principal:
    return Principal(
        user_id=row.user_id,
        clearance=row.clearance,
        unit=row.unit,
        groups=tuple(g for g in row.groups or [] if isinstance(g, str)),
        roles=tuple(r for r in row.roles or [] if isinstance(r, str)),
    )


def create_user(
    session: Session,
    *,
    user_id: str,
    clearance: str,
    unit: str,
    classification: Classification,
    groups: Sequence[str] = (),
    roles: Sequence[str] = ("reader",),
) -> UserInfo:
    user_id = check_user_id(user_id)
    row = UserRow(
        user_id=user_id,
        clearance=check_clearance(clearance, classification),
        unit=check_unit(unit),
        groups=check_groups(groups),
        roles=check_roles(roles or ("reader",)),
        disabled=False,
        created_at=_utcnow(),
    )
    if session.get(UserRow, user_id) is not None:
        raise Conflict(f"user {user_id!r} already exists")
    session.add(row)
    session.flush()
    return user_info(row)


def get_user(session: Session, user_id: str) -> UserRow:
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFound()
    return row


def update_user(
    session: Session,
    *,
    user_id: str,
    classification: Classification,
    clearance: str | None = None,
    unit: str | None = None,
    groups: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    disabled: bool | None = None,
) -> UserInfo:
    row = get_user(session, user_id)
    if clearance is not None:
        row.clearance = check_clearance(clearance, classification)
    if unit is not None:
        row.unit = check_unit(unit)
    if groups is not None:
        row.groups = check_groups(groups)
    if roles is not None:
        row.roles = check_roles(roles)
    if disabled is not None:
        row.disabled = disabled
    session.flush()
    return user_info(row)


def list_users(session: Session) -> list[UserInfo]:
    return [user_info(r) for r in session.scalars(select(UserRow).order_by(UserRow.user_id))]


def active_principal(session: Session, user_id: str) -> Principal | None:
    """The principal of an enabled user, or None (unknown or disabled)."""
    return _enabled_principal(session.get(UserRow, user_id))


def _enabled_principal(row: UserFields | None) -> Principal | None:
    return principal_of(row) if row is not None and not row.disabled else None


# ---- API keys --------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    user_id: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "user_id": self.user_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _key_info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id, user_id=row.user_id, created_at=row.created_at, revoked_at=row.revoked_at
    )


def _digest(salt_hex: str, key_id: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt_hex), f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def create_key(session: Session, *, user_id: str) -> tuple[KeyInfo, str]:
    """A new key for an existing user: (its info, the key itself, shown once and never stored)."""
    get_user(session, user_id)
    key_id, secret, salt = (
        secrets.token_hex(_KEY_ID_HEX // 2),
        secrets.token_urlsafe(32),
        secrets.token_hex(16),
    )
    row = ApiKeyRow(
        key_id=key_id, user_id=user_id, salt=salt, digest=_digest(salt, key_id, secret), created_at=_utcnow()
    )
    session.add(row)
    session.flush()
    return _key_info(row), f"{KEY_PREFIX}{key_id}_{secret}"


def revoke_key(session: Session, *, key_id: str) -> KeyInfo:
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound()
    if row.revoked_at is None:
        row.revoked_at = _utcnow()
    session.flush()
    return _key_info(row)


def get_key(session: Session, key_id: str) -> KeyInfo:
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound()
    return _key_info(row)


def list_keys(session: Session, *, user_id: str | None = None) -> list[KeyInfo]:
    statement = select(ApiKeyRow).order_by(ApiKeyRow.user_id, ApiKeyRow.created_at)
    if user_id is not None:
        statement = statement.where(ApiKeyRow.user_id == user_id)
    return [_key_info(r) for r in session.scalars(statement)]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def key_id_of(token: str) -> str | None:
    match = _KEY.fullmatch(token)
    return match.group(1) if match else None


@dataclass(frozen=True)
class KeyCheck:
    principal: Principal | None
    failure: str | None
    key_id: str | None


# The key and its user in one query, built once: every request runs it.
_KEYS, _USERS = cast(Table, ApiKeyRow.__table__), cast(Table, UserRow.__table__)
_KEY_AND_USER = (
    select(_KEYS.c.salt, _KEYS.c.digest, _KEYS.c.revoked_at, *(_USERS.c[name] for name in _PRINCIPAL_FIELDS))
    .select_from(_KEYS.outerjoin(_USERS, _USERS.c.user_id == _KEYS.c.user_id))
    .where(_KEYS.c.key_id == bindparam("key_id"))
)


def check_api_key(engine: Engine, token: str) -> KeyCheck:
    """Resolve an API key to its user's principal; every failure does the same hashing work.

    Every request runs this: one query for the key and its user, compiled once and run on the
    database driver (`kms.db.driver`), a fraction of what SQLAlchemy's execution of it costs."""
    key_id, secret, well_formed = _parse_key(token)
    row = None
    if key_id:
        with driver_transaction(engine) as cursor:
            row = _key_and_user_for(engine.dialect).first(cursor, key_id=key_id)
    return _judge_key(row, key_id, secret, well_formed)


@functools.lru_cache(maxsize=32)
def _key_and_user_for(dialect: Dialect) -> DriverStatement:
    return compile_for(dialect, _KEY_AND_USER)


def _parse_key(token: str) -> tuple[str, str, bool]:
    """(key id, secret, well formed?); a malformed token has no key id and is all secret."""
    match = _KEY.fullmatch(token)
    return (match.group(1), match.group(2), True) if match else ("", token, False)


def _judge_key(row: Any, key_id: str, secret: str, well_formed: bool) -> KeyCheck:
    """The answer for a key given its row (None: no such key id), hashing the secret either way."""
    salt, stored = (row.salt, row.digest) if row is not None else (_DUMMY_SALT, _DUMMY_DIGEST)
    matches = hmac.compare_digest(_digest(salt, key_id, secret), stored)
    if row is None or not matches:
        return KeyCheck(None, "unknown key" if well_formed else "malformed key", key_id or None)
    if row.revoked_at is not None:
        return KeyCheck(None, "revoked key", key_id)
    principal = _enabled_principal(row if row.user_id is not None else None)
    if principal is None:
        return KeyCheck(None, "disabled user", key_id)
    return KeyCheck(principal, None, key_id)
