"""Saved searches and alerts: new matching documents the user may read, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest.runner import ingest_paths
from kms.api.app import create_app
from kms.security.users import create_key, create_user
from kms.services import Services


def add_doc(services: Services, folder: Path, doc_id: str, text: str, **meta: object) -> None:
    path = folder / f"{doc_id}.md"
    path.write_text(text, encoding="utf-8")
    path.with_name(path.name + ".meta.json").write_text(
        json.dumps({"doc_id": doc_id, **meta}), encoding="utf-8"
    )
    assert ingest_paths(services, [path])[0].status in {"added", "replaced"}


def key_for(services: Services, user_id: str, clearance: str, unit: str) -> dict[str, str]:
    with services.sessions() as session:
        create_user(
            session, user_id=user_id, clearance=clearance, unit=unit, classification=services.classification
        )
        _info, key = create_key(session, user_id=user_id)
        session.commit()
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, operator_token="op")) as test_client:
        yield test_client


def test_alerts_show_only_new_readable_matching_documents(
    services: Services, client: TestClient, tmp_path: Path
) -> None:
    tokyo = key_for(services, "tokyo.reader", "confidential", "mission/jp-tokyo")
    paris = key_for(services, "paris.reader", "confidential", "mission/fr-paris")
    public = {"classification": "public", "allow": ["all-staff"]}
    add_doc(
        services, tmp_path, "old-guidance", "Hướng dẫn cũ về thực tập sinh kỹ năng tại Nhật Bản.", **public
    )

    saved = client.post(
        "/api/v1/saved-searches", json={"name": "TTS", "query": "thuc tap sinh ky nang"}, headers=tokyo
    )
    assert saved.status_code == 201
    assert client.get("/api/v1/alerts", headers=tokyo).json() == {"alerts": [], "count": 0}

    add_doc(services, tmp_path, "new-guidance", "Hướng dẫn mới về bảo hộ thực tập sinh kỹ năng.", **public)
    add_doc(
        services,
        tmp_path,
        "new-secret-paris",
        "Điện mật về thực tập sinh kỹ năng tại Pháp.",
        classification="secret",
        allow=["unit:mission/fr-paris"],
    )
    add_doc(services, tmp_path, "new-unrelated", "Báo cáo xuất khẩu cà phê sang châu Âu.", **public)

    alerts = client.get("/api/v1/alerts", headers=tokyo).json()
    assert alerts["count"] == 1
    assert [hit["doc_id"] for hit in alerts["alerts"][0]["results"]] == ["new-guidance"]

    assert client.post("/api/v1/alerts/seen", headers=tokyo).status_code == 204
    assert client.get("/api/v1/alerts", headers=tokyo).json()["count"] == 0

    # Paris has no saved search: no alerts; and Tokyo's saved search does not exist for Paris.
    assert client.get("/api/v1/alerts", headers=paris).json()["count"] == 0
    saved_id = saved.json()["id"]
    assert client.get("/api/v1/saved-searches", headers=paris).json() == {"data": [], "count": 0}
    assert client.delete(f"/api/v1/saved-searches/{saved_id}", headers=paris).status_code == 404
    assert client.delete(f"/api/v1/saved-searches/{saved_id}", headers=tokyo).status_code == 204


def test_saved_search_validation(client: TestClient, services: Services) -> None:
    reader = key_for(services, "r1", "internal", "hq")
    assert client.post("/api/v1/saved-searches", json={"query": ""}, headers=reader).status_code == 422
    assert (
        client.post(
            "/api/v1/saved-searches", json={"query": "a", "filters": {"x": 1}}, headers=reader
        ).status_code
        == 422
    )
    assert client.get("/api/v1/alerts").status_code == 401
