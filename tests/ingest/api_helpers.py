"""Helpers for the upload, job and download tests: an app with users, a raw ASGI caller, a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.worker import Worker
from kms.api.app import create_app
from kms.domain import Principal
from kms.security import users
from kms.services import Services

OPERATOR_TOKEN = "jobs-tests-operator-token"
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class Api:
    services: Services
    app: FastAPI = field(init=False)
    client: TestClient = field(init=False)
    principals: dict[str, Principal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = create_app(self.services, operator_token=OPERATOR_TOKEN)
        self.client = TestClient(self.app)

    def user(
        self,
        user_id: str,
        clearance: str = "secret",
        unit: str = "hq/consular",
        roles: tuple[str, ...] = ("reader",),
        groups: tuple[str, ...] = (),
    ) -> dict[str, str]:
        with self.services.sessions() as session:
            users.create_user(
                session,
                user_id=user_id,
                clearance=clearance,
                unit=unit,
                groups=groups,
                roles=roles,
                classification=self.services.classification,
            )
            _info, key = users.create_key(session, user_id=user_id)
            session.commit()
        self.principals[user_id] = Principal(user_id, clearance, unit, groups, roles)
        return {"authorization": f"Bearer {key}"}

    def work(self) -> int:
        """Run queued jobs until none is due; returns how many ran."""
        worker = Worker(self.services)
        ran = 0
        while worker.run_once():
            ran += 1
        return ran

    def upload(self, headers: dict[str, str], files: list[tuple[str, bytes]], **data: Any) -> Any:
        parts = [("files", (name, content, "application/octet-stream")) for name, content in files]
        return self.client.post("/api/v1/ingest", headers=headers, files=parts, data=data)


def call_asgi(
    app: FastAPI, method: str, path: str, headers: dict[str, str], chunks: Iterator[bytes]
) -> tuple[int, bytes, int]:
    """Call the app with a request body pulled chunk by chunk; returns (status, body, chunks pulled)."""
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        try:
            chunk = next(chunks)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return int(start["status"]), body, pulled
