"""Federated search at a mission: the local replica, plus HQ when the link is up, merged.

The mission asks HQ over mutual TLS with a statement signed by its node key: which user asks,
for which query, when, and a one-time nonce. HQ then searches as its own record of that user,
capped at the mission's ceiling (kms/network/hub.py): a mission can name a user, never raise one.

Latency: HQ is asked in parallel with the local search and waited for at most
`KMS_FEDERATION_TIMEOUT_S` from the start; when HQ failed, it is not asked again for
`KMS_FEDERATION_RETRY_S`, so while the link is down every answer is the local one at local speed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import httpx

from kms.domain import Principal, SearchHit, SearchQuery, SearchResult
from kms.network import pki, wire
from kms.network.bundle import canonical, sha256_hex
from kms.network.envelope import seal_assertion
from kms.network.node import NodeContext

log = logging.getLogger(__name__)
RRF_K = 60


@dataclass
class FederatedResult:
    result: SearchResult
    origins: list[str]  # the node that answered each hit
    hq_reachable: bool | None  # None: HQ was not asked (this node is HQ, or the operator searched)
    hq_error: str | None = None


def query_body(query: SearchQuery) -> dict[str, Any]:
    """The query as the search API's JSON (what the signed assertion covers)."""
    filters: dict[str, Any] = {}
    for name, value in dataclasses.asdict(query.filters).items():
        if name == "doc_ids" or value in (None, [], ""):
            continue
        filters[name] = value.isoformat() if isinstance(value, dt.date) else value
    return {
        "query": query.query,
        "k": query.k,
        "offset": query.offset,
        "mode": query.mode,
        "filters": filters,
    }


class Federator:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        settings = node.settings
        self.hq = settings.hq_node_id
        self.timeout = settings.federation_timeout_s
        self.retry_s = settings.federation_retry_s
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kms-federation")

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.node.settings.hq_url,
                    verify=pki.client_context(self.node.paths),
                    timeout=httpx.Timeout(self.timeout, connect=self.timeout),
                    trust_env=False,
                )
            return self._client

    def mark_down(self) -> None:
        self._down_until = time.monotonic() + self.retry_s

    def mark_up(self) -> None:
        self._down_until = 0.0

    def search(
        self,
        principal: Principal,
        query: SearchQuery,
        local: Callable[[Principal, SearchQuery], SearchResult],
    ) -> FederatedResult:
        me = self.node.node_id
        if principal.is_operator:  # the operator is nobody at HQ: local only
            result = local(principal, query)
            return FederatedResult(result, [me] * len(result.results), None)
        started = time.monotonic()
        wide = dataclasses.replace(query, offset=0, k=min(100, query.offset + query.k))
        future = None
        if started >= self._down_until:
            future = self._pool.submit(self._ask_hq, principal, wide)
        local_result = local(principal, wide)
        remote: SearchResult | None = None
        error: str | None = "HQ was not reachable recently" if future is None else None
        if future is not None:
            try:
                remote = future.result(timeout=max(0.0, started + self.timeout - time.monotonic()))
            except FutureTimeout:
                error = f"HQ did not answer within {self.timeout:.2f}s"
            except (httpx.HTTPError, OSError, ValueError) as exc:
                error = f"HQ not reachable: {type(exc).__name__}"
            if remote is None:
                self.mark_down()
                log.info("federated search without HQ: %s", error)
        return self._merge(local_result, remote, query, error)

    def _ask_hq(self, principal: Principal, query: SearchQuery) -> SearchResult:
        body = query_body(query)
        claims = {
            "type": "search",
            "node": self.node.node_id,
            "target": self.hq,
            "user_id": principal.user_id,
            "iat": int(time.time()),
            "nonce": secrets.token_hex(16),
            "query_sha256": sha256_hex(canonical(body)),
        }
        response = self._http().post(
            f"{wire.FEDERATION}/search",
            json={"identity": seal_assertion(self.node.key, claims), "query": body},
            extensions={"sni_hostname": pki.dns_name(self.hq)},
        )
        response.raise_for_status()
        data = response.json()
        hits = [
            SearchHit(**{**hit, "highlights": [(int(a), int(b)) for a, b in hit.get("highlights") or []]})
            for hit in data.get("results") or []
        ]
        return SearchResult(
            results=hits, total=int(data.get("total") or 0), facets=dict(data.get("facets") or {})
        )

    def _merge(
        self, local: SearchResult, remote: SearchResult | None, query: SearchQuery, error: str | None
    ) -> FederatedResult:
        me = self.node.node_id
        end = query.offset + query.k
        if remote is None:
            hits = local.results[query.offset : end]
            return FederatedResult(
                SearchResult(results=hits, total=local.total, facets=local.facets),
                [me] * len(hits),
                False,
                error,
            )
        scores: dict[str, float] = {}
        best: dict[str, tuple[SearchHit, str]] = {}
        for origin, result in ((me, local), (self.hq, remote)):
            for rank, hit in enumerate(result.results):
                scores[hit.doc_id] = scores.get(hit.doc_id, 0.0) + 1.0 / (RRF_K + rank + 1)
                best.setdefault(hit.doc_id, (hit, origin))  # the local copy wins: it opens here
        order = sorted(scores, key=lambda doc: (-scores[doc], doc))[query.offset : end]
        hits = [dataclasses.replace(best[doc][0], score=round(scores[doc], 6)) for doc in order]
        overlap = len({h.doc_id for h in local.results} & {h.doc_id for h in remote.results})
        facets: dict[str, dict[str, int]] = {}
        for name in set(local.facets) | set(remote.facets):
            counts: Counter[str] = Counter(local.facets.get(name) or {})
            counts.update(remote.facets.get(name) or {})
            facets[name] = dict(counts.most_common())
        return FederatedResult(
            SearchResult(results=hits, total=local.total + remote.total - overlap, facets=facets),
            [best[doc][1] for doc in order],
            True,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
