"""Apply a verified change at the receiving node, idempotently and in the crash-safe order.

Order (ARCHITECTURE.md, as ChunkWriter): tighten the access payload of the live chunks first, then
upsert the version's chunks (deterministic ids, vectors from the bundle), delete every other
version's chunks, and only then commit the registry row, the receiver's position in the author's
log (and, at HQ, the change-log row that republishes it) in one transaction. A crash anywhere is
repaired by applying the same change again; a change at or below the position is never re-applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from ingest.components.chunk_writer import WRITE_LOCK, access_payload, chunk_payload
from kms.db.models import DocumentAccessRow, DocumentRow, utcnow
from kms.db.network_models import ReceivedRow
from kms.db.registry import fill_indexed, set_allow
from kms.errors import Conflict, ModelMismatch
from kms.index.store import ChunkPoint
from kms.network.bundle import Bundle
from kms.network.changes import record_change
from kms.network.envelope import Change
from kms.services import Services

log = logging.getLogger(__name__)
PositionUpdate = Callable[[Session], None]


class NeedContent(Conflict):
    """The receiver does not hold this version's content and no bundle came with the change."""


def _writable(row: DocumentRow | None, received: ReceivedRow | None, source: str) -> bool:
    """A replicated write may touch only what this source sent before, or a document not here."""
    if row is None:
        return True
    if received is not None and received.source == source:
        return True
    return row.status == "deleted" and row.origin_node == source


def content_present(session: Session, change: Change, source: str) -> bool:
    """Does this node already hold exactly the version and content `change` names (from `source`)?"""
    received = session.get(ReceivedRow, change.doc_id)
    row = session.get(DocumentRow, change.doc_id)
    return (
        row is not None
        and row.status == "indexed"
        and received is not None
        and received.source == source
        and received.version == change.version
        and received.content_sha256 == change.content_sha256
    )


def apply_upsert(
    services: Services,
    change: Change,
    bundle: Bundle | None,
    *,
    source: str,
    position: PositionUpdate,
    record: bool,
    model: tuple[str, int] | None = None,
) -> str:
    """Write the document `change` describes; returns `added`, `replaced`, `access` or `unchanged`.

    `model`: the (name, dim) of this node's index when the caller knows it (else it is looked up).
    """
    classification = services.classification
    level, allow = change.classification, list(change.allow)
    with WRITE_LOCK, services.sessions() as session:  # never between a reindex's catch-up and swap
        row = session.get(DocumentRow, change.doc_id)
        received = session.get(ReceivedRow, change.doc_id)
        if not _writable(row, received, source):
            raise Conflict(f"{change.doc_id} exists here and did not come from {source}")
        if content_present(session, change, source):
            assert row is not None
            if row.classification == level and list(row.allow or []) == allow:
                position(session)
                session.commit()
                return "unchanged"
            services.store.set_payload(change.doc_id, access_payload(classification, level, allow))
            if classification.rank(level) is None:
                services.store.delete_payload_keys(change.doc_id, ["classification_rank"])
            row.classification = level
            row.classification_rank = classification.rank(level)
            set_allow(session, row, allow)
            _received(session, change, source)
            if record:
                record_change(session, row, "access")
            position(session)
            session.commit()
            return "access"
        if bundle is None:
            raise NeedContent(f"{change.doc_id} v{change.version}: content needed")
        _check_bundle(services, change, bundle, model)
        if bundle.original is not None:
            services.originals.put(bundle.original)
        live = row is not None and row.status == "indexed"
        if live:  # tighten first: old chunks never stay looser than the registry
            services.store.set_payload(change.doc_id, access_payload(classification, level, allow))
            if classification.rank(level) is None:
                services.store.delete_payload_keys(change.doc_id, ["classification_rank"])
        meta = dict(bundle.meta)
        meta.update(doc_id=change.doc_id, classification=level, allow=allow)
        points = [
            ChunkPoint(
                doc_id=change.doc_id,
                version=change.version,
                chunk_no=chunk.chunk_no,
                dense=chunk.dense,
                sparse=chunk.sparse,
                payload=chunk_payload(
                    {**meta, "chunk_no": chunk.chunk_no, "heading": chunk.heading}
                    | {"start": chunk.start, "end": chunk.end},
                    chunk.text,
                    change.version,
                    classification,
                ),
            )
            for chunk in bundle.chunks
        ]
        services.store.upsert(points)
        services.store.delete_document(change.doc_id, except_version=change.version)
        if row is None:
            row = DocumentRow(doc_id=change.doc_id)
            session.add(row)
        _fill(row, meta, change, classification.rank(level), len(points))
        set_allow(session, row, allow)
        _received(session, change, source)
        if record:
            record_change(session, row, "upsert")
        position(session)
        session.commit()
    return "replaced" if live else "added"


