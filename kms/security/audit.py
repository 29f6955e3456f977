"""The append-only, hash-chained audit log: `append` a record, `verify` the chain, `records` to read it.

Each record stores the hash of the previous one; its own hash is sha256 over the canonical JSON of
(id, ts, actor, action, target, detail, prev_hash). Ids are consecutive from 1 and the `audit_head`
row names the last record, so `verify` reports the first record that was altered, removed or
reordered, and a cut-off tail.

Appending is safe from several threads (a process lock) and several processes: the transaction
starts by writing the head row, which takes SQLite's write lock or PostgreSQL's row lock, and a
lost race (duplicate id) is retried. Never put document text, keys or tokens into `detail`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kms.db.driver import DriverStatement, compile_for, driver_errors, driver_transaction
from kms.db.security_models import AuditHeadRow, AuditRow
from kms.db.session import engine_of
from kms.errors import KmsError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_HEAD_ID = 1
# Held by each append in this process; `kms serve`'s log checkpoints take it for their last pass.
APPEND_LOCK = threading.Lock()
_ATTEMPTS = 20
SessionFactory = sessionmaker[Session]


class AuditBroken(KmsError):
    """The log cannot be appended to safely; audited operations stop until it is looked at."""


# Built once: `json.dumps` with options makes a new encoder on every call, and every search appends.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_LENIENT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


def record_hash(
    *, id: int, ts: str, actor: str, action: str, target: str | None, detail: Any, prev_hash: str
) -> str:
    return chain_hash(
        id=id,
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        detail_text=canonical(detail),
        prev_hash=prev_hash,
    )


def chain_hash(
    *, id: int, ts: str, actor: str, action: str, target: str | None, detail_text: str, prev_hash: str
) -> str:
    """sha256 of the canonical JSON of the record, given its detail's canonical JSON: the record's
    keys in sorted order around that text, so the detail is not serialised a second time."""
    text = (
        f'{{"action":{canonical(action)},"actor":{canonical(actor)},"detail":{detail_text},'
        f'"id":{canonical(id)},"prev_hash":{canonical(prev_hash)},"target":{canonical(target)},'
        f'"ts":{canonical(ts)}}}'
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise_detail(detail: dict[str, Any] | None) -> tuple[str, Any]:
    """Canonical text of `detail` and the JSON value it parses back to (what gets hashed)."""
    text = _LENIENT.encode(detail or {})
    value = json.loads(text)
    return canonical(value), value


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditRecord:
    id: int
    ts: str
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _record(row: AuditRow) -> AuditRecord:
    try:
        detail = json.loads(row.detail)
    except (TypeError, ValueError):
        detail = {"unreadable": row.detail}
    return AuditRecord(
        id=row.id,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=detail if isinstance(detail, dict) else {"value": detail},
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def append(
    sessions: SessionFactory,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one record and return it; raises if it cannot be stored (callers must not go on)."""
    detail_text, detail_value = _normalise_detail(detail)
    actor, target = actor[:300], (target[:300] if target is not None else None)
    engine = engine_of(sessions)
    retry_on: tuple[type[Exception], ...] = (IntegrityError, OperationalError, *driver_errors(engine.dialect))
    with APPEND_LOCK:
        for attempt in range(_ATTEMPTS):
            try:
                return _append_once(engine, actor, action, target, detail_text, detail_value)
            except retry_on:  # another process appended first, or a busy lock
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


_HEAD = cast(Table, AuditHeadRow.__table__)
_LOG = cast(Table, AuditRow.__table__)
_LOG_COLUMNS = ("id", "ts", "actor", "action", "target", "detail", "prev_hash", "hash")


@dataclass(frozen=True)
class _Statements:
    """What an append runs, compiled once per database driver (`kms.db.driver`: every search
    appends, and SQLAlchemy's execution machinery cost more than the statements)."""

    # Writes the head row first, which takes the database's write lock (SQLite) or the row's lock
    # (PostgreSQL): the head it returns is the latest, and no one appends until the commit.
    # RETURNING gives the new id and the previous record's hash (the update leaves the hash alone).
    claim_next_id: DriverStatement
    insert_record: DriverStatement
    set_head_hash: DriverStatement
    any_record: DriverStatement
    create_head: DriverStatement


@functools.lru_cache(maxsize=32)
def _statements(dialect: Dialect) -> _Statements:
    return _Statements(
        claim_next_id=compile_for(
            dialect,
            update(_HEAD)
            .where(_HEAD.c.id == _HEAD_ID)
            .values(last_id=_HEAD.c.last_id + 1)
            .returning(_HEAD.c.last_id, _HEAD.c.last_hash),
        ),
        insert_record=compile_for(dialect, insert(_LOG), column_keys=_LOG_COLUMNS),
        set_head_hash=compile_for(
            dialect, update(_HEAD).where(_HEAD.c.id == _HEAD_ID).values(last_hash=bindparam("digest"))
        ),
        any_record=compile_for(dialect, select(_LOG.c.id).limit(1)),
        create_head=compile_for(
            dialect, insert(_HEAD).values(id=_HEAD_ID, last_id=bindparam("head_last_id"), last_hash=GENESIS)
        ),
    )


