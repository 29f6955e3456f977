"""HTTP API over the sample index: shapes, validation errors, 404s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import call_asgi
from fastapi.testclient import TestClient

from kms.api.app import create_app
from kms.api.schemas import SearchOut, search_out_json
from kms.domain import Principal, SearchQuery, SearchResult
from kms.search import SearchService, _hit_from_payload
from kms.services import Services

TOKEN = "test-operator-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(sample_services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(sample_services, operator_token=TOKEN)) as test_client:
        yield test_client


def test_search_returns_grouped_hits_with_highlights(client: TestClient) -> None:
    response = client.post(
        "/api/v1/search", json={"query": "nghị quyết chuyển đổi số ngành ngoại giao"}, headers=AUTH
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "total", "facets"}
    ids = [hit["doc_id"] for hit in body["results"]]
    assert len(ids) == len(set(ids))  # grouped by document
    assert body["total"] >= len(ids) > 0
    first = body["results"][0]
    assert set(first) == {
        "doc_id",
        "title",
        "doc_number",
        "doc_type",
        "issuer",
        "issued_date",
        "language",
        "classification",
        "owner_unit",
        "score",
        "snippet",
        "highlights",
        "chunk_no",
    }
    for start, end in first["highlights"]:
        assert 0 <= start < end <= len(first["snippet"])
    assert set(body["facets"]) >= {"doc_type", "issuer", "owner_unit", "language", "classification", "year"}


@pytest.mark.parametrize("query", ["", "   ", "x" * 5000, "y" * 1001])
def test_bad_queries_get_422_with_message(client: TestClient, query: str) -> None:
    response = client.post("/api/v1/search", json={"query": query}, headers=AUTH)
    assert response.status_code == 422
    assert "query" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "a", "k": 0},
        {"query": "a", "k": 101},
        {"query": "a", "mode": "x"},
        {"query": "a", "offset": -1},
        {"query": "a", "filters": {"bogus": [1]}},
    ],
)
def test_bad_parameters_get_422(client: TestClient, body: dict[str, object]) -> None:
    assert client.post("/api/v1/search", json=body, headers=AUTH).status_code == 422


@pytest.mark.parametrize(
    ("content", "located"),
    [
        (b'{"query": "a",', "body"),  # cut off: not JSON
        (b"", "body"),
        (b'["a"]', "body"),  # JSON, but not an object
        (b'{"query": "a", "k": "ten"}', "body.k"),
        (b'{"k": 3}', "body.query"),
    ],
)
def test_malformed_bodies_get_422_located_in_the_body(
    client: TestClient, content: bytes, located: str
) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    response = client.post("/api/v1/search", content=content, headers=headers)
    assert response.status_code == 422
    locations = {".".join(str(part) for part in e["loc"]) for e in response.json()["errors"]}
    assert located in locations, locations


def test_oversized_body_is_413_before_it_is_read(client: TestClient) -> None:
    from kms.api.routes.search import MAX_BODY_BYTES

    padded = b'{"query": "a", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    headers = {**AUTH, "content-type": "application/json"}
    assert client.post("/api/v1/search", content=padded, headers=headers).status_code == 413
    # no Content-Length (chunked): refused once the bytes read pass the limit, the rest never read
    chunks = iter([b" " * 8192] * 64)
    status, _body, pulled = call_asgi(client.app, "POST", "/api/v1/search", headers, chunks)
    assert status == 413 and pulled == MAX_BODY_BYTES // 8192 + 1


def test_openapi_documents_the_search_body_and_answer(client: TestClient) -> None:
    operation = client.app.openapi()["paths"]["/api/v1/search"]["post"]  # type: ignore[attr-defined]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/SearchIn")
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SearchOut"
    )
    assert "422" in operation["responses"] and operation["security"] == [{"HTTPBearer": []}]


def test_offset_pages_through_documents(client: TestClient) -> None:
    first = client.post("/api/v1/search", json={"query": "bảo hộ công dân", "k": 3}, headers=AUTH).json()
    second = client.post(
        "/api/v1/search", json={"query": "bảo hộ công dân", "k": 3, "offset": 3}, headers=AUTH
    ).json()
    assert not {h["doc_id"] for h in first["results"]} & {h["doc_id"] for h in second["results"]}


def test_filters_restrict_results(client: TestClient) -> None:
    body = client.post(
        "/api/v1/search", json={"query": "báo cáo", "k": 20, "filters": {"language": ["en"]}}, headers=AUTH
    ).json()
    assert body["results"] and all(hit["language"] == "en" for hit in body["results"])


def test_document_and_similar(client: TestClient) -> None:
    hit = client.post("/api/v1/search", json={"query": "292/NQ-CP"}, headers=AUTH).json()["results"][0]
    document = client.get(f"/api/v1/documents/{hit['doc_id']}", headers=AUTH).json()
    assert document["doc_id"] == hit["doc_id"] and len(document["text"]) > 100
    similar = client.get(f"/api/v1/documents/{hit['doc_id']}/similar?k=5", headers=AUTH).json()["results"]
    assert 0 < len(similar) <= 5 and hit["doc_id"] not in {s["doc_id"] for s in similar}


@pytest.mark.parametrize("path", ["/api/v1/documents/nope", "/api/v1/documents/nope/similar"])
def test_missing_document_is_404(client: TestClient, path: str) -> None:
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404 and response.json() == {"detail": "not found"}


def test_no_credentials_is_401(client: TestClient) -> None:
    assert client.post("/api/v1/search", json={"query": "a"}).status_code == 401
    assert client.get("/api/v1/documents/x").status_code == 401


def test_health_and_ui_are_public(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    page = client.get("/").text
    assert 'id="view"' in page and "app.js" in page


def test_server_timing_header_only_when_enabled(client: TestClient, sample_services: Services) -> None:
    body = {"query": "nghị quyết chuyển đổi số"}
    assert "server-timing" not in client.post("/api/v1/search", json=body, headers=AUTH).headers
    original = sample_services.settings
    sample_services.settings = original.model_copy(update={"server_timing": True})
    try:
        response = client.post("/api/v1/search", json=body, headers=AUTH)
    finally:
        sample_services.settings = original
    assert response.status_code == 200
    durations = {}
    for metric in response.headers["server-timing"].split(","):
        name, _, value = metric.strip().partition(";dur=")
        durations[name] = float(value)
    assert set(durations) == {"embed", "retrieve", "index", "search"}
    assert 0 < durations["embed"] < durations["retrieve"] < durations["index"] < durations["search"]
    assert "timings" not in response.json()


@pytest.mark.parametrize(
    ("query", "mode"),
    [
        ("nghị quyết chuyển đổi số ngành ngoại giao", "hybrid"),
        ("ho chieu ngoai giao", "sparse"),
        ("consular protection of citizens abroad", "dense"),
        ("292/NQ-CP", "hybrid"),
    ],
)
def test_search_json_is_what_the_search_out_schema_gives(
    sample_services: Services, query: str, mode: str
) -> None:
    """The response body is written straight from the result (no second validation), yet it is
    byte for byte `SearchOut` of that result: only its fields, with its types."""
    result = SearchService(sample_services).search(Principal.operator(), SearchQuery(query=query, mode=mode))
    assert result.results and result.timings
    expected = SearchOut.model_validate(result, from_attributes=True).model_dump_json().encode()
    assert search_out_json(result) == expected


def test_odd_payload_values_become_the_schema_types() -> None:
    payload = {"doc_id": 7, "doc_number": 292, "issuer": 5, "issued_date": None, "chunk_no": "2"}
    hit = _hit_from_payload(payload, 0.5, "snippet", [(0, 3)])
    result = SearchResult(results=[hit], total=1, facets={"year": {"2020": 1}})
    expected = SearchOut.model_validate(result, from_attributes=True).model_dump_json().encode()
    assert search_out_json(result) == expected
    assert (hit.doc_id, hit.doc_number, hit.issuer, hit.chunk_no) == ("7", "292", "5", 2)