def _check_bundle(services: Services, change: Change, bundle: Bundle, known: tuple[str, int] | None) -> None:
    if bundle.doc_id != change.doc_id or bundle.version != change.version:
        raise Conflict(
            f"bundle is {bundle.doc_id} v{bundle.version}, change is {change.doc_id} v{change.version}"
        )
    if known is None:
        info = services.store.info()
        known = (info.model, info.dim) if info else (services.settings.embedder, 0)
    model, dim = known
    if bundle.model != model or bundle.dim != dim:
        raise ModelMismatch(
            f"{change.origin} sends vectors of {bundle.model!r} ({bundle.dim} dims) but this node's index "
            f"uses {model!r} ({dim} dims): every node of the network must run the same KMS_EMBEDDER "
            "(change it everywhere and run `kms reindex` on each node)"
        )


def _fill(row: DocumentRow, meta: dict[str, Any], change: Change, rank: int | None, chunks: int) -> None:
    fill_indexed(row, meta, version=change.version, chunk_count=chunks)
    row.classification = change.classification
    row.classification_rank = rank
    row.source_path = None  # the author's file paths stay with the author
    row.original_sha256 = meta.get("original_sha256")
    row.origin_node = meta.get("origin_node") or change.origin
    row.text = str(meta.get("text") or "")
    row.indexed_at = utcnow()


def _received(session: Session, change: Change, source: str) -> None:
    received = session.get(ReceivedRow, change.doc_id)
    if received is None:
        received = ReceivedRow(doc_id=change.doc_id)
        session.add(received)
    received.source = source
    received.version = change.version
    received.content_sha256 = change.content_sha256 or ""
    received.seq = change.seq
    received.received_ts = time.time()


def apply_delete(
    services: Services,
    doc_id: str,
    *,
    source: str,
    position: PositionUpdate,
    purge: bool,
    record: bool,
) -> str:
    """Withdraw a document `source` sent: `purge` erases it (a mission), else tombstone it (HQ).

    Returns `deleted` or `absent` (nothing to do: never held, or already gone).
    """
    original: str | None = None
    with WRITE_LOCK, services.sessions() as session:
        if purge and session.get_bind().dialect.name == "sqlite":
            session.execute(text("PRAGMA secure_delete=ON"))  # freed pages are zeroed, not left readable
        row = session.get(DocumentRow, doc_id)
        received = session.get(ReceivedRow, doc_id)
        if row is None or (row.status == "deleted" and not purge):
            if received is not None and received.source == source:
                session.delete(received)
            position(session)
            session.commit()
            return "absent"
        if not _writable(row, received, source):
            raise Conflict(f"{doc_id} exists here and did not come from {source}")
        services.store.delete_document(doc_id)
        session.execute(delete(DocumentAccessRow).where(DocumentAccessRow.doc_id == doc_id))
        if received is not None:
            session.delete(received)
        if purge:
            original = row.original_sha256
            session.delete(row)
        else:
            row.status = "deleted"
            row.chunk_count = 0
            if record:
                record_change(session, row, "delete")
        position(session)
        session.commit()
        if original:
            still_used = session.scalars(
                select(DocumentRow.doc_id).where(DocumentRow.original_sha256 == original).limit(1)
            ).first()
            if still_used is None:
                services.originals.path(original).unlink(missing_ok=True)
    return "deleted"
