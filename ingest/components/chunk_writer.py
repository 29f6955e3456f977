"""ChunkWriter: write a document's chunks to Qdrant and record it in the registry, in a crash-safe order.

Order per document (ARCHITECTURE.md): tighten the access payload of the live chunks first, then
upsert the new version's chunks (deterministic ids), delete every other version's chunks, and only
then commit the registry row. A crash anywhere is repaired by running the same write again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from itertools import groupby
from typing import Any

from haystack import Document, component
from sqlalchemy.orm import Session

from kms.config import Classification
from kms.db.models import DocumentRow
from kms.db.registry import set_allow
from kms.index.store import ChunkPoint, ChunkStore
from kms.text.docnumber import doc_number_key


def access_payload(classification: Classification, level: str | None, allow: list[str]) -> dict[str, Any]:
    """The permission fields every chunk carries (an unknown level has no rank, which hides it)."""
    return {"classification": level, "classification_rank": classification.rank(level), "allow": list(allow)}


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
            if live and self.collection is None:
                self.store.set_payload(
                    doc_id,
                    access_payload(self.classification, meta.get("classification"), meta.get("allow") or []),
                )
                if self.classification.rank(meta.get("classification")) is None:
                    self.store.delete_payload_keys(doc_id, ["classification_rank"])
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
            set_allow(session, row, meta.get("allow") or [])
            session.commit()
        status = "replaced" if live and self.collection is None else "added"
        return {"doc_id": doc_id, "status": status, "chunks": len(chunks), "version": version}


def _fill_row(
    row: DocumentRow, meta: dict[str, Any], classification: Classification, *, version: int, chunk_count: int
) -> None:
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
    row.classification = meta.get("classification")
    row.classification_rank = classification.rank(meta.get("classification"))
    row.owner_unit = meta.get("owner_unit")
    row.source_path = meta.get("source_path")
    row.original_sha256 = meta.get("sha256")
    row.file_name = meta.get("file_name")
    row.origin_node = meta.get("origin_node")
    row.chunk_count = chunk_count
    row.text = str(meta.get("doc_text") or "")
