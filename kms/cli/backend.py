"""Where CLI commands run: against a running `kms serve` over loopback, or on the store directly.

The embedded store can be opened by one process at a time. While `kms serve` runs it owns the
store and writes `serve.json` (pid, port) and a 0600 token into the data dir; the CLI then sends
its work to that server. With no server running the CLI opens the store itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import httpx

from kms.config import Settings
from kms.domain import Principal, SearchQuery
from kms.errors import InvalidInput, KmsError, NotFound
from kms.services import Services


class Backend(Protocol):
    def ingest(self, paths: list[Path], overrides: dict[str, Any]) -> list[dict[str, Any]]: ...
    def search(self, query: SearchQuery) -> dict[str, Any]: ...
    def document(self, doc_id: str) -> dict[str, Any]: ...
    def delete(self, doc_id: str) -> None: ...
    def reindex(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def running_server(settings: Settings) -> dict[str, Any] | None:
    """serve.json of a live `kms serve` for this data dir, or None."""
    try:
        info = json.loads(settings.serve_file.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
        return dict(info)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_backend(settings: Settings, *, progress: bool = True) -> Backend:
    server = running_server(settings)
    if server is not None:
        token = settings.token_file.read_text(encoding="utf-8").strip()
        return RemoteBackend(f"http://127.0.0.1:{server['port']}", token)
    return LocalBackend(Services.open(settings), progress=progress)


class LocalBackend:
    def __init__(self, services: Services, *, progress: bool) -> None:
        from kms.search import SearchService

        self.services = services
        self.search_service = SearchService(services)
        self.progress = progress
        self.principal = Principal.operator()

    def ingest(self, paths: list[Path], overrides: dict[str, Any]) -> list[dict[str, Any]]:
        from ingest.runner import ingest_paths
        from kms.cli.progress import progress_bar

        with progress_bar("ingest", enabled=self.progress) as report:
            results = ingest_paths(self.services, paths, overrides, progress=report)
        return [r.as_dict() for r in results]

    def search(self, query: SearchQuery) -> dict[str, Any]:
        return asdict(self.search_service.search(self.principal, query))

    def document(self, doc_id: str) -> dict[str, Any]:
        return self.search_service.document(self.principal, doc_id)

    def delete(self, doc_id: str) -> None:
        from ingest.runner import delete_document

        delete_document(self.services, doc_id)

    def reindex(self) -> dict[str, Any]:
        from ingest.reindex import reindex
        from kms.cli.progress import progress_bar

        with progress_bar("reindex", enabled=self.progress) as report:
            return reindex(self.services, progress=report)

    def stats(self) -> dict[str, Any]:
        from kms.stats import collect_stats

        return collect_stats(self.services)

    def close(self) -> None:
        self.services.close()


class RemoteBackend:
    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=None),
        )

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.client.request(method, url, **kwargs)
        if response.status_code == 404:
            raise NotFound()
        if response.status_code == 422:
            raise InvalidInput(response.json().get("detail", "invalid input"))
        if response.status_code >= 400:
            raise KmsError(f"server answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def ingest(self, paths: list[Path], overrides: dict[str, Any]) -> list[dict[str, Any]]:
        body = {"paths": [str(p.expanduser().absolute()) for p in paths], "overrides": overrides}
        return list(self._call("POST", "/api/v1/local/ingest", json=body)["results"])

    def search(self, query: SearchQuery) -> dict[str, Any]:
        body = asdict(query)
        body["filters"] = {k: v for k, v in body["filters"].items() if v}
        return dict(self._call("POST", "/api/v1/search", json=body))

    def document(self, doc_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/documents/{doc_id}"))

    def delete(self, doc_id: str) -> None:
        self._call("DELETE", f"/api/v1/documents/{doc_id}")

    def reindex(self) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/local/reindex"))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/v1/local/stats"))

    def close(self) -> None:
        self.client.close()
