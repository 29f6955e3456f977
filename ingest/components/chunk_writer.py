"""ChunkWriter: write a document's chunks to Qdrant and record it in the registry, in a crash-safe order.

Order per document (ARCHITECTURE.md): tighten the access payload of the live chunks first, then
upsert the new version's chunks (deterministic ids), delete every other version's chunks, and only
then commit the registry row. A crash anywhere is repaired by running the same write again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import groupby
from typing import Any

from haystack import Document, component
from qdrant_client import models
from sqlalchemy.orm import Session

from kms.config import Classification
from kms.db.models import DocumentRow, utcnow
from kms.db.registry import fill_indexed, set_allow
from kms.index.base import doc_condition, version_condition
from kms.index.store import ChunkPoint, ChunkStore
from kms.network.changes import record_change
from kms.security.access import allow_tokens, document_rank
from kms.text.docnumber import doc_number_key

# Index writes of this process (document writes, deletes, the final catch-up and swap of a reindex)
# take this lock, so a reindex can swap collections between two writes of an in-process worker.
WRITE_LOCK = threading.RLock()


def access_payload(classification: Classification, level: str | None, allow: object) -> dict[str, Any]:
    """The permission fields every chunk carries (an unknown level has no rank, which hides it).

    Only a list's well-formed tokens are kept: a malformed allow value (a string, a mapping) must
    never turn into tokens that grant access.
    """
    return {
        "classification": level,
        "classification_rank": document_rank(classification, level),
        "allow": allow_tokens(allow),
    }


def strictest_access(
    classification: Classification,
    old: tuple[str | None, object],
    new: tuple[str | None, object],
) -> dict[str, Any]:
    """Access as strict as both (level, allow) pairs: the higher level (an unknown one hides the
    document) and only the tokens both allow lists share."""
    old_rank = document_rank(classification, old[0])
    new_rank = document_rank(classification, new[0])
    level: str | None = None
    if old_rank is not None and new_rank is not None:
        level = old[0] if old_rank >= new_rank else new[0]
    shared = set(allow_tokens(new[1]))
    return access_payload(classification, level, [t for t in allow_tokens(old[1]) if t in shared])


def chunk_payload(
    meta: dict[str, Any], text: str, version: int, classification: Classification
) -> dict[str, Any]:
    issued = meta.get("issued_date")
    payload: dict[str, Any] = {
        "doc_id": meta["doc_id"],
        "version": version,
        "chunk_no": meta["chunk_no"],
        "text": text,
        "heading": meta.get("heading") or "",
        "title": meta.get("title") or "",
        "doc_number": meta.get("doc_number"),
        "doc_number_key": doc_number_key(meta["doc_number"]) if meta.get("doc_number") else None,
        "doc_type": meta.get("doc_type") or "other",
        "issuer": meta.get("issuer"),
        "issued_date": issued,
        "year": int(str(issued)[:4]) if issued else None,
        "language": meta.get("language") or "vi",
        "owner_unit": meta.get("owner_unit"),
        "origin_node": meta.get("origin_node"),
        "start": meta.get("start", 0),
        "end": meta.get("end", 0),
    }
    payload.update(access_payload(classification, meta.get("classification"), meta.get("allow") or []))
    if payload["classification_rank"] is None:
        del payload["classification_rank"]  # absent, not null: a range condition can never match it
    return payload


@component
class ChunkWriter:
    """Persist embedded chunks document by document; see the module docstring for the write order.

    Usage: `ChunkWriter(store=store, sessions=factory, classification=levels).run(documents=chunks)`
    """

    def __init__(
        self,
        *,
        store: ChunkStore,
        sessions: Callable[[], Session],
        classification: Classification,
        collection: str | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.classification = classification
        self.collection = collection  # None: the live alias; a name: a collection being rebuilt

    def to_dict(self) -> dict[str, Any]:
        # Holds live connections: serialise its kind only; pipelines are built in code (ingest/pipeline.py).
        return {"type": f"{__name__}.ChunkWriter", "init_parameters": {"collection": self.collection}}

    @component.output_types(written=list[dict[str, Any]])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: embedded chunks, all chunks of a document together.
        :returns: `written`: one `{"doc_id", "status": "added"|"replaced", "chunks", "version"}` per document.
        """
        written = []
        for doc_id, group in groupby(documents, key=lambda d: str(d.meta["doc_id"])):
            with WRITE_LOCK:
                written.append(self._write_document(doc_id, list(group)))
        return {"written": written}

    def _write_document(self, doc_id: str, chunks: list[Document]) -> dict[str, Any]:
        meta = chunks[0].meta
        with self.sessions() as session:
            row = session.get(DocumentRow, doc_id)
            live = row is not None and row.status == "indexed"
            version = (row.version + 1) if row is not None else 1
            if self.collection is not None and row is not None:
                version = row.version  # rebuilding: same version, new collection
            if live and self.collection is None and row is not None:
                # Tighten only: until the new version is in, the old chunks carry access at least as
                # strict as both the old and the new (a declassified, redacted version must never
                # make the unredacted old text visible to its new readers, even after a crash).
                tightened = strictest_access(
                    self.classification,
                    (row.classification, list(row.allow or [])),
                    (meta.get("classification"), meta.get("allow") or []),
                )
                self.store.set_payload(doc_id, tightened)
                if tightened["classification_rank"] is None:
                    self.store.delete_payload_keys(doc_id, ["classification_rank"])
            if self.collection is None:
                # Chunks already at this version are leftovers of a write that crashed before the
                # registry commit, possibly of other content: never mix them in, take a fresh number.
                while self.store.count(
                    models.Filter(must=[doc_condition(doc_id), version_condition(version)])
                ):
                    version += 1
            points = [
                ChunkPoint(
                    doc_id=doc_id,
                    version=version,
                    chunk_no=int(c.meta["chunk_no"]),
                    dense=list(c.embedding or []),
                    sparse=c.meta["sparse"],
                    payload=chunk_payload(c.meta, c.content or "", version, self.classification),
                )
                for c in chunks
            ]
            self.store.upsert(points, collection=self.collection)
            self.store.delete_document(doc_id, except_version=version, collection=self.collection)
            if row is None:
                row = DocumentRow(doc_id=doc_id)
                session.add(row)
            _fill_row(row, meta, self.classification, version=version, chunk_count=len(chunks))
            if self.collection is None:  # new content, not a rebuild of the same version
                row.indexed_at = utcnow()
            set_allow(session, row, meta.get("allow") or [])
            if self.collection is None:  # the change feed (kms/network), in the registry's transaction
                record_change(session, row, "upsert")
            session.commit()
        status = "replaced" if live and self.collection is None else "added"
        return {"doc_id": doc_id, "status": status, "chunks": len(chunks), "version": version}


def _fill_row(
    row: DocumentRow, meta: dict[str, Any], classification: Classification, *, version: int, chunk_count: int
) -> None:
    fill_indexed(row, meta, version=version, chunk_count=chunk_count)
    row.classification = meta.get("classification")
    row.classification_rank = classification.rank(meta.get("classification"))
    row.source_path = meta.get("original_path") or meta.get("source_path")  # not the temporary link
    row.original_sha256 = meta.get("sha256")
    row.origin_node = meta.get("origin_node")
    row.text = str(meta.get("doc_text") or "")
