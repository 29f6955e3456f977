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
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from kms.db.security_models import AuditHeadRow, AuditRow
from kms.errors import KmsError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_HEAD_ID = 1
_LOCK = threading.Lock()
_ATTEMPTS = 20
SessionFactory = Callable[[], Session]


class AuditBroken(KmsError):
    """The log cannot be appended to safely; audited operations stop until it is looked at."""


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(
    *, id: int, ts: str, actor: str, action: str, target: str | None, detail: Any, prev_hash: str
) -> str:
    body = {
        "id": id,
        "ts": ts,
        "actor": actor,
        "action": action,
        "target": target,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def _normalise_detail(detail: dict[str, Any] | None) -> tuple[str, Any]:
    """Canonical text of `detail` and the JSON value it parses back to (what gets hashed)."""
    text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
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
    with _LOCK:
        for attempt in range(_ATTEMPTS):
            try:
                return _append_once(sessions, actor, action, target, detail_text, detail_value)
            except (IntegrityError, OperationalError):  # another process appended first, or a busy lock
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


def _append_once(
    sessions: SessionFactory, actor: str, action: str, target: str | None, detail_text: str, detail: Any
) -> AuditRecord:
    # Core statements rather than ORM objects: every search appends a record, and the ORM's unit of
    # work cost about twice as much per append.
    head_table, log_table = cast(Table, AuditHeadRow.__table__), cast(Table, AuditRow.__table__)
    with sessions() as session:
        try:
            # Write first: this takes the database's write lock (SQLite) or the head row's lock
            # (PostgreSQL), so the head read below is the latest and no one appends in between.
            session.execute(
                update(head_table).where(head_table.c.id == _HEAD_ID).values(last_id=head_table.c.last_id)
            )
            head = session.execute(
                select(head_table.c.last_id, head_table.c.last_hash).where(head_table.c.id == _HEAD_ID)
            ).first()
            if head is None:
                if session.execute(select(log_table.c.id).limit(1)).first() is not None:
                    # Recreating it would hide a cut-off tail: stop, and let a person investigate.
                    raise AuditBroken("the audit log head is missing: run `kms audit verify`")
                session.execute(insert(head_table).values(id=_HEAD_ID, last_id=0, last_hash=GENESIS))
            last_id, prev_hash = (int(head.last_id), str(head.last_hash)) if head else (0, GENESIS)
            common: dict[str, Any] = {
                "id": last_id + 1,
                "ts": _now(),
                "actor": actor,
                "action": action,
                "target": target,
                "prev_hash": prev_hash,
            }
            digest = record_hash(**common, detail=detail)
            session.execute(insert(log_table).values(**common, detail=detail_text, hash=digest))
            session.execute(
                update(head_table)
                .where(head_table.c.id == _HEAD_ID)
                .values(last_id=common["id"], last_hash=digest)
            )
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return AuditRecord(
            **common, detail=detail if isinstance(detail, dict) else {"value": detail}, hash=digest
        )


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
