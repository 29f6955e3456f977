"""Ingest files, delete documents and rebuild the index: the code every entry point runs.

`kms ingest`, the API and (later) the job worker all call these functions, so an operator's
synchronous ingest and a queued upload behave the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from ingest import metadata
from ingest.converters import SUPPORTED_EXTENSIONS
from ingest.pipeline import build_pipeline, run_pipeline
from kms.db.models import DocumentAccessRow, DocumentRow
from kms.errors import IngestError, NotFound
from kms.originals import sha256_bytes
from kms.services import Services

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
BATCH_FILES = 16


@dataclass
class FileResult:
    path: str
    doc_id: str | None
    status: str  # added | unchanged | replaced | failed
    chunks: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Prepared:
    path: Path
    meta: dict[str, Any]


def expand(paths: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """Yield (file, root) for every ingestible file; folders are walked in sorted order."""
    for given in paths:
        path = given.expanduser().absolute()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = child.relative_to(path)
                if any(part.startswith(".") for part in relative.parts) or metadata.is_sidecar(child):
                    continue
                yield child, path
        elif not metadata.is_sidecar(path):
            yield path, path.parent


def ingest_paths(
    services: Services,
    paths: Iterable[Path],
    overrides: dict[str, Any] | None = None,
    *,
    progress: Progress | None = None,
) -> list[FileResult]:
    files = list(expand(paths))
    results: list[FileResult] = []
    pending: list[_Prepared] = []
    seen_ids: set[str] = set()
    for path, root in files:
        prepared, result = _prepare(services, path, root, overrides or {}, seen_ids)
        if result is not None:
            results.append(result)
        if prepared is not None:
            pending.append(prepared)
    done = len(results)
    if progress:
        progress(done, len(files))
    pipeline = build_pipeline(services) if pending else None
    for start in range(0, len(pending), BATCH_FILES):
        batch = pending[start : start + BATCH_FILES]
        assert pipeline is not None
        results.extend(_run_batch(pipeline, batch))
        done += len(batch)
        if progress:
            progress(done, len(files))
    order = {str(path): i for i, (path, _root) in enumerate(files)}
    return sorted(results, key=lambda r: order.get(r.path, 0))


def _prepare(
    services: Services, path: Path, root: Path, overrides: dict[str, Any], seen_ids: set[str]
) -> tuple[_Prepared | None, FileResult | None]:
    try:
        if not path.is_file():
            raise IngestError("no such file")
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS and path.suffix:
            raise IngestError(f"unsupported file type {path.suffix!r}")
        meta = metadata.resolve(path, root, overrides, services.classification)
        if path.stat().st_size > services.settings.max_upload_bytes:
            raise IngestError(f"file is larger than the limit of {services.settings.max_upload_bytes} bytes")
        data = path.read_bytes()
    except (IngestError, OSError) as exc:
        return None, FileResult(path=str(path), doc_id=None, status="failed", error=_reason(exc))
    doc_id = str(meta["doc_id"])
    if doc_id in seen_ids:
        return None, FileResult(
            path=str(path), doc_id=doc_id, status="failed", error=f"duplicate doc_id {doc_id!r} in this batch"
        )
    seen_ids.add(doc_id)
    digest, given_hash = sha256_bytes(data), metadata.meta_hash(meta)
    with services.sessions() as session:
        row = session.get(DocumentRow, doc_id)
        if (
            row is not None
            and row.status == "indexed"
            and row.sha256 == digest
            and row.meta_hash == given_hash
        ):
            return None, FileResult(path=str(path), doc_id=doc_id, status="unchanged", chunks=row.chunk_count)
    services.originals.put(data)  # the original is kept before anything is indexed from it
    meta.update(sha256=digest, meta_hash=given_hash, source_path=str(path), file_name=path.name)
    return _Prepared(path=path, meta=meta), None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return str(exc)


def _run_batch(pipeline: Any, batch: list[_Prepared]) -> list[FileResult]:
    by_source = {str(p.path): p for p in batch}
    try:
        outcome = run_pipeline(pipeline, list(by_source), [p.meta for p in batch])
    except Exception as exc:  # one broken batch must not stop the rest: retry file by file
        if len(batch) == 1:
            log.exception("ingestion failed for %s", batch[0].meta.get("doc_id"))
            return [
                FileResult(
                    path=str(batch[0].path),
                    doc_id=batch[0].meta["doc_id"],
                    status="failed",
                    error=f"internal error: {exc}",
                )
            ]
        return [r for p in batch for r in _run_batch(pipeline, [p])]
    results = []
    for failure in outcome["failed"]:
        prepared = by_source.get(failure["source_path"])
        results.append(
            FileResult(
                path=failure["source_path"],
                doc_id=prepared.meta["doc_id"] if prepared else None,
                status="failed",
                error=failure["error"],
            )
        )
    sources = {p.meta["doc_id"]: str(p.path) for p in batch}
    for written in outcome["written"]:
        results.append(
            FileResult(
                path=sources[written["doc_id"]],
                doc_id=written["doc_id"],
                status=written["status"],
                chunks=written["chunks"],
            )
        )
    return results


def delete_document(services: Services, doc_id: str) -> None:
    """Remove a document's chunks, then tombstone its registry row (the original stays in the store)."""
    with services.sessions() as session:
        row = session.get(DocumentRow, doc_id)
        if row is None or row.status == "deleted":
            raise NotFound()
        services.store.delete_document(doc_id)
        row.status = "deleted"
        row.chunk_count = 0
        session.execute(delete(DocumentAccessRow).where(DocumentAccessRow.doc_id == doc_id))
        session.commit()
