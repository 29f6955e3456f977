"""Workers end to end: on PostgreSQL with two workers at once, and giving a job back on stop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest import jobs
from ingest.check import check
from ingest.files import prepare_paths
from ingest.runner import ingest_paths
from ingest.worker import Worker, run_claimed_job
from kms.config import Settings
from kms.db.job_models import JobRow
from kms.domain import Principal
from kms.services import Services

TEXT = "Báo cáo số {n} về hợp tác lãnh sự và bảo hộ công dân Việt Nam ở nước ngoài.\n\nĐiều 1. Nội dung {n}."


def corpus(folder: Path, count: int, start: int = 0) -> Path:
    folder.mkdir(parents=True)
    for n in range(start, start + count):
        (folder / f"r{n:03d}.txt").write_text(TEXT.format(n=n), encoding="utf-8")
    return folder


def test_two_workers_share_a_postgresql_queue_without_double_work(pg_server: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_server.create_database())  # type: ignore[call-arg]
    services = Services.open(settings)
    try:
        assert [r.status for r in ingest_paths(services, [corpus(tmp_path / "first", 2)])] == ["added"] * 2
        for batch in range(6):
            specs = prepare_paths(
                services,
                [corpus(tmp_path / f"b{batch}", 3, start=10 * batch)],
                {"classification": "public", "allow": ["all-staff"]},
            )
            jobs.submit(services.sessions, specs, submitter=Principal.operator("t"))
        workers = [Worker(services, name=f"w{n}") for n in range(2)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), kwargs={"drain": True}) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert sum(w.jobs_run for w in workers) == 6
        with services.sessions() as session:
            runs = list(session.execute(select(JobRow.state, JobRow.runs)))
        assert runs == [("succeeded", 1)] * 7  # each job ran once
        assert check(services).clean
    finally:
        services.close()


def test_a_stopping_worker_gives_its_job_back(services: Services, tmp_path: Path) -> None:
    specs = prepare_paths(
        services, [corpus(tmp_path / "docs", 3)], {"classification": "public", "allow": ["all-staff"]}
    )
    job_id, _ = jobs.submit(services.sessions, specs, submitter=Principal.operator("t"))
    lease = jobs.claim(services.sessions, "w", lease_s=30)
    assert lease is not None
    stop = threading.Event()
    stop.set()  # the worker was asked to stop before its first batch
    assert run_claimed_job(services, lease, stop=stop) is None
    with services.sessions() as session:
        job = session.get(JobRow, job_id)
        assert job is not None and (job.state, job.attempts, job.files_done) == ("queued", 0, 0)
    assert Worker(services).run_once()
    with services.sessions() as session:
        job = session.get(JobRow, job_id)
        assert job is not None and job.state == "succeeded" and job.files_done == 3
