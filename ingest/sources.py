"""Source folders (HQ departments' shares, missions' drop folders) kept in sync with the index.

`sync` compares the folder with what kms last ingested from it (`source_files`): new files are
added, changed files (size, mtime or metadata) re-ingested, and files that are gone are removed
from the index and tombstoned in the registry and the audit log. The work is a `sync` job like any
other (durable, resumable), queued for a worker or run in-process by `kms sources sync`.

Metadata precedence for a source's files: sidecar > `.kms.yaml` (nearest folder wins) > the
source's own defaults (`kms sources add --classification … --allow …`).

Safety: an unreachable folder is an error, never "every file was deleted"; an empty folder whose
source still has documents (an unmounted share looks like that) is refused unless `allow_empty`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

from ingest import jobs, metadata
from ingest.files import Catalog, FileSpec, expand, mark_duplicates, prepare_file
from kms.db.job_models import JobRow, SourceFileRow, SourceRow
from kms.db.models import utcnow
from kms.domain import Principal
from kms.errors import Conflict, IngestError, InvalidInput, NotFound

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SCHEDULER = "system:scheduler"


def add_source(
    catalog: Catalog,
    *,
    name: str,
    path: Path,
    defaults: dict[str, Any],
    schedule_minutes: int | None,
    created_by: str,
) -> dict[str, Any]:
    if not NAME.fullmatch(name):
        raise InvalidInput(f"invalid source name {name!r}: use 1-128 letters, digits or . _ -")
    folder = path.expanduser().absolute()
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    if schedule_minutes is not None and schedule_minutes < 1:
        raise InvalidInput("--schedule must be at least 1 minute")
    try:
        checked = metadata.validate(
            {k: v for k, v in defaults.items() if v not in (None, [], "")}, catalog.classification
        )
    except IngestError as exc:
        raise InvalidInput(str(exc)) from exc
    with catalog.sessions() as session:
        if session.get(SourceRow, name) is not None:
            raise Conflict(f"source {name!r} already exists")
        row = SourceRow(
            name=name,
            path=str(folder),
            defaults=checked,
            schedule_minutes=schedule_minutes,
            next_sync_at=time.time() if schedule_minutes else None,
            created_by=created_by,
        )
        session.add(row)
        session.commit()
        return source_view(row, files=0)


def remove_source(catalog: Catalog, name: str) -> None:
    """Forget a source (its documents stay indexed; delete them first with an empty folder if wanted)."""
    with catalog.sessions() as session:
        row = session.get(SourceRow, name)
        if row is None:
            raise NotFound()
        for file in session.scalars(select(SourceFileRow).where(SourceFileRow.source == name)):
            session.delete(file)
        session.delete(row)
        session.commit()


def list_sources(catalog: Catalog) -> list[dict[str, Any]]:
    with catalog.sessions() as session:
        rows = list(session.scalars(select(SourceRow).order_by(SourceRow.name)))
        counts = dict(
            session.execute(select(SourceFileRow.source, func.count()).group_by(SourceFileRow.source)).all()
        )
        return [source_view(row, files=counts.get(row.name, 0)) for row in rows]


def source_view(row: SourceRow, *, files: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "path": row.path,
        "defaults": dict(row.defaults or {}),
        "schedule_minutes": row.schedule_minutes,
        "last_sync_at": row.last_sync_at.isoformat() if row.last_sync_at else None,
        "last_job_id": row.last_job_id,
        "files": files,
    }


def get_source(catalog: Catalog, name: str) -> SourceRow:
    with catalog.sessions() as session:
        row = session.get(SourceRow, name)
        if row is None:
            raise NotFound()
        session.expunge(row)
        return row


def scan(catalog: Catalog, source: SourceRow, *, allow_empty: bool = False) -> list[FileSpec]:
    """The files to (re-)ingest and the documents to remove; new and changed files are copied into
    the content store on the way."""
    root = Path(source.path)
    if not root.is_dir():
        raise IngestError(f"source {source.name!r}: folder {root} is not reachable; nothing was changed")
    with catalog.sessions() as session:
        known = {
            row.rel_path: row
            for row in session.scalars(select(SourceFileRow).where(SourceFileRow.source == source.name))
        }
        session.expunge_all()
    specs: list[FileSpec] = []
    retired: list[str] = []  # doc_ids whose file now gives another doc_id
    seen: set[str] = set()
    for path, _root in expand([root]):
        rel = path.relative_to(root).as_posix()
        seen.add(rel)
        row = known.get(rel)
        if row is not None and _unchanged(catalog, source, root, path, row):
            continue
        spec = prepare_file(
            path,
            root,
            {},
            classification=catalog.classification,
            originals=catalog.originals,
            max_bytes=catalog.settings.max_upload_bytes,
            defaults=dict(source.defaults or {}),
        )
        spec.source_rel = rel
        if row is not None and spec.error is None and spec.doc_id != row.doc_id:
            retired.append(row.doc_id)
        specs.append(spec)
    gone = [rel for rel in known if rel not in seen]
    if gone and not seen and not allow_empty:
        raise IngestError(
            f"source {source.name!r}: folder {root} is empty but {len(gone)} document(s) came from it "
            "(an unmounted share?); nothing was removed. Use --allow-empty if they really are gone."
        )
    provided = {s.doc_id for s in specs if s.error is None}
    removals = [
        _removal(source, rel, known[rel].doc_id, forget_only=known[rel].doc_id in provided) for rel in gone
    ]
    removals += [_removal(source, None, doc_id) for doc_id in retired if doc_id not in provided]
    return mark_duplicates(removals + specs)  # removals first: a doc_id that moved is re-added after


def _removal(source: SourceRow, rel: str | None, doc_id: str, *, forget_only: bool = False) -> FileSpec:
    """Remove a document (or, `forget_only`, just the record of a file whose doc_id another file now has)."""
    return FileSpec(
        name=Path(rel or doc_id).name or "file",
        path=str(Path(source.path) / rel) if rel else f"{source.name}:{doc_id}",
        op="delete",
        meta={"doc_id": doc_id, "forget_only": forget_only},
        source_rel=rel,
    )


def _unchanged(catalog: Catalog, source: SourceRow, root: Path, path: Path, row: SourceFileRow) -> bool:
    try:
        stat = path.stat()
        meta = metadata.resolve(path, root, {}, catalog.classification)
        if source.defaults:
            meta = {**metadata.validate(dict(source.defaults), catalog.classification), **meta}
    except (OSError, IngestError):
        return False  # let prepare_file report the problem
    return (
        stat.st_size == row.size
        and stat.st_mtime_ns == row.mtime_ns
        and metadata.meta_hash(meta) == row.meta_hash
    )


def active_job(catalog: Catalog, name: str) -> int | None:
    with catalog.sessions() as session:
        job_id = session.scalar(
            select(JobRow.id).where(JobRow.source == name, JobRow.state.in_(jobs.ACTIVE_STATES)).limit(1)
        )
        return int(job_id) if job_id is not None else None


def sync(
    catalog: Catalog,
    name: str,
    *,
    submitter: Principal,
    claim_as: str | None = None,
    allow_empty: bool = False,
) -> tuple[int | None, jobs.Lease | None]:
    """Scan a source and queue a `sync` job with what changed. Returns (job id, lease): the job is
    None when nothing changed, and an already queued or running sync of the source is returned
    instead of a second one; the lease is set when `claim_as` was given and a new job was made."""
    source = get_source(catalog, name)
    running = active_job(catalog, name)
    if running is not None:
        return running, None
    specs = scan(catalog, source, allow_empty=allow_empty)
    lease = None
    job_id = None
    if specs:
        job_id, lease = jobs.submit(
            catalog.sessions,
            specs,
            submitter=submitter,
            kind="sync",
            source=name,
            priority=jobs.PRIORITY_SYNC,
            max_attempts=catalog.settings.job_max_attempts,
            claim_as=claim_as,
            lease_s=catalog.settings.job_lease_s,
        )
    with catalog.sessions() as session:
        row = session.get(SourceRow, name)
        if row is not None:
            row.last_sync_at = utcnow()
            if job_id is not None:
                row.last_job_id = job_id
            session.commit()
    if job_id is not None:
        jobs.audit_refused(catalog.sessions, job_id, actor=submitter.user_id)
    log.info("source %s: %s change(s)", name, len(specs), extra={"source": name, "job_id": job_id})
    return job_id, lease


def enqueue_due(catalog: Catalog) -> list[int]:
    """Queue a sync for each scheduled source that is due (one worker wins each, by compare-and-set)."""
    now = time.time()
    queued: list[int] = []
    with catalog.sessions() as session:
        due = list(
            session.execute(
                select(SourceRow.name, SourceRow.next_sync_at, SourceRow.schedule_minutes).where(
                    SourceRow.schedule_minutes.is_not(None),
                    or_(SourceRow.next_sync_at.is_(None), SourceRow.next_sync_at <= now),
                )
            )
        )
    for name, next_at, minutes in due:
        with catalog.sessions() as session:
            won = session.execute(
                update(SourceRow)
                .where(
                    SourceRow.name == name,
                    SourceRow.next_sync_at.is_(None)
                    if next_at is None
                    else SourceRow.next_sync_at == next_at,
                )
                .values(next_sync_at=now + 60 * int(minutes or 1))
                .execution_options(synchronize_session=False)
            )
            session.commit()
        if not getattr(won, "rowcount", 0):
            continue
        try:
            job_id, _ = sync(catalog, name, submitter=Principal.operator(SCHEDULER))
        except (IngestError, NotFound) as exc:
            log.warning("scheduled sync of %s: %s", name, exc, extra={"source": name})
            continue
        if job_id is not None:
            queued.append(job_id)
    return queued


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under `folder`, sidecars and `.kms.yaml` included (watch mode)."""
    result: dict[str, tuple[int, int]] = {}
    for path in _walk(folder):
        try:
            stat = path.stat()
        except OSError:
            continue
        result[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return result


def _walk(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in sorted(folder.rglob("*")) if p.is_file())
