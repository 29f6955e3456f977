"""The access line: written by kms (uvicorn's own is off) after the response's last byte was sent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kms.api.routes.metrics import Metrics, MetricsMiddleware
from kms.services import Services


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_access_line_follows_the_response(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append(f"log {record.getMessage()} {getattr(record, 'duration_ms', None) is not None}")

    async def send(message: dict[str, Any]) -> None:
        events.append(str(message["type"]))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/documents/d1",
        "query_string": b"x=1",
        "http_version": "1.1",
        "client": ("127.0.0.1", 5000),
    }
    recorder = Recorder()
    logging.getLogger("kms.access").addHandler(recorder)
    try:
        with caplog.at_level(logging.INFO, logger="kms.access"):
            asyncio.run(MetricsMiddleware(_app, metrics=Metrics(services))(scope, receive, send))
    finally:
        logging.getLogger("kms.access").removeHandler(recorder)
    assert events == [
        "http.response.start",
        "http.response.body",
        'log 127.0.0.1:5000 - "GET /api/v1/documents/d1?x=1 HTTP/1.1" 201 True',
    ]


def test_an_asgi_client_given_as_a_list_is_logged(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # The ASGI spec allows any two-item iterable (test clients pass lists); uvicorn's own helper
    # formats only a tuple, and a failing access line would turn the response into a 500.
    async def send(message: dict[str, Any]) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"", "http_version": "1.1"}
    with caplog.at_level(logging.INFO, logger="kms.access"):
        asyncio.run(
            MetricsMiddleware(_app, metrics=Metrics(services))(
                {**scope, "client": ["10.0.0.7", 80]}, receive, send
            )
        )
    assert [r.getMessage() for r in caplog.records if r.name == "kms.access"] == [
        '10.0.0.7:80 - "GET /healthz HTTP/1.1" 201'
    ]
