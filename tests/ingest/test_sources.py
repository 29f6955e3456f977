"""Source folders: sync adds, re-ingests and removes; `.kms.yaml` defaults; safety; schedules; the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from ingest import jobs, sources
from ingest.worker import Worker, run_claimed_job
from kms.db.job_models import JobRow, SourceRow
from kms.db.models import DocumentRow
from kms.domain import Principal
from kms.errors import Conflict, IngestError, InvalidInput
from kms.index.base import doc_condition
from kms.security import audit
from kms.services import Services

OPERATOR = Principal.operator("local:test")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sync(services: Services, name: str = "share", **kw: object) -> dict[str, str]:
    """One sync run in this process; {doc_id: status}."""
    job_id, lease = sources.sync(services, name, submitter=OPERATOR, claim_as="test", **kw)  # type: ignore[arg-type]
    if job_id is None:
        return {}
    assert lease is not None
    run_claimed_job(services, lease, raise_errors=True)
    return {r.doc_id or r.path: r.status for r in jobs.file_results(services.sessions, job_id)}


def rows(services: Services) -> dict[str, DocumentRow]:
    with services.sessions() as session:
        found = {r.doc_id: r for r in session.query(DocumentRow)}
        session.expunge_all()
        return found


def chunks(services: Services, doc_id: str) -> int:
    return services.store.count(models.Filter(must=[doc_condition(doc_id)]))


@pytest.fixture
def share(tmp_path: Path) -> Path:
    folder = tmp_path / "share"
    write(folder / "a.txt", "Báo cáo A về hợp tác kinh tế.")
    write(folder / "sub" / "b.md", "# Hướng dẫn B\n\nThủ tục lãnh sự.")
    write(folder / "sub" / ".kms.yaml", "classification: confidential\nallow: [unit:hq/consular]\n")
    write(folder / "sub" / "c.txt", "Điện C.")
    write(folder / "sub" / "c.txt.meta.yaml", "classification: secret\n")
    return folder


def test_sync_adds_changes_and_removes(services: Services, share: Path) -> None:
    sources.add_source(
        services,
        name="share",
        path=share,
        defaults={"classification": "internal", "allow": ["all-staff"], "owner_unit": "hq/policy"},
        schedule_minutes=None,
        created_by="test",
    )
    first = sync(services)
    assert sorted(first.values()) == ["added", "added", "added"]
    by_name = {Path(r.source_path or "").name: r for r in rows(services).values()}
    assert set(by_name) == {"a.txt", "b.md", "c.txt"}
    # precedence: sidecar > .kms.yaml (nearest folder) > the source's defaults
    assert (by_name["a.txt"].classification, by_name["a.txt"].allow) == ("internal", ["all-staff"])
    assert (by_name["b.md"].classification, by_name["b.md"].allow) == ("confidential", ["unit:hq/consular"])
    assert (by_name["c.txt"].classification, by_name["c.txt"].allow) == ("secret", ["unit:hq/consular"])
    assert by_name["a.txt"].owner_unit == "hq/policy"
    assert sync(services) == {}  # nothing changed: no job at all

    write(share / "a.txt", "Báo cáo A, bản sửa đổi, về hợp tác kinh tế và đầu tư.")
    (share / "sub" / "b.md").unlink()
    write(share / "new.txt", "Tài liệu mới.")
    write(share / "sub" / "c.txt.meta.yaml", "classification: top_secret\n")  # a metadata-only change
    changed = sync(services)
    a, b, c = (by_name[n].doc_id for n in ("a.txt", "b.md", "c.txt"))
    assert (changed[a], changed[b], changed[c]) == ("replaced", "deleted", "replaced")
    after = rows(services)
    assert after[b].status == "deleted" and chunks(services, b) == 0
    assert after[a].version == 2 and after[c].classification == "top_secret"
    with services.sessions() as session:
        tombstones = [r for r in audit.records(session, action="document.delete") if r.target == b]
    assert tombstones and tombstones[0].detail["reason"] == "removed from the source"
    assert tombstones[0].detail["path"] == "sub/b.md"
    assert sync(services) == {}


def test_a_missing_or_emptied_folder_removes_nothing(services: Services, share: Path) -> None:
    sources.add_source(services, name="share", path=share, defaults={}, schedule_minutes=None, created_by="t")
    sync(services)
    for path in sorted(share.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(IngestError, match="unmounted share"):
        sources.sync(services, "share", submitter=OPERATOR)
    share.rmdir()
    with pytest.raises(IngestError, match="not reachable"):
        sources.sync(services, "share", submitter=OPERATOR)
    assert sum(1 for r in rows(services).values() if r.status == "indexed") == 3
    share.mkdir()
    removed = sync(services, allow_empty=True)
    assert sorted(removed.values()) == ["deleted"] * 3


def test_a_renamed_file_keeps_its_doc_id_when_its_sidecar_names_it(
    services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    write(folder / "old.txt", "Văn bản có mã cố định.")
    write(
        folder / "old.txt.meta.json",
        json.dumps({"doc_id": "fixed-1", "classification": "public", "allow": ["all-staff"]}),
    )
    sources.add_source(
        services, name="share", path=folder, defaults={}, schedule_minutes=None, created_by="t"
    )
    sync(services)
    (folder / "old.txt").rename(folder / "new.txt")
    (folder / "old.txt.meta.json").rename(folder / "new.txt.meta.json")
    sync(services)
    assert rows(services)["fixed-1"].status == "indexed" and chunks(services, "fixed-1") > 0
    assert sync(services) == {}


def test_sources_are_validated(services: Services, share: Path) -> None:
    with pytest.raises(InvalidInput):
        sources.add_source(
            services, name="bad name", path=share, defaults={}, schedule_minutes=None, created_by="t"
        )
    with pytest.raises(InvalidInput):
        sources.add_source(
            services, name="x", path=share / "nope", defaults={}, schedule_minutes=None, created_by="t"
        )
    with pytest.raises(InvalidInput):
        sources.add_source(
            services,
            name="x",
            path=share,
            defaults={"classification": "ultra"},
            schedule_minutes=None,
            created_by="t",
        )
    sources.add_source(services, name="x", path=share, defaults={}, schedule_minutes=None, created_by="t")
    with pytest.raises(Conflict):
        sources.add_source(services, name="x", path=share, defaults={}, schedule_minutes=None, created_by="t")


def test_a_scheduled_source_is_synced_by_the_worker_once(services: Services, share: Path) -> None:
    sources.add_source(services, name="share", path=share, defaults={}, schedule_minutes=60, created_by="t")
    worker = Worker(services)
    assert worker.run_once()  # enqueues the due sync and runs it
    assert not worker.run_once()  # next one in an hour
    with services.sessions() as session:
        [job] = session.query(JobRow).all()
        source = session.get(SourceRow, "share")
        assert job.kind == "sync" and job.state == "succeeded" and job.submitted_by == sources.SCHEDULER
        assert source is not None and (source.next_sync_at or 0) > time.time() + 3500


def test_watch_snapshot_sees_every_change(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    write(folder / "a.txt", "một")
    before = sources.snapshot(folder)
    write(folder / "a.txt.meta.yaml", "classification: public\n")
    assert sources.snapshot(folder) != before


def test_the_sources_and_jobs_commands(tmp_path: Path, share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kms.cli.main import app

    monkeypatch.setenv("KMS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def kms(*args: str) -> Any:
        return runner.invoke(app, list(args))

    added = kms("sources", "add", "hq", str(share), "--classification", "internal", "--allow", "all-staff")
    assert added.exit_code == 0, added.output
    synced = kms("sources", "sync", "hq", "--json")
    assert synced.exit_code == 0, synced.output
    statuses = [json.loads(line)["status"] for line in synced.stdout.splitlines() if line.startswith("{")]
    assert sorted(statuses) == ["added"] * 3
    (share / "a.txt").unlink()
    queued = kms("sources", "sync", "hq", "--queue")
    assert queued.exit_code == 0, queued.output
    job_id = json.loads(queued.stdout)["job_id"]
    listed = json.loads(kms("jobs", "list", "--json").stdout)
    assert listed["data"][0]["id"] == job_id and listed["data"][0]["state"] == "queued"
    cancelled = kms("jobs", "cancel", str(job_id))
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["state"] == "cancelled"
    retried = kms("jobs", "retry", str(job_id))
    assert retried.exit_code == 0 and json.loads(retried.stdout)["state"] == "queued"
    assert kms("worker", "--drain").exit_code == 0
    shown = json.loads(kms("jobs", "show", str(job_id), "--json").stdout)
    assert shown["state"] == "succeeded" and [f["status"] for f in shown["files"]] == ["deleted"]
    assert json.loads(kms("sources", "list", "--json").stdout)[0]["files"] == 2
    assert kms("jobs", "retry", str(job_id)).exit_code == 1  # succeeded: nothing to retry
    assert kms("jobs", "show", "999").exit_code == 4
    check = kms("check", "--json")
    assert check.exit_code == 0 and json.loads(check.stdout)["clean"], check.output
    stats = json.loads(kms("stats", "--json").stdout)
    assert stats["jobs"] == {"succeeded": 2} and stats["queue_depth"] == 0 and stats["sources"] == 1
