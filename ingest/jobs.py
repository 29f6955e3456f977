"""The durable ingestion queue, in the registry database (SQLite by default, PostgreSQL at scale).

States: queued → running → succeeded | failed | dead | cancelled.

- **Claim.** A worker takes the first claimable job (queued and due, or running with an expired
  lease) by priority, then age. On PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED` then `UPDATE`
  in one transaction, so concurrent workers never wait for nor take the same row. On SQLite (one
  writer at a time): a single `UPDATE … WHERE id = (SELECT … LIMIT 1)` statement. Either way the
  claim writes a fresh `lease_token` and `lease_expires_at`; every later write by the worker is
  conditioned on that token, so a worker that lost its lease can change nothing.
- **Lease.** The worker renews the lease in the background (`job_lease_s`, renewed every third of
  it). A worker killed with SIGKILL stops renewing; its job becomes claimable when the lease
  expires (on the embedded store, where only one process can own the index, a starting worker
  reclaims running jobs at once).
- **Progress** is recorded per batch of files in one transaction with the lease check, so after a
  crash only the unrecorded batch is run again (writes are idempotent; see ChunkWriter).
- **Retry/backoff.** A run that raises, or whose worker died, counts as an attempt unless it made
  progress; the job is queued again after `job_retry_base_s · 2^(attempts-1)` (capped at
  `job_retry_max_s`, with jitter), and becomes `dead` after `job_max_attempts` attempts in a row.
  Files that fail for a reason of their own (a corrupt PDF) fail alone: the job ends `failed`
  with "N of M files failed", and `retry` re-queues just those files.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, false, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from ingest.files import FileResult, FileSpec
from kms.config import Classification, Settings, load_classification
from kms.db.job_models import TERMINAL_STATES, JobFileRow, JobRow, SourceFileRow
from kms.db.models import utcnow
from kms.db.session import make_engine, make_session_factory
from kms.domain import Principal
from kms.errors import Conflict, KmsError, NotFound
from kms.originals import OriginalStore
from kms.security import audit

PRIORITY_INTERACTIVE = 10  # an operator waiting at a terminal (`kms ingest`)
PRIORITY_UPLOAD = 50
PRIORITY_SYNC = 100
ACTIVE_STATES = ("queued", "running")


class LeaseLost(KmsError):
    """This worker no longer holds the job (its lease expired and another worker took it)."""


@dataclass(frozen=True)
class Lease:
    job_id: int
    token: str
    owner: str


@dataclass
class QueueContext:
    """The registry database, the content store and the YAML config, without the index or the model:
    enough to queue jobs and read them while another process (a worker, `kms serve`) owns the index."""

    settings: Settings
    sessions: sessionmaker[Session]
    classification: Classification
    originals: OriginalStore
    engine: Engine | None = None

    @classmethod
    def open(cls, settings: Settings) -> QueueContext:
        settings.ensure_data_dir()
        engine = make_engine(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            sessions=make_session_factory(engine),
            classification=load_classification(settings.index_config_dir),
            originals=OriginalStore(settings.originals_dir),
            engine=engine,
        )

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def worker_name(role: str = "worker") -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _now() -> float:
    return time.time()


# ---- submit ----------------------------------------------------------------------------------------
def principal_snapshot(principal: Principal) -> dict[str, Any]:
    return {
        "user_id": principal.user_id,
        "clearance": principal.clearance,
        "unit": principal.unit,
        "groups": list(principal.groups),
        "roles": list(principal.roles),
        "operator": principal.is_operator,
    }


def principal_from_snapshot(data: dict[str, Any]) -> Principal:
    return Principal(
        user_id=str(data.get("user_id", "")),
        clearance=str(data.get("clearance", "")),
        unit=str(data.get("unit", "")),
        groups=tuple(str(g) for g in data.get("groups") or []),
        roles=tuple(str(r) for r in data.get("roles") or []),
        is_operator=bool(data.get("operator", False)),
    )


def submit(
    sessions: sessionmaker[Session],
    specs: Sequence[FileSpec],
    *,
    submitter: Principal,
    kind: str = "ingest",
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    priority: int = PRIORITY_UPLOAD,
    max_attempts: int = 5,
    claim_as: str | None = None,
    lease_s: float = 60.0,
) -> tuple[int, Lease | None]:
    """Store a job and its files in one transaction. Returns its id and, when `claim_as` is given,
    its lease (the caller runs it now; otherwise a worker will). Files with `error` are failed
    already; a job with nothing left to do is finished at once."""
    now = _now()
    with sessions() as session:
        job = JobRow(
            kind=kind,
            state="queued",
            priority=priority,
            submitted_by=submitter.user_id,
            submitter_unit=submitter.unit,
            submitter=principal_snapshot(submitter),
            source=source,
            overrides=dict(overrides or {}),
            max_attempts=max_attempts,
            files_total=len(specs),
            not_before=0.0,
        )
        session.add(job)
        session.flush()
        for seq, spec in enumerate(specs):
            refused = spec.error is not None
            session.add(
                JobFileRow(
                    job_id=job.id,
                    seq=seq,
                    op=spec.op,
                    name=spec.name,
                    path=spec.path,
                    sha256=spec.sha256,
                    size=spec.size,
                    meta=dict(spec.meta),
                    doc_id=spec.doc_id,
                    state="failed" if refused else "pending",
                    status="failed" if refused else None,
                    error=spec.error,
                    source_rel=spec.source_rel,
                    source_stat=dict(spec.source_stat),
                )
            )
        session.flush()
        _recount(session, job)
        lease = None
        if job.files_done == job.files_total:
            _finish_row(job)
        elif claim_as is not None:
            lease = Lease(job_id=job.id, token=uuid.uuid4().hex, owner=claim_as)
            _take(job, lease, now, lease_s)
        session.commit()
        return job.id, lease


def _take(job: JobRow, lease: Lease, now: float, lease_s: float) -> None:
    job.state = "running"
    job.lease_owner = lease.owner
    job.lease_token = lease.token
    job.lease_expires_at = now + lease_s
    job.attempts = (job.attempts or 0) + 1
    job.runs = (job.runs or 0) + 1
    job.started_at = utcnow()


# ---- claim ---------------------------------------------------------------------------------------
def _claimable(now: float, table: Any = JobRow) -> ColumnElement[bool]:
    return or_(
        and_(table.state == "queued", table.not_before <= now),
        and_(table.state == "running", table.lease_expires_at < now),
    )


def _any_claimable(sessions: sessionmaker[Session], now: float) -> bool:
    """Whether a claim could succeed: an idle worker asks every `worker_poll_s`, and this read costs
    a fifth of a claim attempt (which writes, so takes SQLite's write lock, and then rolls back), all
    of it holding the GIL beside the searches of `kms serve`. A job queued just after is seen by
    the next poll."""
    with sessions() as session:
        return session.scalar(select(JobRow.id).where(_claimable(now)).limit(1)) is not None


def claim(sessions: sessionmaker[Session], owner: str, *, lease_s: float) -> Lease | None:
    """Take the next job for `owner`, or None when there is nothing to do (see the module docstring).

    A job whose worker died on it `max_attempts` times in a row is marked dead instead.
    """
    while True:
        lease = _claim_once(sessions, owner, lease_s)
        if lease is None:
            return None
        with sessions() as session:
            job = session.get(JobRow, lease.job_id)
            if job is None or job.attempts <= job.max_attempts:
                return lease
            job.state = "dead"
            job.error = job.error or f"the worker stopped {job.max_attempts} times in a row while running it"
            _finish_row(job, state="dead")
            session.commit()


def _claim_once(sessions: sessionmaker[Session], owner: str, lease_s: float) -> Lease | None:
    now = _now()
    if not _any_claimable(sessions, now):
        return None
    token = uuid.uuid4().hex
    values = {
        "state": "running",
        "lease_owner": owner,
        "lease_token": token,
        "lease_expires_at": now + lease_s,
        "attempts": JobRow.attempts + 1,
        "runs": JobRow.runs + 1,
        "started_at": utcnow(),
        "updated_at": utcnow(),
    }
    order = (JobRow.priority, JobRow.id)
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            job_id = session.scalar(
                select(JobRow.id)
                .where(_claimable(now))
                .order_by(*order)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job_id is None:
                return None
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))
        else:  # SQLite: one writer at a time, so one UPDATE with a sub-select is atomic
            other = aliased(JobRow)  # not correlated with the UPDATE's own table
            candidate = (
                select(other.id)
                .where(_claimable(now, other))
                .order_by(other.priority, other.id)
                .limit(1)
                .scalar_subquery()
            )
            result = session.execute(
                update(JobRow)
                .where(JobRow.id == candidate, _claimable(now))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not getattr(result, "rowcount", 0):
                session.rollback()
                return None
            job_id = session.scalar(select(JobRow.id).where(JobRow.lease_token == token))
            if job_id is None:
                return None
        session.commit()
        return Lease(job_id=int(job_id), token=token, owner=owner)


def renew(sessions: sessionmaker[Session], lease: Lease, *, lease_s: float) -> bool:
    """Extend the lease; False when it is no longer ours (expired and taken, cancelled, finished)."""
    with sessions() as session:
        result = session.execute(
            update(JobRow)
            .where(JobRow.id == lease.job_id, JobRow.lease_token == lease.token, JobRow.state == "running")
            .values(lease_expires_at=_now() + lease_s)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return bool(getattr(result, "rowcount", 0))


def requeue_orphans(sessions: sessionmaker[Session]) -> int:
    """Make every running job claimable now: for a worker on the embedded store, the one process
    that can index, none of them can still be running elsewhere (their worker was killed)."""
    with sessions() as session:
        result = session.execute(
            update(JobRow)
            .where(JobRow.state == "running")
            .values(lease_expires_at=0.0)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return int(getattr(result, "rowcount", 0) or 0)


# ---- a claimed job -------------------------------------------------------------------------------
def _held(session: Session, lease: Lease) -> JobRow:
    job = session.scalars(
        select(JobRow)
        .where(JobRow.id == lease.job_id, JobRow.lease_token == lease.token, JobRow.state == "running")
        .execution_options(populate_existing=True)
    ).first()
    if job is None:
        raise LeaseLost(f"job {lease.job_id}: lease lost")
    return job


def load(sessions: sessionmaker[Session], lease: Lease) -> tuple[JobRow, list[JobFileRow]]:
    """The job (if still ours) and its pending files, in order."""
    with sessions() as session:
        job = _held(session, lease)
        files = list(
            session.scalars(
                select(JobFileRow)
                .where(JobFileRow.job_id == lease.job_id, JobFileRow.state == "pending")
                .order_by(JobFileRow.seq)
            )
        )
        session.expunge_all()
        return job, files


def cancel_requested(sessions: sessionmaker[Session], lease: Lease) -> bool:
    with sessions() as session:
        return bool(_held(session, lease).cancel_requested)


def record(
    sessions: sessionmaker[Session],
    lease: Lease,
    done: Sequence[tuple[JobFileRow, FileResult]],
    *,
    lease_s: float,
) -> JobRow:
    """Record finished files (and, for a source sync, what the source now holds) with the lease check,
    in one transaction. Progress resets the attempt counter: this run is the first of a new series."""
    with sessions() as session:
        job = _held(session, lease)
        for file, result in done:
            changed = session.execute(
                update(JobFileRow)
                .where(JobFileRow.id == file.id, JobFileRow.state == "pending")
                .values(
                    state="failed" if result.status == "failed" else "done",
                    status=result.status,
                    chunks=result.chunks,
                    error=result.error,
                    doc_id=result.doc_id or file.doc_id,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(changed, "rowcount", 0) and job.source and file.source_rel is not None:
                _record_source_file(session, job.source, file, result)
        _recount(session, job)
        job.attempts = 1
        job.lease_expires_at = _now() + lease_s
        session.commit()
        session.expunge(job)
        return job


def _record_source_file(session: Session, source: str, file: JobFileRow, result: FileResult) -> None:
    assert file.source_rel is not None
    row = session.get(SourceFileRow, (source, file.source_rel))
    if file.op == "delete":
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = SourceFileRow(source=source, rel_path=file.source_rel, doc_id=file.doc_id or "")
        session.add(row)
    from ingest.metadata import meta_hash

    row.doc_id = result.doc_id or file.doc_id or row.doc_id
    row.sha256 = file.sha256 or ""
    row.meta_hash = meta_hash(file.meta)
    row.size = int(file.source_stat.get("size", file.size))
    row.mtime_ns = int(file.source_stat.get("mtime_ns", 0))
    row.state = "failed" if result.status == "failed" else "indexed"
    row.error = result.error


def _recount(session: Session, job: JobRow) -> None:
    session.flush()
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((JobFileRow.state != "pending", 1), else_=0)), 0),
            func.coalesce(func.sum(case((JobFileRow.state == "failed", 1), else_=0)), 0),
            func.coalesce(
                func.sum(case((JobFileRow.status.in_(("added", "replaced")), JobFileRow.chunks), else_=0)), 0
            ),
        ).where(JobFileRow.job_id == job.id)
    ).one()
    job.files_total, job.files_done, job.files_failed, job.chunks_written = (int(v) for v in row)


def _finish_row(job: JobRow, *, state: str | None = None) -> None:
    if state is None:
        if job.cancel_requested:
            state = "cancelled"
        elif job.files_failed:
            state = "failed"
        else:
            state = "succeeded"
    if state == "failed" and not job.error:
        job.error = f"{job.files_failed} of {job.files_total} files failed"
    if state == "cancelled":
        job.error = job.error or "cancelled"
    if state == "succeeded":
        job.error = None
    job.state = state
    job.lease_owner = job.lease_token = None
    job.lease_expires_at = None
    job.finished_at = utcnow()
    started = _aware(job.started_at)
    job.duration_s = (job.finished_at - started).total_seconds() if started else 0.0


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def finish(sessions: sessionmaker[Session], lease: Lease) -> JobRow:
    """End a run: succeeded, failed (some files), or cancelled (requested while it ran)."""
    with sessions() as session:
        job = _held(session, lease)
        _recount(session, job)
        _finish_row(job)
        session.commit()
        session.expunge(job)
        return job


def release(sessions: sessionmaker[Session], lease: Lease) -> None:
    """Give a job back (the worker is stopping): queued again at once, this run not counted."""
    with sessions() as session:
        try:
            job = _held(session, lease)
        except LeaseLost:
            return
        job.state = "queued"
        job.attempts = max(0, job.attempts - 1)
        job.not_before = 0.0
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
        session.commit()


def backoff_s(attempts: int, *, base_s: float, max_s: float) -> float:
    delay = min(max_s, base_s * 2.0 ** max(0, attempts - 1))
    # jitter: workers that failed together do not retry together
    return float(delay * random.uniform(0.9, 1.1))


def fail_attempt(
    sessions: sessionmaker[Session], lease: Lease, error: str, *, base_s: float, max_s: float
) -> str:
    """A run raised: queue the job again after a backoff, or mark it dead. Returns the new state."""
    with sessions() as session:
        job = _held(session, lease)
        job.error = error[:2000]
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
        if job.attempts >= job.max_attempts:
            _recount(session, job)
            _finish_row(job, state="dead")
            job.error = f"gave up after {job.attempts} attempts: {error}"[:2000]
        else:
            job.state = "queued"
            job.not_before = _now() + backoff_s(job.attempts, base_s=base_s, max_s=max_s)
        session.commit()
        return job.state


# ---- reads and commands for people ---------------------------------------------------------------
def visible(principal: Principal) -> ColumnElement[bool]:
    """Which jobs a principal may see: admins (and the operator) all, anyone else only their own."""
    if principal.is_operator or "admin" in principal.roles:
        return true()
    if not principal.user_id:
        return false()
    return JobRow.submitted_by == principal.user_id


def get(
    sessions: sessionmaker[Session], job_id: int, principal: Principal
) -> tuple[JobRow, list[JobFileRow]]:
    """A job and all its files, or NotFound when it is missing or not the principal's to see."""
    with sessions() as session:
        job = session.scalars(select(JobRow).where(JobRow.id == job_id, visible(principal))).first()
        if job is None:
            raise NotFound()
        files = list(
            session.scalars(select(JobFileRow).where(JobFileRow.job_id == job_id).order_by(JobFileRow.seq))
        )
        session.expunge_all()
        return job, files


def list_jobs(
    sessions: sessionmaker[Session],
    principal: Principal,
    *,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[JobRow], int]:
    condition = visible(principal)
    if state:
        condition = and_(condition, JobRow.state == state)
    with sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(JobRow).where(condition)) or 0)
        rows = list(
            session.scalars(
                select(JobRow).where(condition).order_by(JobRow.id.desc()).limit(limit).offset(offset)
            )
        )
        session.expunge_all()
        return rows, total


