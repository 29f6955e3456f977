"""Ingest files, delete documents and rebuild the index: the code every entry point runs.

Every ingestion is a job (`ingest.jobs`): `kms ingest` and `ingest_paths` create one and run it in
this process, uploads and source syncs queue one for a worker (`ingest.worker`). Either way the
job's files go through `ingest_specs` here, in batches, from the content store of originals.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from haystack import Document
from sqlalchemy import delete

from ingest import metadata
from ingest.components.chunk_writer import WRITE_LOCK, access_payload
from ingest.files import INGESTIBLE_EXTENSIONS as INGESTIBLE_EXTENSIONS  # re-exported for callers
from ingest.files import Catalog as Catalog
from ingest.files import FileResult as FileResult
from ingest.files import FileSpec as FileSpec
from ingest.files import expand as expand
from ingest.files import mark_duplicates as mark_duplicates
from ingest.files import prepare_file as prepare_file
from ingest.files import prepare_paths as prepare_paths
from ingest.pipeline import Stages, build_stages, run_index, run_prepare
from kms.db.models import DocumentAccessRow, DocumentRow
from kms.db.registry import set_allow
from kms.domain import Principal
from kms.errors import ConfigError, InvalidInput, NotFound
from kms.network.changes import record_change
from kms.security import audit
from kms.security.access import can_delete, is_valid_token
from kms.services import Services

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
BATCH_FILES = 32  # files per batch: embedded together (bigger batches pad less), recorded together


def ingest_paths(
    services: Services,
    paths: Iterable[Path],
    overrides: dict[str, Any] | None = None,
    *,
    progress: Progress | None = None,
    actor: str = "system",
) -> list[FileResult]:
    """Ingest files and folders now, in this process, as a job submitted by `actor` (who may
    replace any document); one audit record per file."""
    from ingest import jobs
    from ingest.worker import run_claimed_job

    specs = prepare_paths(services, paths, overrides)
    job_id, lease = jobs.submit(
        services.sessions,
        specs,
        submitter=Principal.operator(actor),
        priority=jobs.PRIORITY_INTERACTIVE,
        max_attempts=services.settings.job_max_attempts,
        claim_as=jobs.worker_name("ingest"),
        lease_s=services.settings.job_lease_s,
    )
    jobs.audit_refused(services.sessions, job_id, actor=actor)
    if lease is not None:  # None: every file was refused (or there were none), the job is finished
        run_claimed_job(services, lease, progress=progress, raise_errors=True)
    return jobs.file_results(services.sessions, job_id)


def ingest_specs(
    services: Services,
    specs: Sequence[FileSpec],
    *,
    principal: Principal | None = None,
    stages: Stages | None = None,
) -> list[FileResult]:
    """Index files from the content store; one result per spec, in order (see `prepare_specs`)."""
    stages = stages or build_stages(services)
    return index_prepared(
        services, prepare_specs(services, specs, principal=principal, stages=stages), stages
    )


@dataclass
class _Linked:
    index: int
    spec: FileSpec
    link: str
    meta: dict[str, Any]


@dataclass
class PreparedBatch:
    """Files converted and split, ready to embed; `results` holds those already decided."""

    specs: list[FileSpec]
    results: dict[int, FileResult]
    linked: list[_Linked] = field(default_factory=list)
    chunks: list[Document] = field(default_factory=list)
    tmp: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None


def prepare_specs(
    services: Services,
    specs: Sequence[FileSpec],
    *,
    principal: Principal | None = None,
    stages: Stages,
) -> PreparedBatch:
    """Decide what to index and convert it. A file whose content and metadata are already indexed
    is `unchanged`. With a `principal` (the job's submitter) an existing document is replaced only
    if that principal may delete it (`access.can_delete`); otherwise the file fails without saying
    what the document is."""
    batch = PreparedBatch(specs=list(specs), results={})
    runnable: list[tuple[int, FileSpec]] = []
    with services.sessions() as session:
        for index, spec in enumerate(specs):
            doc_id = spec.doc_id
            if spec.error is not None or doc_id is None:
                batch.results[index] = _failed(spec, spec.error or "no doc_id")
                continue
            digest = spec.sha256 or ""
            row = session.get(DocumentRow, doc_id)
            live = row is not None and row.status == "indexed"
            if (
                live
                and principal is not None
                and not principal.is_operator
                and row is not None
                and not can_delete(principal, row.as_meta(), services.classification)
            ):
                batch.results[index] = _failed(
                    spec, f"doc_id {doc_id!r} is not available: choose another doc_id"
                )
            elif (
                live
                and row is not None
                and row.sha256 == digest
                and row.meta_hash == metadata.meta_hash(spec.meta)
            ):
                batch.results[index] = FileResult(spec.path, doc_id, "unchanged", chunks=row.chunk_count)
            elif not digest or not services.originals.exists(digest):
                batch.results[index] = _failed(spec, "the original file is missing from the content store")
            else:
                runnable.append((index, spec))
    if not runnable:
        return batch
    batch.tmp = tempfile.TemporaryDirectory(prefix="kms-ingest-")
    batch.linked = [_materialise(services, Path(batch.tmp.name), index, spec) for index, spec in runnable]
    try:
        outcome = run_prepare(
            stages, [item.link for item in batch.linked], [item.meta for item in batch.linked]
        )
    except Exception:  # one broken file must not stop the rest: convert file by file
        log.exception("preparing a batch failed; retrying file by file")
        outcome = {"documents": [], "failed": []}
        for item in batch.linked:
            try:
                single = run_prepare(stages, [item.link], [item.meta])
            except Exception as exc:
                single = {"documents": [], "failed": [{"source_path": item.link, "error": _internal(exc)}]}
            outcome["documents"] += single["documents"]
            outcome["failed"] += single["failed"]
    by_link = {item.link: item for item in batch.linked}
    for failure in outcome["failed"]:
        failed_item = by_link.get(failure["source_path"])
        if failed_item is not None:
            batch.results[failed_item.index] = _failed(failed_item.spec, failure["error"])
    batch.chunks = list(outcome["documents"])
    return batch


def index_prepared(services: Services, batch: PreparedBatch, stages: Stages) -> list[FileResult]:
    """Embed and write a prepared batch; one result per spec, in order."""
    try:
        by_doc = {item.spec.doc_id: item for item in batch.linked}
        try:
            written = run_index(stages, batch.chunks)
        except Exception:  # one broken document must not stop the rest: retry document by document
            log.exception("indexing a batch failed; retrying document by document")
            written = []
            for doc_id, group in groupby(batch.chunks, key=lambda c: str(c.meta["doc_id"])):
                try:
                    written += run_index(stages, list(group))
                except Exception as exc:
                    log.exception("indexing failed", extra={"doc_id": doc_id})
                    item = by_doc[doc_id]
                    batch.results[item.index] = _failed(item.spec, _internal(exc))
        for entry in written:
            item = by_doc[entry["doc_id"]]
            batch.results[item.index] = FileResult(
                item.spec.path, item.spec.doc_id, entry["status"], chunks=entry["chunks"]
            )
        for item in batch.linked:  # a document the pipeline dropped without a word must not vanish
            batch.results.setdefault(
                item.index, _failed(item.spec, "internal error: no result from the pipeline")
            )
        return [batch.results[index] for index in range(len(batch.specs))]
    finally:
        batch.close()


def _internal(exc: BaseException) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def _failed(spec: FileSpec, error: str) -> FileResult:
    return FileResult(path=spec.path, doc_id=spec.doc_id, status="failed", error=error)


def _materialise(services: Services, tmp: Path, index: int, spec: FileSpec) -> _Linked:
    """Link the original under its file name (type detection looks at the name too)."""
    from ingest.uploads import safe_name

    folder = tmp / str(index)
    folder.mkdir()
    link = folder / safe_name(spec.name, default="document")
    os.symlink(services.originals.path(str(spec.sha256)), link)
    meta = {
        **spec.meta,
        "sha256": spec.sha256,
        "meta_hash": metadata.meta_hash(spec.meta),
        "original_path": spec.path,
        "file_name": spec.name,
        "origin_node": services.settings.node_id,  # documents record the node they were ingested at
    }
    return _Linked(index=index, spec=spec, link=str(link), meta=meta)


def delete_document(
    services: Services,
    doc_id: str,
    *,
    actor: str = "system",
    detail: dict[str, Any] | None = None,
    missing_ok: bool = False,
) -> bool:
    """Remove a document from the index; the registry row is kept as a tombstone (and the original).

    Crash-safe order: hide every chunk (empty allow list) → tombstone the registry row → delete the
    chunks. A crash after the first step leaves a live registry row with hidden chunks (re-run the
    delete); after the second, hidden orphan chunks that `kms check --repair` removes. Returns
    False (or raises NotFound) when there was no live document; its chunks are removed anyway.
    """
    with WRITE_LOCK, services.sessions() as session:
        row = session.get(DocumentRow, doc_id)
        if row is None or row.status == "deleted":
            services.store.delete_document(doc_id)  # finish a delete that crashed half-way
            if missing_ok:
                return False
            raise NotFound()
        services.store.set_payload(doc_id, {"allow": []})
        row.status = "deleted"
        row.chunk_count = 0
        session.execute(delete(DocumentAccessRow).where(DocumentAccessRow.doc_id == doc_id))
        record_change(session, row, "delete")  # the change feed (kms/network), same transaction
        session.commit()
        services.store.delete_document(doc_id)
    audit.append(services.sessions, actor=actor, action="document.delete", target=doc_id, detail=detail)
    return True


def set_access(
    services: Services,
    doc_id: str,
    classification: str,
    allow: Sequence[str],
    *,
    actor: str = "system",
) -> dict[str, Any]:
    """Re-classify a document and/or replace its allow list; every chunk changes before this returns.

    Qdrant first (every chunk of every version, `wait=True`), then the registry row and access rows.
    A crash in between leaves the index at least as strict as the registry for a tightening, and is
    repaired by running the same call again.
    """
    try:
        level = services.classification.parse(classification)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from exc
    tokens = [t.strip() for t in allow if t.strip()]
    bad = [t for t in tokens if not is_valid_token(t)]
    if bad:
        raise InvalidInput(
            f"malformed access token {bad[0]!r}: use all-staff, unit:<unit>, group:<name> or user:<id>"
        )
    tokens = list(dict.fromkeys(tokens))
    with services.sessions() as session:
        row = session.get(DocumentRow, doc_id)
        if row is None or row.status != "indexed":
            raise NotFound()
        before = {"classification": row.classification, "allow": list(row.allow or [])}
        services.store.set_payload(doc_id, access_payload(services.classification, level, tokens))
        row.classification = level
        row.classification_rank = services.classification.rank(level)
        set_allow(session, row, tokens)
        record_change(session, row, "access")  # the change feed (kms/network), same transaction
        session.commit()
        result = {"doc_id": doc_id, "classification": level, "allow": tokens, "owner_unit": row.owner_unit}
    audit.append(
        services.sessions,
        actor=actor,
        action="document.access",
        target=doc_id,
        detail={"before": before, "after": {"classification": level, "allow": tokens}},
    )
    return result
