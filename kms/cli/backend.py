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
    def get_access(self, doc_id: str) -> dict[str, Any]: ...
    def set_access(self, doc_id: str, classification: str, allow: list[str]) -> dict[str, Any]: ...
    def reindex(self) -> dict[str, Any]: ...
    def check(self, *, repair: bool, deep: bool) -> dict[str, Any]: ...
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


def open_backend(settings: Settings, *, progress: bool = True, as_user: str | None = None) -> Backend:
    """`as_user`: act with that (enabled) user's permissions instead of the operator's."""
    server = running_server(settings)
    if server is not None:
        token = settings.token_file.read_text(encoding="utf-8").strip()
        return RemoteBackend(f"http://127.0.0.1:{server['port']}", token, as_user=as_user)
    services = Services.open(settings)
    try:
        return LocalBackend(services, progress=progress, as_user=as_user)
    except BaseException:
        services.close()
        raise


# Fields of a document a user (not the operator) sees: the API's DocumentOut, never the allow list.
_USER_DOCUMENT_FIELDS = (
    "doc_id",
    "title",
    "doc_number",
    "doc_type",
    "issuer",
    "issued_date",
    "language",
    "classification",
    "owner_unit",
    "origin_node",
    "version",
    "chunk_count",
    "text",
)


class LocalBackend:
    """Works on the store directly, as the local operator (audited as `local:<os user>`) or as a user."""

    def __init__(self, services: Services, *, progress: bool, as_user: str | None = None) -> None:
        from kms.search import SearchService
        from kms.security import users
        from kms.security.authn import operator_name

        self.services = services
        self.search_service = SearchService(services)
        self.progress = progress
        self.principal = Principal.operator(operator_name())
        self.actor = self.principal.user_id
        if as_user is not None:
            with services.sessions() as session:
                user = users.active_principal(session, as_user)
            if user is None:
                raise InvalidInput(f"no enabled user {as_user!r} to act as")
            self.principal, self.actor = user, f"{self.actor} as {as_user}"

    def _audit(self, action: str, target: str | None = None, **detail: Any) -> None:
        from kms.security import audit

        audit.append(self.services.sessions, actor=self.actor, action=action, target=target, detail=detail)

    def ingest(self, paths: list[Path], overrides: dict[str, Any]) -> list[dict[str, Any]]:
        from ingest.runner import ingest_paths
        from kms.cli.progress import progress_bar

        with progress_bar("ingest", enabled=self.progress) as report:
            results = ingest_paths(self.services, paths, overrides, progress=report, actor=self.actor)
        return [r.as_dict() for r in results]

    def search(self, query: SearchQuery) -> dict[str, Any]:
        result = self.search_service.search(self.principal, query)
        self._audit(
            "search",
            query=query.query,
            mode=query.mode,
            k=query.k,
            offset=query.offset,
            total=result.total,
            results=[hit.doc_id for hit in result.results],
        )
        return asdict(result)

    def document(self, doc_id: str) -> dict[str, Any]:
        try:
            document = self.search_service.document(self.principal, doc_id)
        except NotFound:
            self._audit("document.read", doc_id, outcome="not_found")
            raise
        self._audit("document.read", doc_id, outcome="ok", version=document.get("version"))
        if not self.principal.is_operator:
            document = {k: document.get(k) for k in _USER_DOCUMENT_FIELDS}
        return document

    def delete(self, doc_id: str) -> None:
        from ingest.runner import delete_document

        delete_document(self.services, doc_id, actor=self.actor)

    def get_access(self, doc_id: str) -> dict[str, Any]:
        from kms.db.registry import get_document

        with self.services.sessions() as session:
            row = get_document(session, doc_id)
            if row is None or row.status != "indexed":
                raise NotFound()
            meta = row.as_meta()
        return {k: meta[k] for k in ("doc_id", "classification", "allow", "owner_unit")}

    def set_access(self, doc_id: str, classification: str, allow: list[str]) -> dict[str, Any]:
        from ingest.runner import set_access

        return set_access(self.services, doc_id, classification, allow, actor=self.actor)

    def reindex(self) -> dict[str, Any]:
        from ingest.reindex import reindex
        from kms.cli.progress import progress_bar

        with progress_bar("reindex", enabled=self.progress) as report:
            result = reindex(self.services, progress=report)
        self._audit("index.reindex", result.get("collection"), documents=result.get("documents"))
        return result

    def check(self, *, repair: bool, deep: bool) -> dict[str, Any]:
        from ingest.check import check

        report = check(self.services, repair=repair, deep=deep).as_dict()
        if repair:
            self._audit("index.check", repaired=len(report["repaired"]), problems=len(report["problems"]))
        return report

    def stats(self) -> dict[str, Any]:
        from kms.stats import collect_stats

        return collect_stats(self.services)

    def close(self) -> None:
        self.services.close()


class RemoteBackend:
    def __init__(self, base_url: str, token: str, *, as_user: str | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"}
        if as_user is not None:
            headers["x-kms-as"] = as_user  # honoured for the operator token only
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(10.0, read=None))

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

    def get_access(self, doc_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/admin/documents/{doc_id}/access"))

    def set_access(self, doc_id: str, classification: str, allow: list[str]) -> dict[str, Any]:
        body = {"classification": classification, "allow": allow}
        return dict(self._call("PUT", f"/api/v1/admin/documents/{doc_id}/access", json=body))

    def reindex(self) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/local/reindex"))

    def check(self, *, repair: bool, deep: bool) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/local/check", json={"repair": repair, "deep": deep}))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/v1/local/stats"))

    def close(self) -> None:
        self.client.close()
