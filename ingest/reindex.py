"""Rebuild the whole index from the registry and the stored originals, then swap it in.

Search keeps answering from the live collection (with the model it was built with) until the new
collection is complete; the alias swap is atomic.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ingest.components.chunk_writer import WRITE_LOCK
from ingest.pipeline import build_pipeline, run_pipeline
from ingest.runner import BATCH_FILES, Progress
from kms.db.models import DocumentRow
from kms.db.registry import indexed_documents
from kms.services import Services

log = logging.getLogger(__name__)


def reindex(services: Services, progress: Progress | None = None) -> dict[str, Any]:
    store = services.store
    for leftover in store.other_collections():  # a reindex that crashed earlier
        store.drop_collection(leftover)
    embedder = services.embedder
    target = store.create_collection(embedder.name, embedder.dim)
    with services.sessions() as session:
        rows = indexed_documents(session)
    pipeline = build_pipeline(services, embedder=embedder, collection=target)
    written, failed = 0, list[dict[str, str]]()
    with tempfile.TemporaryDirectory(prefix="kms-reindex-") as tmp:
        for start in range(0, len(rows), BATCH_FILES):
            batch = rows[start : start + BATCH_FILES]
            sources, metas = _materialise(services, batch, Path(tmp), failed)
            outcome = run_pipeline(pipeline, sources, metas)
            written += sum(w["chunks"] for w in outcome["written"])
            failed.extend(outcome["failed"])
            if progress:
                progress(min(start + BATCH_FILES, len(rows)), len(rows))
    # Catch up with what changed while the rebuild ran (documents a worker added, replaced, deleted
    # or re-classified): once in bulk, then again with this process's index writes paused, and swap.
    caught = catch_up(services, target)
    with WRITE_LOCK:
        caught += catch_up(services, target)
        old = store.active_collection()
        store.swap_alias(target)
        services.active_model = embedder.name
    if old:
        store.drop_collection(old)
    return {
        "collection": target,
        "documents": len(rows),
        "chunks": written,
        "caught_up": caught,
        "failed": failed,
    }


def catch_up(services: Services, target: str) -> int:
    """Make the collection being built agree with the registry as it is now; returns fixes made."""
    from ingest.check import check

    report = check(services, repair=True, collection=target)
    if report.problems:
        log.warning("reindex: %s problem(s) left in %s", len(report.problems), target)
    return len(report.repaired)


def _materialise(
    services: Services, rows: list[DocumentRow], tmp: Path, failed: list[dict[str, str]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Link each original under its file name (type detection looks at the name too)."""
    sources, metas = [], []
    for row in rows:
        original = services.originals.path(row.original_sha256 or "")
        if not row.original_sha256 or not original.exists():
            failed.append({"source_path": row.source_path or row.doc_id, "error": "original file is missing"})
            continue
        folder = tmp / row.doc_id
        folder.mkdir()
        link = folder / (row.file_name or "document.txt")
        link.symlink_to(original)
        meta = {k: v for k, v in row.as_meta().items() if v not in (None, "")}
        meta.update(
            sha256=row.sha256, meta_hash=row.meta_hash, original_path=row.source_path, file_name=row.file_name
        )
        sources.append(str(link))
        metas.append(meta)
    return sources, metas