def may_manage(principal: Principal, job: JobRow) -> bool:
    """Retry and cancel: the submitter while they may still ingest, and admins."""
    if principal.is_operator or "admin" in principal.roles:
        return True
    return job.submitted_by == principal.user_id and "ingestor" in principal.roles


def retry(sessions: sessionmaker[Session], job_id: int, principal: Principal) -> JobRow:
    """Queue a failed, dead or cancelled job again; its failed files are tried again."""
    with sessions() as session:
        job = session.scalars(select(JobRow).where(JobRow.id == job_id, visible(principal))).first()
        if job is None or not may_manage(principal, job):
            raise NotFound()
        if job.state not in ("failed", "dead", "cancelled"):
            raise Conflict(f"job {job_id} is {job.state}: only failed, dead or cancelled jobs can be retried")
        session.execute(
            update(JobFileRow)
            .where(JobFileRow.job_id == job_id, JobFileRow.state == "failed", JobFileRow.sha256.is_not(None))
            .values(state="pending", status=None, error=None, chunks=0)
            .execution_options(synchronize_session=False)
        )
        job.state = "queued"
        job.attempts = 0
        job.not_before = 0.0
        job.cancel_requested = False
        job.error = None
        job.finished_at = None
        job.duration_s = None
        _recount(session, job)
        if job.files_done == job.files_total:  # nothing could be retried (files refused at upload)
            _finish_row(job)
        session.commit()
        session.expunge(job)
        return job


