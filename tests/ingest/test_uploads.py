"""POST /api/v1/ingest: streamed size limits, types by content, zip bombs, safe names, per-file errors,
the uploader's reach; and GET /api/v1/documents/{doc_id}/download."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from api_helpers import OPERATOR, Api, call_asgi

from ingest.uploads import UploadLimits, receive_multipart, safe_name
from kms.db.models import DocumentRow
from kms.errors import TooLarge
from kms.security import audit
from kms.services import Services

TEXT = "Số: 15/BC-ĐSQ\nBáo cáo về bảo hộ công dân tại Nhật Bản.\n\nĐiều 1. Tình hình\nCông dân được hỗ trợ kịp thời.\n"
BOUNDARY = "kmsBoundary7MA4YWxkTrZu0gW"


@pytest.fixture
def api(services: Services) -> Api:
    return Api(services)


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("báo cáo.txt", "báo cáo.txt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\..\\a.pdf", "a.pdf"),
        ("..", "upload"),
        (".hidden.txt", "hidden.txt"),
        ("a\x00b\r\n.txt", "a_b__.txt"),
        ("evil\u202etxt.exe", "evil_txt.exe"),
        ("CON.txt", "upload_CON.txt"),
        ("trailing. ", "trailing"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("", "upload"),
    ],
)
def test_file_names_are_made_safe(given: str, safe: str) -> None:
    assert safe_name(given) == safe


def test_an_upload_is_checked_queued_run_and_downloadable(
    api: Api, make_docx: Callable[..., bytes], zip_bomb_docx: Path
) -> None:
    ingestor = api.user("ing-1", "secret", "hq/consular", roles=("reader", "ingestor"))
    files = [
        ("báo cáo.txt", TEXT.encode()),
        ("../../../etc/passwd.docx", make_docx()),
        ("notes.txt", b"MZ\x90\x00" + bytes(300)),  # an executable named .txt
        ("bomb.docx", zip_bomb_docx.read_bytes()),
        ("photo.pdf", b"GIF89a" + bytes(64)),  # a GIF named .pdf
    ]
    response = api.upload(
        ingestor,
        files,
        classification="internal",
        allow=["unit:hq"],
        file_metadata=json.dumps({"báo cáo.txt": {"doc_id": "bc-15", "title": "Báo cáo bảo hộ"}}),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert [f["name"] for f in job["files"]] == [
        "báo cáo.txt",
        "passwd.docx",
        "notes.txt",
        "bomb.docx",
        "photo.pdf",
    ]
    refused = {f["name"]: f["error"] for f in job["files"] if f["state"] == "failed"}
    assert set(refused) == {"notes.txt", "bomb.docx", "photo.pdf"}
    assert "executable" in refused["notes.txt"]
    assert "decompression limits" in refused["bomb.docx"]
    assert "not a valid PDF" in refused["photo.pdf"] or "GIF" in refused["photo.pdf"]
    assert job["state"] == "queued" and job["files_done"] == 3

    assert api.work() == 1
    done = api.client.get(f"/api/v1/jobs/{job['id']}", headers=ingestor).json()
    assert done["state"] == "failed" and done["error"] == "3 of 5 files failed"
    assert [f["status"] for f in done["files"]][:2] == ["added", "added"] and done["chunks_written"] >= 2
    with api.services.sessions() as session:
        row = session.get(DocumentRow, "bc-15")
        assert row is not None and row.title == "Báo cáo bảo hộ" and row.owner_unit == "hq/consular"
        assert row.source_path == "upload:báo cáo.txt" and row.file_name == "báo cáo.txt"

    inside = api.user("reader-hq", "internal", "hq/policy")
    outside = api.user("reader-tokyo", "top_secret", "mission/jp-tokyo")
    download = api.client.get("/api/v1/documents/bc-15/download", headers=inside)
    assert download.status_code == 200 and download.content == TEXT.encode()
    assert download.headers["content-disposition"] == "attachment; filename*=utf-8''b%C3%A1o%20c%C3%A1o.txt"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-type"].startswith("text/plain")
    for headers, doc_id in ((outside, "bc-15"), (inside, "no-such-doc")):
        hidden = api.client.get(f"/api/v1/documents/{doc_id}/download", headers=headers)
        assert (hidden.status_code, hidden.json()) == (404, {"detail": "not found"})
    assert api.client.get("/api/v1/documents/bc-15/download").status_code == 401
    with api.services.sessions() as session:
        outcomes = [r.detail["outcome"] for r in audit.records(session, action="document.download")]
    assert outcomes == ["ok", "not_found", "not_found"]


def test_the_size_limit_stops_reading_the_stream(services: Services) -> None:
    services.settings.max_upload_bytes = 256 * 2**10
    app = Api(services).app
    headers = {**OPERATOR, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}

    def endless() -> Iterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        while True:
            yield b"a" * 2**16

    status, body, pulled = call_asgi(app, "POST", "/api/v1/ingest", headers, endless())
    assert status == 413 and b"larger than the limit of 262144 bytes" in body
    assert pulled <= 7  # 256 KiB in 64 KiB chunks, plus the headers: nothing was spooled beyond
    assert not list((services.originals.root / ".incoming").glob("*"))  # the partial file is gone

    declared = {**headers, "content-length": str(services.settings.max_upload_request_bytes + 1)}
    status, body, pulled = call_asgi(app, "POST", "/api/v1/ingest", declared, endless())
    assert (status, pulled) == (413, 0)  # refused on Content-Length alone


def test_the_receiver_streams_files_into_the_content_store(services: Services) -> None:
    limits = UploadLimits(max_file_bytes=1000, max_request_bytes=10_000, max_files=2)
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{{"doc_type": "report"}}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\nxin chào\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7):  # boundaries split across chunks
            yield data[start : start + 7]

    received = asyncio.run(
        receive_multipart(
            chunks(body),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
            content_length=None,
            limits=limits,
            originals=services.originals,
        )
    )
    assert received.fields == {"metadata": ['{"doc_type": "report"}']}
    [file] = received.files
    assert (file.name, file.size) == ("a.txt", len("xin chào".encode()))
    assert services.originals.get(file.sha256) == "xin chào".encode()

    three = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{n}.txt"\r\n\r\nx\r\n'.encode()
        for n in range(3)
    )
    with pytest.raises(TooLarge, match="too many files"):
        asyncio.run(
            receive_multipart(
                chunks(three + f"--{BOUNDARY}--\r\n".encode()),
                content_type=f"multipart/form-data; boundary={BOUNDARY}",
                content_length=None,
                limits=limits,
                originals=services.originals,
            )
        )


def test_uploads_stay_within_the_uploaders_reach(api: Api) -> None:
    ingestor = api.user("ing-2", "internal", "hq/consular", roles=("reader", "ingestor"))
    job = api.upload(
        ingestor,
        [("a.txt", TEXT.encode()), ("b.txt", TEXT.encode() + b"b"), ("c.txt", TEXT.encode() + b"c")],
        classification="internal",
        allow=["all-staff"],
        file_metadata=json.dumps(
            {
                "a.txt": {"classification": "secret"},
                "b.txt": {"owner_unit": "mission/fr-paris"},
                "c.txt": {"owner_unit": "hq/consular/visa"},
            }
        ),
    ).json()
    errors = {f["name"]: f["error"] for f in job["files"]}
    assert errors == {
        "a.txt": "classification is above your clearance",
        "b.txt": "owner_unit 'mission/fr-paris' is not your unit",
        "c.txt": None,
    }

    reader = api.user("reader-only", "secret", "hq/consular")
    assert api.upload(reader, [("a.txt", b"x")]).status_code == 403
    assert api.client.post("/api/v1/ingest", files=[("files", ("a.txt", b"x"))]).status_code == 401
    bad = api.upload(ingestor, [("a.txt", b"x")], metadata="{not json")
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
    assert api.client.post("/api/v1/ingest", headers=ingestor, json={"files": []}).status_code == 422


def test_an_existing_document_is_replaced_only_by_who_may_delete_it(api: Api) -> None:
    api.upload(
        OPERATOR,
        [("policy.txt", TEXT.encode())],
        classification="secret",
        allow=["unit:hq/policy"],
        owner_unit="hq/policy",
        file_metadata=json.dumps({"policy.txt": {"doc_id": "policy-1"}}),
    )
    api.work()
    other = api.user("ing-3", "top_secret", "hq/consular", roles=("reader", "ingestor"))
    job = api.upload(
        other,
        [("mine.txt", b"Noi dung khac hoan toan.")],
        classification="public",
        allow=["all-staff"],
        file_metadata=json.dumps({"mine.txt": {"doc_id": "policy-1"}}),
    ).json()
    api.work()
    [file] = api.client.get(f"/api/v1/jobs/{job['id']}", headers=other).json()["files"]
    assert file["status"] == "failed" and "not available" in file["error"]
    with api.services.sessions() as session:
        row = session.get(DocumentRow, "policy-1")
        assert row is not None and row.classification == "secret" and row.version == 1
