"""Changing a document's access and deleting it, on a scratch index (these calls change data).

Re-classifying or changing `allow` updates every chunk before the call returns: no chunk with the
old permissions stays searchable. Deletion: ingestors for readable documents of their own unit,
admins within their clearance, everything else 404 (never revealing that the document exists).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ingest.pipeline import build_pipeline, run_pipeline
from kms.api.app import create_app
from kms.cli.main import app as cli
from kms.config import Settings
from kms.domain import Principal
from kms.security import audit, users
from kms.security.access import qdrant_filter
from kms.services import Services

SENTENCE = "Cơ quan đại diện tiếp nhận hồ sơ bảo hộ công dân, kiểm tra giấy tờ và báo cáo Cục Lãnh sự. "
ARTICLES = "\n\n".join(f"Điều {n}. Hồ sơ lãnh sự số {n}\n" + SENTENCE * 8 for n in range(1, 9))
DOCS = {
    "d-secret": (
        {"classification": "secret", "allow": ["unit:hq/consular"], "owner_unit": "hq/consular"},
        ARTICLES,
    ),
    "d-internal": (
        {"classification": "internal", "allow": ["all-staff"], "owner_unit": "hq/consular"},
        "Hồ sơ nội bộ.",
    ),
    "d-tokyo": (
        {"classification": "internal", "allow": ["unit:mission"], "owner_unit": "mission/jp-tokyo"},
        "Hồ sơ Tokyo.",
    ),
    "d-top": (
        {"classification": "top_secret", "allow": ["unit:hq"], "owner_unit": "hq/consular"},
        "Hồ sơ tuyệt mật.",
    ),
}
PEOPLE = {
    "consular": ("secret", "hq/consular", ["reader"]),
    "tokyo": ("internal", "mission/jp-tokyo", ["reader"]),
    "ingestor": ("secret", "hq/consular", ["ingestor"]),
    "ingestor-low": ("internal", "hq/consular", ["ingestor"]),
    "ingestor-tokyo": ("top_secret", "mission/jp-tokyo", ["ingestor"]),
    "admin-low": ("internal", "hq/digital", ["admin"]),
    "admin-top": ("top_secret", "hq/digital", ["admin"]),
}


def ingest(services: Services, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    sources, metas = [], []
    for doc_id, (access, text) in DOCS.items():
        path = folder / f"{doc_id}.md"
        path.write_text(text, encoding="utf-8")
        sources.append(str(path))
        metas.append({"doc_id": doc_id, "title": f"Hồ sơ {doc_id}", **access})
    outcome = run_pipeline(build_pipeline(services), sources, metas)
    assert not outcome["failed"] and len(outcome["written"]) == len(DOCS)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    """A data dir with the documents and users, built once; each test works on a copy."""
    root = tmp_path_factory.mktemp("doc-admin")
    services = Services.open(Settings(data_dir=root / "data"))
    ingest(services, root / "files")
    keys = {}
    with services.sessions() as session:
        for user_id, (clearance, unit, roles) in PEOPLE.items():
            users.create_user(
                session,
                user_id=user_id,
                clearance=clearance,
                unit=unit,
                roles=roles,
                classification=services.classification,
            )
            keys[user_id] = {"authorization": f"Bearer {users.create_key(session, user_id=user_id)[1]}"}
        session.commit()
    services.close()
    return root / "data", keys


def copy_of(template: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(template[0], data_dir)
    return data_dir


@pytest.fixture
def scratch(
    template: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path
) -> Iterator[tuple[Services, TestClient, dict[str, dict[str, str]]]]:
    services = Services.open(Settings(data_dir=copy_of(template, tmp_path)))
    with TestClient(create_app(services, operator_token="op")) as client:
        yield services, client, template[1]
    services.close()


def visible(client: TestClient, headers: dict[str, str]) -> set[str]:
    body = client.post(
        "/api/v1/search", json={"query": "hồ sơ", "k": 100, "mode": "sparse"}, headers=headers
    ).json()
    return {hit["doc_id"] for hit in body["results"]}


def chunks(services: Services, doc_id: str) -> list[dict[str, Any]]:
    return [r.payload or {} for r in services.store.document_chunks(doc_id, None)]


def test_set_access_changes_every_chunk_before_returning(scratch: Any) -> None:
    services, client, keys = scratch
    consular = Principal("consular", "secret", "hq/consular")
    assert len(chunks(services, "d-secret")) >= 3
    assert "d-secret" in visible(client, keys["consular"]) and "d-secret" not in visible(
        client, keys["tokyo"]
    )

    body = {"classification": "internal", "allow": ["unit:mission/jp-tokyo"]}
    response = client.put("/api/v1/admin/documents/d-secret/access", json=body, headers=keys["admin-top"])
    assert response.status_code == 200
    assert response.json() == {"doc_id": "d-secret", "owner_unit": "hq/consular", **body}
    # Every chunk carries the new permissions; none is left with the old ones.
    for payload in chunks(services, "d-secret"):
        assert payload["allow"] == ["unit:mission/jp-tokyo"] and payload["classification_rank"] == 1
    shown = {
        (r.payload or {})["doc_id"]
        for r in services.store.scroll(qdrant_filter(consular, services.classification))
    }
    assert "d-secret" not in shown
    assert "d-secret" not in visible(client, keys["consular"])
    assert client.get("/api/v1/documents/d-secret", headers=keys["consular"]).status_code == 404
    assert (
        client.get("/api/v1/documents/d-internal/similar?k=50", headers=keys["consular"]).status_code == 200
    )
    assert "d-secret" not in {
        h["doc_id"]
        for h in client.get("/api/v1/documents/d-internal/similar?k=50", headers=keys["consular"]).json()[
            "results"
        ]
    }
    assert "d-secret" in visible(client, keys["tokyo"])
    assert client.get("/api/v1/documents/d-secret", headers=keys["tokyo"]).status_code == 200

    with services.sessions() as session:
        record = audit.records(session, action="document.access")[-1]
    assert record.actor == "admin-top" and record.target == "d-secret"
    assert record.detail["before"] == {"classification": "secret", "allow": ["unit:hq/consular"]}
    assert record.detail["after"] == body


def test_tightening_hides_at_once_and_admins_stay_within_their_clearance(scratch: Any) -> None:
    _services, client, keys = scratch
    url = "/api/v1/admin/documents/d-internal/access"
    assert client.get(url, headers=keys["admin-low"]).status_code == 200
    tighter = {"classification": "secret", "allow": ["group:nobody"]}
    assert (
        client.put(url, json=tighter, headers=keys["admin-low"]).status_code == 200
    )  # tightening beyond oneself
    assert "d-internal" not in visible(client, keys["consular"])
    # Now above admin-low's clearance: it can neither see nor loosen it again, exactly like a missing one.
    assert client.get(url, headers=keys["admin-low"]).json() == {"detail": "not found"}
    loosen = {"classification": "public", "allow": ["all-staff"]}
    assert client.put(url, json=loosen, headers=keys["admin-low"]).status_code == 404
    assert (
        client.put("/api/v1/admin/documents/d-top/access", json=loosen, headers=keys["admin-low"]).status_code
        == 404
    )
    assert client.put(url, json=loosen, headers=keys["admin-top"]).status_code == 200
    assert "d-internal" in visible(client, keys["tokyo"])


@pytest.mark.parametrize(
    "body",
    [
        {"classification": "cosmic", "allow": ["all-staff"]},
        {"classification": "public", "allow": ["unit:"]},
        {"classification": "public", "allow": ["ALL-STAFF"]},
        {"classification": "public"},
        {"classification": "public", "allow": "all-staff"},
    ],
)
def test_bad_access_changes_are_422_and_change_nothing(scratch: Any, body: dict[str, Any]) -> None:
    services, client, keys = scratch
    before = chunks(services, "d-tokyo")
    response = client.put("/api/v1/admin/documents/d-tokyo/access", json=body, headers=keys["admin-top"])
    assert response.status_code == 422
    assert chunks(services, "d-tokyo") == before


@pytest.mark.parametrize(
    ("who", "doc_id", "status"),
    [
        ("consular", "d-internal", 403),  # a reader may not delete
        ("ingestor-tokyo", "d-internal", 404),  # another unit's document
        ("ingestor-low", "d-secret", 404),  # own unit, but above the ingestor's clearance
        ("ingestor", "nope", 404),
        ("admin-low", "d-secret", 404),  # above the admin's clearance
        ("ingestor", "d-internal", 204),
        ("admin-top", "d-top", 204),
    ],
)
def test_who_may_delete(scratch: Any, who: str, doc_id: str, status: int) -> None:
    services, client, keys = scratch
    response = client.delete(f"/api/v1/documents/{doc_id}", headers=keys[who])
    assert response.status_code == status
    if status == 404:
        assert response.json() == {"detail": "not found"}
    if doc_id in DOCS:
        assert bool(chunks(services, doc_id)) == (status != 204)
    if status == 204:
        assert client.get(f"/api/v1/documents/{doc_id}", headers=keys["admin-top"]).status_code in (403, 404)
        with services.sessions() as session:
            record = audit.records(session, action="document.delete", target=doc_id)[-1]
        assert record.actor == who


def test_searches_and_reads_are_audited_without_document_text(scratch: Any) -> None:
    services, client, keys = scratch
    client.post("/api/v1/search", json={"query": "hồ sơ bảo hộ", "k": 5}, headers=keys["consular"])
    client.get("/api/v1/documents/d-secret", headers=keys["consular"])
    client.get("/api/v1/documents/d-top", headers=keys["consular"])
    with services.sessions() as session:
        search = audit.records(session, action="search")[-1]
        reads = audit.records(session, action="document.read")[-2:]
        everything = json.dumps([r.as_dict() for r in audit.records(session)], ensure_ascii=False)
    assert search.actor == "consular" and search.detail["query"] == "hồ sơ bảo hộ"
    assert "d-secret" in search.detail["results"] and search.detail["total"] >= 1
    assert [(r.target, r.detail["outcome"]) for r in reads] == [("d-secret", "ok"), ("d-top", "not_found")]
    assert "Cơ quan đại diện tiếp nhận" not in everything  # never document text
    assert "Bearer" not in everything and "kms_" not in everything  # never keys


def test_set_access_from_the_cli(template: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path) -> None:
    env = {"KMS_DATA_DIR": str(copy_of(template, tmp_path))}
    runner = CliRunner()
    result = runner.invoke(
        cli, ["set-access", "d-secret", "--classification", "Mật", "--allow", "group:g1"], env=env
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["allow"] == ["group:g1"]
    result = runner.invoke(cli, ["set-access", "d-secret", "--clear-allow"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout) == {
        "doc_id": "d-secret",
        "classification": "confidential",
        "allow": [],
        "owner_unit": "hq/consular",
    }
    assert runner.invoke(cli, ["set-access", "nope", "--classification", "public"], env=env).exit_code == 4
    assert runner.invoke(cli, ["set-access", "d-secret", "--allow", "bad token"], env=env).exit_code == 2
    assert runner.invoke(cli, ["set-access", "d-secret"], env=env).exit_code == 2
    services = Services.open(Settings(data_dir=tmp_path / "data"))
    try:
        assert all(p["allow"] == [] and p["classification_rank"] == 2 for p in chunks(services, "d-secret"))
        with services.sessions() as session:
            actors = {r.actor for r in audit.records(session, action="document.access")}
        assert all(a.startswith("local:") for a in actors) and len(actors) == 1
    finally:
        services.close()