def _append_once(
    engine: Engine, actor: str, action: str, target: str | None, detail_text: str, detail: Any
) -> AuditRecord:
    run = _statements(engine.dialect)
    with driver_transaction(engine) as cursor:
        head = run.claim_next_id.execute(cursor).fetchone()
        if head is None:
            if run.any_record.execute(cursor).fetchone() is not None:
                # Recreating it would hide a cut-off tail: stop, and let a person investigate.
                raise AuditBroken("the audit log head is missing: run `kms audit verify`")
            run.create_head.execute(cursor, head_last_id=1)
        record_id, prev_hash = (int(head[0]), str(head[1])) if head else (1, GENESIS)
        common: dict[str, Any] = {
            "id": record_id,
            "ts": _now(),
            "actor": actor,
            "action": action,
            "target": target,
            "prev_hash": prev_hash,
        }
        digest = chain_hash(**common, detail_text=detail_text)
        run.insert_record.execute(cursor, **common, detail=detail_text, hash=digest)
        run.set_head_hash.execute(cursor, digest=digest)
    value = detail if isinstance(detail, dict) else {"value": detail}
    return AuditRecord(**common, detail=value, hash=digest)


def records(
    session: Session,
    *,
    after_id: int = 0,
    limit: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> list[AuditRecord]:
    statement = select(AuditRow).where(AuditRow.id > after_id).order_by(AuditRow.id)
    for column, value in ((AuditRow.actor, actor), (AuditRow.action, action), (AuditRow.target, target)):
        if value is not None:
            statement = statement.where(column == value)
    if limit is not None:
        statement = statement.limit(limit)
    return [_record(row) for row in session.scalars(statement)]


def count(session: Session, *, actor: str | None = None, action: str | None = None) -> int:
    statement = select(func.count()).select_from(AuditRow)
    if actor is not None:
        statement = statement.where(AuditRow.actor == actor)
    if action is not None:
        statement = statement.where(AuditRow.action == action)
    return int(session.scalar(statement) or 0)


def iter_rows(session: Session, batch: int = 1000) -> Iterator[AuditRow]:
    after = None
    while True:
        statement = select(AuditRow).order_by(AuditRow.id).limit(batch)
        if after is not None:
            statement = statement.where(AuditRow.id > after)
        rows = list(session.scalars(statement))
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].id


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_hash": self.head_hash,
            "first_bad_id": self.first_bad_id,
            "problem": self.problem,
        }


def verify(session: Session) -> Verification:
    """Walk the chain from record 1 and report the first broken or missing record."""
    expected_id, prev_hash, seen = 1, GENESIS, 0
    for row in iter_rows(session):
        if row.id != expected_id:  # rows come ordered by id, so this is a gap
            problem = f"record {expected_id} is missing (the next stored record is {row.id})"
            return Verification(False, seen, prev_hash, expected_id, problem)
        if row.prev_hash != prev_hash:
            return Verification(
                False,
                seen,
                prev_hash,
                row.id,
                f"record {row.id} does not follow record {row.id - 1} "
                "(its prev_hash differs: a record was altered, removed or reordered)",
            )
        try:
            detail = json.loads(row.detail)
        except (TypeError, ValueError):
            return Verification(False, seen, prev_hash, row.id, f"record {row.id} has unreadable detail")
        digest = record_hash(
            id=row.id,
            ts=row.ts,
            actor=row.actor,
            action=row.action,
            target=row.target,
            detail=detail,
            prev_hash=row.prev_hash,
        )
        if digest != row.hash:
            return Verification(
                False, seen, prev_hash, row.id, f"record {row.id} was altered (hash mismatch)"
            )
        prev_hash, seen, expected_id = row.hash, seen + 1, expected_id + 1
    head = session.get(AuditHeadRow, _HEAD_ID)
    last_id = expected_id - 1
    if head is None:
        if seen:
            return Verification(False, seen, prev_hash, None, "the audit head record is missing")
        return Verification(True, 0, GENESIS)
    if head.last_id > last_id:
        return Verification(
            False,
            seen,
            prev_hash,
            last_id + 1,
            f"records {last_id + 1}..{head.last_id} are missing (the head names record {head.last_id})",
        )
    if head.last_id < last_id or head.last_hash != prev_hash:
        return Verification(
            False, seen, prev_hash, head.last_id + 1, f"the audit head does not match record {last_id}"
        )
    return Verification(True, seen, prev_hash)