def cancel(sessions: sessionmaker[Session], job_id: int, principal: Principal) -> JobRow:
    """Cancel a queued job now; a running one stops after its current batch of files."""
    with sessions() as session:
        job = session.scalars(select(JobRow).where(JobRow.id == job_id, visible(principal))).first()
        if job is None or not may_manage(principal, job):
            raise NotFound()
        if job.state in TERMINAL_STATES:
            raise Conflict(f"job {job_id} is already {job.state}")
        job.cancel_requested = True
        if job.state == "queued":
            _recount(session, job)
            _finish_row(job, state="cancelled")
            job.error = f"cancelled by {principal.user_id}"
        session.commit()
        session.expunge(job)
        return job


def file_results(sessions: sessionmaker[Session], job_id: int) -> list[FileResult]:
    with sessions() as session:
        files = session.scalars(
            select(JobFileRow).where(JobFileRow.job_id == job_id).order_by(JobFileRow.seq)
        )
        return [
            FileResult(
                path=f.path,
                doc_id=f.doc_id,
                status=f.status or ("failed" if f.state == "failed" else "pending"),
                chunks=f.chunks,
                error=f.error,
            )
            for f in files
        ]


def audit_refused(sessions: sessionmaker[Session], job_id: int, *, actor: str) -> None:
    """One audit record per file refused at submission (processed files are audited by the runner)."""
    with sessions() as session:
        refused = list(
            session.scalars(
                select(JobFileRow)
                .where(JobFileRow.job_id == job_id, JobFileRow.state == "failed")
                .order_by(JobFileRow.seq)
            )
        )
    for file in refused:
        audit.append(
            sessions,
            actor=actor,
            action="document.ingest",
            target=file.doc_id,
            detail={
                "path": file.path,
                "status": "failed",
                "chunks": 0,
                "error": file.error,
                "job_id": job_id,
            },
        )


