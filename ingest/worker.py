"""Run ingestion jobs: one claimed job (`run_claimed_job`, also what `kms ingest` runs in-process)
and the worker loop (`Worker`: inside `kms serve`, or standalone as `kms worker`).

Lifecycle of a worker: on the embedded store (owned by this process alone) it first makes every
`running` job claimable, since whoever ran them is dead; then it loops: enqueue due source syncs,
claim a job, run it batch by batch while a heartbeat thread renews the lease, record each batch,
finish. On stop (SIGTERM, server shutdown) the current batch completes and the job goes back to
the queue, not counted as an attempt. SIGKILL at any moment is handled by the lease and by the
idempotent, ordered writes of the ChunkWriter: the unrecorded batch is simply run again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

from ingest import jobs, sources
from ingest.files import FileResult, FileSpec
from ingest.pipeline import Stages, build_stages
from ingest.runner import BATCH_FILES, Progress, delete_document, ingest_specs
from kms.db.job_models import JobFileRow, JobRow
from kms.security import audit
from kms.services import Services

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length until stopped; sets `lost` if it cannot."""

    def __init__(self, services: Services, lease: jobs.Lease) -> None:
        super().__init__(name=f"kms-heartbeat-{lease.job_id}", daemon=True)
        self.services = services
        self.lease = lease
        self.lease_s = services.settings.job_lease_s
        self.lost = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(max(0.2, self.lease_s / 3)):
            try:
                if not jobs.renew(self.services.sessions, self.lease, lease_s=self.lease_s):
                    self.lost.set()
                    return
            except Exception:  # a database hiccup: the lease is still long enough to try again
                log.warning("cannot renew the lease of job %s", self.lease.job_id, exc_info=True)

    def halt(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()


def run_claimed_job(
    services: Services,
    lease: jobs.Lease,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    raise_errors: bool = False,
) -> JobRow | None:
    """Run a job this process has claimed. Returns the finished job, or None when it was given back
    (stop), lost (its lease was taken over) or failed this attempt (queued again or dead)."""
    heartbeat = Heartbeat(services, lease)
    heartbeat.start()
    started = time.monotonic()
    try:
        job = _run(services, lease, heartbeat, progress, stop)
    except jobs.LeaseLost:
        log.warning(
            "lost the lease of job %s; another worker has it", lease.job_id, extra={"job_id": lease.job_id}
        )
        return None
    except Exception as exc:
        log.exception("job %s failed", lease.job_id, extra={"job_id": lease.job_id})
        try:
            state = jobs.fail_attempt(
                services.sessions,
                lease,
                f"{type(exc).__name__}: {exc}",
                base_s=services.settings.job_retry_base_s,
                max_s=services.settings.job_retry_max_s,
            )
            log.warning(
                "job %s is now %s", lease.job_id, state, extra={"job_id": lease.job_id, "state": state}
            )
        except jobs.LeaseLost:
            pass
        if raise_errors:
            raise
        return None
    finally:
        heartbeat.halt()
    if job is not None:
        log.info(
            "job %s %s",
            job.id,
            job.state,
            extra={
                "job_id": job.id,
                "state": job.state,
                "files": job.files_total,
                "failed": job.files_failed,
                "chunks": job.chunks_written,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
    return job


def _run(
    services: Services,
    lease: jobs.Lease,
    heartbeat: Heartbeat,
    progress: Progress | None,
    stop: threading.Event | None,
) -> JobRow | None:
    sessions = services.sessions
    job, pending = jobs.load(sessions, lease)
    principal = jobs.principal_from_snapshot(job.submitter or {})
    done = job.files_done
    if progress:
        progress(done, job.files_total)
    log.info(
        "job %s running", job.id, extra={"job_id": job.id, "files": job.files_total, "pending": len(pending)}
    )
    stages: Stages | None = None
    for group in _groups(pending, BATCH_FILES):
        if heartbeat.lost.is_set():
            raise jobs.LeaseLost(f"job {job.id}: lease lost")
        if stop is not None and stop.is_set():
            jobs.release(sessions, lease)
            log.info("job %s given back (worker stopping)", job.id, extra={"job_id": job.id})
            return None
        if jobs.cancel_requested(sessions, lease):
            break
        if group[0].op == "delete":
            results = [_remove(services, job, file) for file in group]
        else:
            stages = stages or build_stages(services)
            results = ingest_specs(
                services, [_spec(file) for file in group], principal=principal, stages=stages
            )
            _audit(services, job, group, results)
        jobs.record(
            sessions, lease, list(zip(group, results, strict=True)), lease_s=services.settings.job_lease_s
        )
        done += len(group)
        if progress:
            progress(done, job.files_total)
    return jobs.finish(sessions, lease)


def _groups(files: Sequence[JobFileRow], size: int) -> Iterator[list[JobFileRow]]:
    """Consecutive files with the same operation, at most `size` at a time."""
    group: list[JobFileRow] = []
    for file in files:
        if group and (len(group) >= size or file.op != group[0].op):
            yield group
            group = []
        group.append(file)
    if group:
        yield group


def _spec(file: JobFileRow) -> FileSpec:
    return FileSpec(
        name=file.name, path=file.path, sha256=file.sha256, size=file.size, meta=dict(file.meta or {})
    )


def _remove(services: Services, job: JobRow, file: JobFileRow) -> FileResult:
    doc_id = file.doc_id or ""
    if (file.meta or {}).get("forget_only"):  # another file of the source provides this doc_id now
        return FileResult(path=file.path, doc_id=doc_id, status="unchanged")
    detail = {
        "job_id": job.id,
        "source": job.source,
        "path": file.source_rel,
        "reason": "removed from the source",
    }
    delete_document(services, doc_id, actor=job.submitted_by, detail=detail, missing_ok=True)
    return FileResult(path=file.path, doc_id=doc_id, status="deleted")


def _audit(
    services: Services, job: JobRow, files: Sequence[JobFileRow], results: Sequence[FileResult]
) -> None:
    """Before the results are recorded: a crash in between repeats a record rather than losing one."""
    for file, result in zip(files, results, strict=True):
        audit.append(
            services.sessions,
            actor=job.submitted_by,
            action="document.ingest",
            target=result.doc_id,
            detail={
                "path": file.path,
                "status": result.status,
                "chunks": result.chunks,
                "error": result.error,
                "job_id": job.id,
            },
        )


class Worker:
    """Claims and runs jobs until stopped. Several may run at once against a Qdrant server."""

    def __init__(self, services: Services, *, name: str | None = None) -> None:
        self.services = services
        self.name = name or jobs.worker_name()
        self.jobs_run = 0

    def recover(self) -> None:
        if self.services.store.embedded:  # we own the store: running jobs are orphans of a dead process
            orphans = jobs.requeue_orphans(self.services.sessions)
            if orphans:
                log.warning("requeued %s job(s) left running by a stopped process", orphans)

    def warm_up(self) -> None:
        """Load the model now, so the first job does not wait for it."""
        try:
            self.services.embedder.embed_passages(["khởi động"])
        except Exception:  # the first job will report it
            log.exception("the embedder could not be loaded")

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Enqueue due source syncs, then claim and run one job; False when there was nothing to do."""
        try:
            sources.enqueue_due(self.services)
        except Exception:
            log.exception("scheduled source sync failed")
        lease = jobs.claim(self.services.sessions, self.name, lease_s=self.services.settings.job_lease_s)
        if lease is None:
            return False
        log.info("job %s claimed", lease.job_id, extra={"job_id": lease.job_id, "worker": self.name})
        run_claimed_job(self.services, lease, stop=stop)
        self.jobs_run += 1
        return True

    def run(self, stop: threading.Event, *, drain: bool = False) -> int:
        """Work until `stop` is set (or, with `drain`, until no job is due). Returns jobs run."""
        self.recover()
        self.warm_up()
        log.info(
            "worker %s started", self.name, extra={"worker": self.name, "store": self.services.store.backend}
        )
        while not stop.is_set():
            try:
                worked = self.run_once(stop)
            except Exception:  # the database is unreachable, say: wait and try again
                log.exception("worker loop error")
                worked = False
            if not worked:
                if drain:
                    break
                stop.wait(self.services.settings.worker_poll_s)
        log.info("worker %s stopped after %s job(s)", self.name, self.jobs_run, extra={"worker": self.name})
        return self.jobs_run

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="kms-worker", daemon=True)
        thread.start()
        return thread, stop
