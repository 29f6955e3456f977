"""Registry reads and writes: plain functions over a session, no HTTP and no Qdrant in here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kms.config import Classification
from kms.db.models import DocumentAccessRow, DocumentRow
from kms.domain import Principal
from kms.security.access import allow_tokens, registry_clause


def get_document(session: Session, doc_id: str) -> DocumentRow | None:
    return session.get(DocumentRow, doc_id)


def readable_document(
    session: Session, doc_id: str, principal: Principal, classification: Classification
) -> DocumentRow | None:
    """The indexed document if `principal` may read it; None whether it is missing or hidden."""
    statement = select(DocumentRow).where(
        DocumentRow.doc_id == doc_id,
        DocumentRow.status == "indexed",
        registry_clause(principal, classification),
    )
    return session.scalars(statement).first()


def readable_ids(session: Session, principal: Principal, classification: Classification) -> set[str]:
    statement = select(DocumentRow.doc_id).where(
        DocumentRow.status == "indexed", registry_clause(principal, classification)
    )
    return set(session.scalars(statement))


def fill_indexed(row: DocumentRow, meta: dict[str, Any], *, version: int, chunk_count: int) -> None:
    """The fields every indexed version sets from its metadata, whether ingested here or replicated.
    Access (classification, allow list), provenance (paths, origin), the text and `indexed_at` are
    the caller's to set."""
    issued = meta.get("issued_date")
    row.version = version
    row.status = "indexed"
    row.error = None
    row.sha256 = str(meta.get("sha256") or "")
    row.meta_hash = str(meta.get("meta_hash") or "")
    row.title = str(meta.get("title") or "")
    row.doc_number = meta.get("doc_number")
    row.doc_type = str(meta.get("doc_type") or "other")
    row.issuer = meta.get("issuer")
    row.issued_date = dt.date.fromisoformat(str(issued)) if issued else None
    row.language = str(meta.get("language") or "vi")
    row.owner_unit = meta.get("owner_unit")
    row.file_name = meta.get("file_name")
    row.chunk_count = chunk_count


def set_allow(session: Session, row: DocumentRow, allow: Sequence[str]) -> None:
    """Store the allow list on the row and as access rows (only a list's well-formed tokens grant access)."""
    row.allow = list(allow) if isinstance(allow, list | tuple) else []
    session.execute(delete(DocumentAccessRow).where(DocumentAccessRow.doc_id == row.doc_id))
    session.flush()
    for token in sorted(allow_tokens(list(row.allow))):
        session.add(DocumentAccessRow(doc_id=row.doc_id, token=token))


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(DocumentRow.status, func.count()).group_by(DocumentRow.status))
    return {status: int(count) for status, count in rows}


def indexed_documents(session: Session) -> list[DocumentRow]:
    return list(
        session.scalars(
            select(DocumentRow).where(DocumentRow.status == "indexed").order_by(DocumentRow.doc_id)
        )
    )
