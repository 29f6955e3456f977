"""The job routes, /metrics, and the new read paths against `access.can_read` on random data:
a job or a document the caller may not see answers 404 exactly like a missing one, never 403."""

from __future__ import annotations

import json
import logging
import random

import pytest
from api_helpers import OPERATOR, Api

from ingest import jobs
from ingest.check import check
from ingest.runner import ingest_paths
from kms.domain import Principal
from kms.logging import JsonFormatter
from kms.security.access import can_read
from kms.services import Services

MISSING = {"detail": "not found"}
TEXT = "Báo cáo về hợp tác kinh tế với Nhật Bản trong năm 2025.\n\nĐiều 1. Nội dung hợp tác."


@pytest.fixture
def api(services: Services) -> Api:
    return Api(services)


def test_job_routes_show_each_caller_their_own_jobs(api: Api) -> None:
    alice = api.user("alice", roles=("reader", "ingestor"))
    bob = api.user("bob", roles=("reader", "ingestor"))
    admin = api.user("adm", "internal", "hq/digital", roles=("admin",))
    reader = api.user("rdr")
    job = api.upload(alice, [("a.txt", TEXT.encode())], classification="public", allow=["all-staff"]).json()
    url = f"/api/v1/jobs/{job['id']}"

    assert [j["id"] for j in api.client.get("/api/v1/jobs", headers=alice).json()["data"]] == [job["id"]]
    assert api.client.get("/api/v1/jobs", headers=bob).json() == {"data": [], "count": 0}
    assert api.client.get("/api/v1/jobs", headers=reader).json()["count"] == 0
    assert api.client.get("/api/v1/jobs", headers=admin).json()["count"] == 1
    assert api.client.get("/api/v1/jobs?state=queued", headers=OPERATOR).json()["count"] == 1
    assert api.client.get("/api/v1/jobs?state=bogus", headers=OPERATOR).status_code == 422
    for headers in (bob, reader):
        for method, path in (("GET", url), ("POST", f"{url}/cancel"), ("POST", f"{url}/retry")):
            response = api.client.request(method, path, headers=headers)
            assert (response.status_code, response.json()) == (404, MISSING), (method, path)
    assert api.client.get("/api/v1/jobs/424242", headers=alice).json() == MISSING
    assert api.client.get("/api/v1/jobs").status_code == 401

    assert api.client.post(f"{url}/retry", headers=alice).status_code == 409  # queued: nothing to retry
    cancelled = api.client.post(f"{url}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert api.client.post(f"{url}/cancel", headers=alice).status_code == 409
    retried = api.client.post(f"{url}/retry", headers=alice)
    assert retried.status_code == 202 and retried.json()["state"] == "queued"
    api.work()
    done = api.client.get(url, headers=alice).json()
    assert (done["state"], done["files_done"], done["files_total"]) == ("succeeded", 1, 1)
    assert done["chunks_written"] >= 1 and done["files"][0]["status"] == "added"


def test_metrics_need_a_credential_and_count_what_matters(api: Api) -> None:
    auditor = api.user("aud", roles=("auditor",))
    reader = api.user("rdr2")
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=reader).status_code == 403
    api.upload(OPERATOR, [("a.txt", TEXT.encode())], classification="public", allow=["all-staff"])
    queued = api.client.get("/metrics", headers=auditor)
    assert queued.status_code == 200 and queued.headers["content-type"].startswith("text/plain")
    assert "kms_queue_depth 1.0" in queued.text
    api.work()
    api.client.post("/api/v1/search", headers=reader, json={"query": "hợp tác kinh tế"})
    text = api.client.get("/metrics", headers=auditor).text
    for line in (
        'kms_documents{status="indexed"} 1.0',
        "kms_queue_depth 0.0",
        'kms_jobs{state="succeeded"} 1.0',
        "kms_job_duration_seconds_count 1.0",
        "kms_search_latency_seconds_count 1.0",
    ):
        assert line in text, line
    assert "kms_chunks " in text and 'route="/api/v1/search"' in text


LEVELS = ("public", "internal", "confidential", "secret", "top_secret")
UNITS = ("hq", "hq/consular", "hq/policy", "mission/jp-tokyo", "mission/fr-paris")


def random_access(rng: random.Random) -> dict[str, object]:
    level = rng.choice([*LEVELS, None, "ultra"])
    tokens = ["all-staff", *(f"unit:{u}" for u in UNITS), "group:leadership", "user:u3", "unit:../x"]
    allow = rng.sample(tokens, rng.randint(0, 3))
    return {"classification": level, "allow": allow}


