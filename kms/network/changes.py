"""The change log: one row per document change, written in the registry's own transaction.

`record_change` is called by the code that commits a document (ChunkWriter, delete, set-access,
and the replication apply at HQ) right before its commit, so a change is in the log iff the registry
row it describes is committed. Readers compact the log: only a document's latest change after a
cursor matters, because what is served is the document's state now (its earlier versions' chunks
no longer exist anywhere).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kms.db.models import DocumentRow
from kms.db.network_models import ChangeHeadRow, ChangeRow

KINDS = ("upsert", "access", "delete")
_HEAD = 1


def _ensure_head(session: Session) -> None:
    """Create the head row if missing, inside the caller's transaction and race-free."""
    values = {"id": _HEAD, "last_seq": 0, "log_id": secrets.token_hex(8)}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite_insert(ChangeHeadRow).values(**values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        session.execute(pg_insert(ChangeHeadRow).values(**values).on_conflict_do_nothing())
    elif session.get(ChangeHeadRow, _HEAD) is None:
        session.add(ChangeHeadRow(**values))
        session.flush()


def record_change(session: Session, row: DocumentRow, kind: str) -> int:
    """Append a change for `row` (its state as about to be committed); returns its seq.

    Takes the head row's lock (SQLite: the write lock) until the caller commits, so seqs are
    assigned in commit order. Call it last before `session.commit()`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    session.flush()
    _ensure_head(session)
    seq = session.execute(
        update(ChangeHeadRow)
        .where(ChangeHeadRow.id == _HEAD)
        .values(last_seq=ChangeHeadRow.last_seq + 1)
        .returning(ChangeHeadRow.last_seq)
    ).scalar_one()
    session.add(
        ChangeRow(
            seq=int(seq),
            doc_id=row.doc_id,
            kind=kind,
            version=row.version,
            classification=row.classification,
            allow=list(row.allow or []) if kind != "delete" else [],
            origin_node=row.origin_node,
            created_ts=time.time(),
        )
    )
    return int(seq)


@dataclass(frozen=True)
class LogHead:
    log_id: str
    seq: int


def head(session: Session) -> LogHead:
    row = session.get(ChangeHeadRow, _HEAD)
    if row is None:
        return LogHead(log_id="", seq=0)
    return LogHead(log_id=row.log_id, seq=int(row.last_seq))


def ensure_log(session: Session) -> LogHead:
    """The head, creating it (and this node's log id) if no change was ever recorded."""
    current = head(session)
    if current.log_id:
        return current
    _ensure_head(session)
    session.commit()
    return head(session)


@dataclass(frozen=True)
class Pending:
    """A document's latest change after a cursor, with the kinds of all its changes since."""

    doc_id: str
    seq: int
    kinds: frozenset[str]
    created_ts: float


def compacted(
    session: Session, after: int, *, limit: int, origin: str | None = None, local_origin: bool = False
) -> list[Pending]:
    """The first `limit` documents by their latest change after `after`, in that order.

    Every change in (after, result[-1].seq] is covered by one of the results or superseded by a
    later change, so a reader that applies the page may advance its cursor to result[-1].seq.
    `origin`: only documents whose change says they came from there (`local_origin` adds NULL,
    documents ingested before the node had an id).
    """
    statement = select(ChangeRow.doc_id, func.max(ChangeRow.seq).label("last")).where(ChangeRow.seq > after)
    if origin is not None:
        if local_origin:
            statement = statement.where((ChangeRow.origin_node == origin) | ChangeRow.origin_node.is_(None))
        else:
            statement = statement.where(ChangeRow.origin_node == origin)
    rows = session.execute(
        statement.group_by(ChangeRow.doc_id).order_by(func.max(ChangeRow.seq)).limit(limit)
    ).all()
    if not rows:
        return []
    wanted = {str(r.doc_id): int(r.last) for r in rows}
    kinds: dict[str, set[str]] = {doc: set() for doc in wanted}
    created: dict[str, float] = {}
    for doc_id, kind, seq, ts in session.execute(
        select(ChangeRow.doc_id, ChangeRow.kind, ChangeRow.seq, ChangeRow.created_ts).where(
            ChangeRow.doc_id.in_(list(wanted)), ChangeRow.seq > after, ChangeRow.seq <= max(wanted.values())
        )
    ):
        if seq <= wanted[doc_id]:
            kinds[doc_id].add(kind)
        if seq == wanted[doc_id]:
            created[doc_id] = float(ts)
    return [
        Pending(doc_id=doc, seq=seq, kinds=frozenset(kinds[doc]), created_ts=created.get(doc, 0.0))
        for doc, seq in sorted(wanted.items(), key=lambda item: item[1])
    ]


def backlog(session: Session, after: int, *, origin: str | None = None) -> tuple[int, float | None]:
    """(documents with changes after `after`, time of the oldest such change) — queue depth and lag."""
    statement = select(func.count(func.distinct(ChangeRow.doc_id)), func.min(ChangeRow.created_ts)).where(
        ChangeRow.seq > after
    )
    if origin is not None:
        statement = statement.where((ChangeRow.origin_node == origin) | ChangeRow.origin_node.is_(None))
    count, oldest = session.execute(statement).one()
    return int(count or 0), (float(oldest) if oldest is not None else None)
