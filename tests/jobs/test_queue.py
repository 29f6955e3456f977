"""The durable queue on SQLite and on a real PostgreSQL: claims, leases, retries, cancel, visibility."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from ingest import jobs
from ingest.runner import FileResult, FileSpec
from kms.db.job_models import JobFileRow, JobRow
from kms.db.session import make_engine, make_session_factory
from kms.domain import Principal
from kms.errors import Conflict, NotFound

OPERATOR = Principal.operator("local:test")
ALICE = Principal("alice", "secret", "hq/consular", roles=("reader", "ingestor"))
BOB = Principal("bob", "secret", "hq/consular", roles=("reader", "ingestor"))
ADMIN = Principal("root-admin", "internal", "hq/digital", roles=("admin",))


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def specs(n: int, *, refused: int = 0) -> list[FileSpec]:
    made = [
        FileSpec(
            name=f"f{i}.txt", path=f"/src/f{i}.txt", sha256=f"{i:064x}", size=10, meta={"doc_id": f"d{i}"}
        )
        for i in range(n)
    ]
    for spec in made[:refused]:
        spec.error = "unsupported file type"
    return made


def submit(sessions: sessionmaker[Session], n: int = 2, who: Principal = OPERATOR, **kw: object) -> int:
    job_id, lease = jobs.submit(sessions, specs(n), submitter=who, **kw)  # type: ignore[arg-type]
    assert lease is None
    return job_id


def state(sessions: sessionmaker[Session], job_id: int) -> JobRow:
    with sessions() as session:
        job = session.get(JobRow, job_id)
        assert job is not None
        session.expunge(job)
        return job


def finish_all_files(sessions: sessionmaker[Session], lease: jobs.Lease, status: str = "added") -> JobRow:
    _job, files = jobs.load(sessions, lease)
    done = [
        (f, FileResult(f.path, f.doc_id, status, chunks=3, error="bad" if status == "failed" else None))
        for f in files
    ]
    jobs.record(sessions, lease, done, lease_s=30)
    return jobs.finish(sessions, lease)


def test_a_job_runs_from_queued_to_succeeded(sessions: sessionmaker[Session]) -> None:
    job_id = submit(sessions, 3)
    assert state(sessions, job_id).state == "queued"
    lease = jobs.claim(sessions, "w1", lease_s=30)
    assert lease is not None and lease.job_id == job_id
    running = state(sessions, job_id)
    assert (running.state, running.lease_owner, running.attempts) == ("running", "w1", 1)
    assert jobs.claim(sessions, "w2", lease_s=30) is None  # nothing else to do
    finished = finish_all_files(sessions, lease)
    assert (finished.state, finished.files_done, finished.files_total, finished.chunks_written) == (
        "succeeded",
        3,
        3,
        9,
    )
    assert finished.lease_token is None and finished.duration_s is not None and finished.duration_s >= 0


def test_files_that_fail_fail_alone_and_retry_requeues_just_them(sessions: sessionmaker[Session]) -> None:
    job_id, _ = jobs.submit(sessions, specs(3, refused=1), submitter=ALICE)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None
    _job, pending = jobs.load(sessions, lease)
    assert len(pending) == 2  # the refused file never reaches a worker
    results = [
        (pending[0], FileResult(pending[0].path, "d1", "failed", error="corrupt PDF")),
        (pending[1], FileResult(pending[1].path, "d2", "added", chunks=4)),
    ]
    jobs.record(sessions, lease, results, lease_s=30)
    failed = jobs.finish(sessions, lease)
    assert (failed.state, failed.error, failed.files_failed) == ("failed", "2 of 3 files failed", 2)
    retried = jobs.retry(sessions, job_id, ALICE)
    assert (retried.state, retried.files_done, retried.error) == ("queued", 1, None)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None
    assert {f.doc_id for f in jobs.load(sessions, lease)[1]} == {"d0", "d1"}


def test_concurrent_workers_never_claim_the_same_job(sessions: sessionmaker[Session]) -> None:
    ids = {submit(sessions, 1) for _ in range(40)}
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        try:
            while True:
                lease = jobs.claim(sessions, name, lease_s=60)
                if lease is None:
                    return
                with lock:
                    claimed.append(lease.job_id)
                finish_all_files(sessions, lease)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(claimed) == sorted(ids), Counter(claimed).most_common(3)  # each exactly once
    with sessions() as session:
        assert set(session.scalars(select(JobRow.state))) == {"succeeded"}


def test_an_expired_lease_is_taken_over_and_the_old_holder_can_change_nothing(
    sessions: sessionmaker[Session],
) -> None:
    job_id = submit(sessions, 2)
    first = jobs.claim(sessions, "dead-worker", lease_s=0.2)
    assert first is not None
    assert jobs.claim(sessions, "w2", lease_s=30) is None  # still leased
    time.sleep(0.4)
    second = jobs.claim(sessions, "w2", lease_s=30)
    assert second is not None and second.job_id == job_id and second.token != first.token
    assert state(sessions, job_id).attempts == 2
    assert not jobs.renew(sessions, first, lease_s=30)
    _job, files = jobs.load(sessions, second)
    with pytest.raises(jobs.LeaseLost):
        jobs.record(sessions, first, [(files[0], FileResult(files[0].path, "d0", "added"))], lease_s=30)
    with pytest.raises(jobs.LeaseLost):
        jobs.finish(sessions, first)
    assert finish_all_files(sessions, second).state == "succeeded"


def test_renewing_keeps_a_job(sessions: sessionmaker[Session]) -> None:
    submit(sessions, 1)
    lease = jobs.claim(sessions, "w", lease_s=0.3)
    assert lease is not None
    for _ in range(4):
        time.sleep(0.15)
        assert jobs.renew(sessions, lease, lease_s=0.3)
    assert jobs.claim(sessions, "other", lease_s=30) is None


def test_failed_runs_back_off_then_die(sessions: sessionmaker[Session]) -> None:
    job_id = submit(sessions, 1, max_attempts=3)
    for attempt in (1, 2):
        lease = jobs.claim(sessions, "w", lease_s=30)
        assert lease is not None
        assert jobs.fail_attempt(sessions, lease, "database is down", base_s=0.2, max_s=5) == "queued"
        job = state(sessions, job_id)
        assert job.not_before > time.time() and job.error == "database is down"
        assert jobs.claim(sessions, "w", lease_s=30) is None  # backing off
        time.sleep(0.2 * 2 ** (attempt - 1) * 1.1 + 0.05)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None
    assert jobs.fail_attempt(sessions, lease, "database is down", base_s=0.2, max_s=5) == "dead"
    dead = state(sessions, job_id)
    assert dead.state == "dead" and "gave up after 3 attempts" in (dead.error or "")
    assert jobs.retry(sessions, job_id, OPERATOR).state == "queued"


def test_a_job_that_keeps_killing_its_worker_dies(sessions: sessionmaker[Session]) -> None:
    job_id = submit(sessions, 1, max_attempts=2)
    for _ in range(2):
        assert jobs.claim(sessions, "w", lease_s=0.05) is not None
        time.sleep(0.1)  # the worker died: its lease runs out
    assert jobs.claim(sessions, "w", lease_s=30) is None
    job = state(sessions, job_id)
    assert job.state == "dead" and "stopped 2 times" in (job.error or "")


def test_progress_resets_the_attempt_count(sessions: sessionmaker[Session]) -> None:
    submit(sessions, 2, max_attempts=2)
    lease = jobs.claim(sessions, "w", lease_s=0.05)
    assert lease is not None
    _job, files = jobs.load(sessions, lease)
    job = jobs.record(sessions, lease, [(files[0], FileResult(files[0].path, "d0", "added"))], lease_s=0.05)
    assert job.attempts == 1 and job.files_done == 1
    time.sleep(0.1)
    lease = jobs.claim(sessions, "w", lease_s=30)  # second claim after a crash: still allowed
    assert lease is not None
    assert [f.doc_id for f in jobs.load(sessions, lease)[1]] == ["d1"]


def test_stopping_gives_the_job_back_without_counting_it(sessions: sessionmaker[Session]) -> None:
    job_id = submit(sessions, 1, max_attempts=1)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None
    jobs.release(sessions, lease)
    job = state(sessions, job_id)
    assert (job.state, job.attempts, job.lease_token) == ("queued", 0, None)
    assert jobs.claim(sessions, "w", lease_s=30) is not None


def test_orphans_of_a_dead_embedded_worker_are_requeued_at_once(sessions: sessionmaker[Session]) -> None:
    submit(sessions, 1)
    assert jobs.claim(sessions, "killed", lease_s=3600) is not None
    assert jobs.claim(sessions, "new", lease_s=30) is None
    assert jobs.requeue_orphans(sessions) == 1
    assert jobs.claim(sessions, "new", lease_s=30) is not None


def test_priority_then_age(sessions: sessionmaker[Session]) -> None:
    sync = submit(sessions, 1, priority=jobs.PRIORITY_SYNC)
    upload = submit(sessions, 1, priority=jobs.PRIORITY_UPLOAD)
    interactive = submit(sessions, 1, priority=jobs.PRIORITY_INTERACTIVE)
    order = []
    while (lease := jobs.claim(sessions, "w", lease_s=30)) is not None:
        order.append(lease.job_id)
        finish_all_files(sessions, lease)
    assert order == [interactive, upload, sync]


def test_cancel(sessions: sessionmaker[Session]) -> None:
    queued = submit(sessions, 1, who=ALICE)
    assert jobs.cancel(sessions, queued, ALICE).state == "cancelled"
    with pytest.raises(Conflict):
        jobs.cancel(sessions, queued, ALICE)
    running = submit(sessions, 2, who=ALICE)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None and lease.job_id == running
    assert jobs.cancel(sessions, running, ADMIN).cancel_requested
    assert jobs.cancel_requested(sessions, lease)
    assert jobs.finish(sessions, lease).state == "cancelled"


def test_others_jobs_are_not_found(sessions: sessionmaker[Session]) -> None:
    mine = submit(sessions, 1, who=ALICE)
    theirs = submit(sessions, 1, who=BOB)
    assert [j.id for j in jobs.list_jobs(sessions, ALICE)[0]] == [mine]
    assert {j.id for j in jobs.list_jobs(sessions, ADMIN)[0]} == {mine, theirs}
    reader = Principal("alice", "secret", "hq/consular", roles=("reader",))
    for action in (
        lambda: jobs.get(sessions, theirs, ALICE),
        lambda: jobs.get(sessions, 999999, ALICE),
        lambda: jobs.cancel(sessions, theirs, ALICE),
        lambda: jobs.retry(sessions, theirs, ALICE),
        lambda: jobs.cancel(sessions, mine, reader),  # no longer an ingestor: sees it, cannot manage it
    ):
        with pytest.raises(NotFound):
            action()
    assert jobs.get(sessions, mine, reader)[0].id == mine


def test_postgres_claims_skip_locked_rows(database_url: str, sessions: sessionmaker[Session]) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is the PostgreSQL claim; SQLite serialises writers instead")
    statement = select(JobRow.id).with_for_update(skip_locked=True)
    assert "FOR UPDATE SKIP LOCKED" in str(statement.compile(dialect=postgresql.dialect()))
    first, second = submit(sessions, 1), submit(sessions, 1)
    holder = sessions()
    try:  # another worker's claim transaction, still open, holds the first row
        holder.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        started = time.monotonic()
        lease = jobs.claim(sessions, "w", lease_s=30)
        assert lease is not None and lease.job_id == second  # skipped, not waited for
        assert time.monotonic() - started < 5
    finally:
        holder.rollback()
        holder.close()
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None and lease.job_id == first


def test_an_idle_poll_does_not_wait_for_a_writer(database_url: str, sessions: sessionmaker[Session]) -> None:
    # A worker with nothing to do asks every second; it must not queue behind (nor hold) the write
    # lock that ingestion and every audited request take.
    finished = submit(sessions, 1)
    lease = jobs.claim(sessions, "w", lease_s=30)
    assert lease is not None and lease.job_id == finished
    finish_all_files(sessions, lease)
    holder = sessions()
    try:  # a writer in the middle of its transaction
        if database_url.startswith("postgresql"):
            holder.execute(text("LOCK TABLE jobs IN EXCLUSIVE MODE"))  # blocks UPDATE and FOR UPDATE
        else:
            holder.connection().exec_driver_sql("BEGIN IMMEDIATE")
            holder.execute(text("UPDATE jobs SET priority = priority"))
        started = time.monotonic()
        assert jobs.claim(sessions, "w", lease_s=30) is None
        assert time.monotonic() - started < 5  # the busy timeout is 30 s
    finally:
        holder.rollback()
        holder.close()


def test_job_view_hides_files_above_an_admins_clearance(sessions: sessionmaker[Session]) -> None:
    from kms.config import Settings, load_classification

    levels = load_classification(Settings().index_config_dir)
    made = specs(2)
    made[0].meta["classification"] = "top_secret"
    job_id, _ = jobs.submit(sessions, made, submitter=ALICE)
    job, files = jobs.get(sessions, job_id, ADMIN)
    shown = jobs.job_detail(job, files, ADMIN, levels)["files"]
    assert shown[0]["name"] == "(above your clearance)" and shown[0]["doc_id"] is None
    assert shown[1]["name"] == "f1.txt"
    assert jobs.job_detail(job, files, ALICE, levels)["files"][0]["name"] == "f0.txt"  # the submitter's own


def test_job_files_are_in_the_database(sessions: sessionmaker[Session]) -> None:
    job_id = submit(sessions, 2)
    with sessions() as session:
        rows = list(
            session.scalars(select(JobFileRow).where(JobFileRow.job_id == job_id).order_by(JobFileRow.seq))
        )
    assert [(r.seq, r.doc_id, r.state, r.sha256) for r in rows] == [
        (0, "d0", "pending", f"{0:064x}"),
        (1, "d1", "pending", f"{1:064x}"),
    ]