def test_download_and_job_reads_agree_with_can_read(api: Api, tmp_path: object) -> None:
    """A random corpus (with hidden and malformed access) × random callers, through the API."""
    from pathlib import Path

    rng = random.Random(20261123)
    services = api.services
    folder = Path(str(tmp_path)) / "corpus"
    folder.mkdir()
    for n in range(24):
        access = random_access(rng)
        path = folder / f"d{n:02d}.txt"
        path.write_text(f"{TEXT} Tài liệu số {n}.", encoding="utf-8")
        meta = {"doc_id": f"rd-{n:02d}", "allow": access["allow"]}
        if access["classification"] in LEVELS:
            meta["classification"] = access["classification"]
        path.with_name(path.name + ".meta.json").write_text(json.dumps(meta), encoding="utf-8")
    results = ingest_paths(services, [folder])
    indexed = {r.doc_id for r in results if r.status == "added"}
    assert len(indexed) >= 18  # malformed tokens fail their file
    with services.sessions() as session:
        from kms.db.models import DocumentRow

        metas = {row.doc_id: row.as_meta() for row in session.query(DocumentRow)}
    callers = []
    for n in range(16):
        roles = rng.choice([("reader",), ("ingestor",), ("admin",), ("auditor",), ("reader", "admin"), ()])
        principal = Principal(
            f"u{n}",
            rng.choice(LEVELS),
            rng.choice(UNITS),
            ("leadership",) if rng.random() < 0.3 else (),
            roles,
        )
        callers.append(
            (
                principal,
                api.user(principal.user_id, principal.clearance, principal.unit, roles, principal.groups),
            )
        )
    shown = hidden = 0
    for principal, headers in callers:
        reads = any(r in principal.roles for r in ("reader", "ingestor"))
        for doc_id in [*sorted(indexed), "rd-missing"]:
            response = api.client.get(f"/api/v1/documents/{doc_id}/download", headers=headers)
            allowed = (
                reads and doc_id in metas and can_read(principal, metas[doc_id], services.classification)
            )
            if allowed:
                assert response.status_code == 200, (principal, doc_id)
                shown += 1
            else:
                assert (response.status_code, response.json()) == (404, MISSING), (principal, doc_id)
                hidden += 1
    assert shown > 10 and hidden > 10


def test_check_finds_and_repairs_disagreements(services: Services, tmp_path: object) -> None:
    from pathlib import Path

    from kms.index.base import ChunkPoint
    from kms.index.sparse import SparseVec

    folder = Path(str(tmp_path)) / "docs"
    folder.mkdir()
    for n in range(4):
        (folder / f"c{n}.txt").write_text(f"{TEXT} Văn bản kiểm tra {n}.", encoding="utf-8")
    results = ingest_paths(services, [folder], {"classification": "internal", "allow": ["all-staff"]})
    ids = [str(r.doc_id) for r in results]
    assert check(services).clean
    dim = services.embedder.dim
    ghost = ChunkPoint(
        "ghost",
        1,
        0,
        [0.1] * dim,
        {"lex": SparseVec([], [])},
        {"doc_id": "ghost", "version": 1, "chunk_no": 0},
    )
    stale = ChunkPoint(ids[0], 99, 0, [0.1] * dim, {}, {"doc_id": ids[0], "version": 99, "chunk_no": 0})
    services.store.upsert([ghost, stale])
    services.store.set_payload(ids[1], {"allow": ["group:anyone"]})
    services.store.delete_document(ids[2])
    report = check(services)
    assert {(p.kind, p.doc_id) for p in report.problems} == {
        ("orphan_chunks", "ghost"),
        ("stale_chunks", ids[0]),
        ("access_mismatch", ids[0]),
        ("access_mismatch", ids[1]),
        ("missing_chunks", ids[2]),
    }
    repaired = check(services, repair=True)
    assert repaired.clean and len(repaired.repaired) == 5, repaired.as_dict()
    assert check(services, deep=True).clean


def test_json_logs_carry_extra_fields_and_no_surprises() -> None:
    record = logging.LogRecord(
        "ingest.worker", logging.INFO, __file__, 1, "job %s %s", (7, "succeeded"), None
    )
    record.job_id = 7
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "job 7 succeeded" and line["job_id"] == 7 and line["level"] == "INFO"
    assert set(line) == {"ts", "level", "logger", "msg", "job_id"}


def test_stats_report_the_queue(services: Services) -> None:
    from kms.stats import collect_stats

    jobs.submit(services.sessions, [], submitter=Principal.operator())
    stats = collect_stats(services)
    assert stats["jobs"] == {"succeeded": 1} and stats["queue_depth"] == 0 and stats["pending_files"] == 0