def counts_by_state(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
        return {str(state): int(count) for state, count in rows}


def oldest_queued_age_s(sessions: sessionmaker[Session]) -> float:
    with sessions() as session:
        oldest = session.scalar(select(func.min(JobRow.created_at)).where(JobRow.state == "queued"))
    created = _aware(oldest)
    return max(0.0, (utcnow() - created).total_seconds()) if created else 0.0


def durations(sessions: sessionmaker[Session], buckets: Iterable[float]) -> tuple[list[int], int, float]:
    """Cumulative counts of finished runs per duration bucket, their count and total seconds."""
    bounds = list(buckets)
    with sessions() as session:
        finished = JobRow.duration_s.is_not(None)
        columns = [func.coalesce(func.sum(case((JobRow.duration_s <= b, 1), else_=0)), 0) for b in bounds]
        row = session.execute(
            select(*columns, func.count(), func.coalesce(func.sum(JobRow.duration_s), 0.0)).where(finished)
        ).one()
    values = list(row)
    return [int(v) for v in values[: len(bounds)]], int(values[-2]), float(values[-1])


# ---- what people see -----------------------------------------------------------------------------
def _iso(value: dt.datetime | None) -> str | None:
    aware = _aware(value)
    return aware.isoformat() if aware else None


def job_summary(job: JobRow) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "submitted_by": job.submitted_by,
        "source": job.source,
        "files_total": job.files_total,
        "files_done": job.files_done,
        "files_failed": job.files_failed,
        "chunks_written": job.chunks_written,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "cancel_requested": bool(job.cancel_requested),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "duration_s": job.duration_s,
        "next_attempt_at": (
            dt.datetime.fromtimestamp(job.not_before, dt.UTC).isoformat()
            if job.state == "queued" and job.not_before > _now()
            else None
        ),
    }


def job_detail(
    job: JobRow, files: Sequence[JobFileRow], principal: Principal, classification: Classification
) -> dict[str, Any]:
    """A job with its files. Someone who is not the submitter (an admin) does not see the names of
    files classified above their own clearance."""
    own = principal.is_operator or job.submitted_by == principal.user_id
    clearance = classification.rank(principal.clearance)
    shown = []
    for file in files:
        level = classification.rank(str(file.meta.get("classification") or "")) if file.meta else None
        hidden = not own and level is not None and (clearance is None or level > clearance)
        shown.append(
            {
                "seq": file.seq,
                "op": file.op,
                "name": "(above your clearance)" if hidden else file.name,
                "doc_id": None if hidden else file.doc_id,
                "size": file.size,
                "state": file.state,
                "status": file.status,
                "chunks": file.chunks,
                "error": None if hidden else file.error,
            }
        )
    return {**job_summary(job), "files": shown}
