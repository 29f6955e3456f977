"""The randomized differential test: random principals against one real index of random documents.

For each principal, every read path must show exactly the documents the reference predicate
`access.can_read` allows: the index filter alone, the registry clause, search results over HTTP
(all pages), totals and facets, `similar`, get-by-id and download (404 exactly like a missing
document).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from fastapi.testclient import TestClient
from security_helpers import MATCH_ALL, SEED, Case, SecureCorpus, random_principal

from kms.db.registry import readable_ids
from kms.search import SearchService
from kms.security.access import qdrant_filter

N_PRINCIPALS = int(os.environ.get("KMS_SECURITY_PRINCIPALS", "200"))
MISSING = {"detail": "not found"}


def search_all(client: TestClient, case: Case, mode: str) -> tuple[list[str], dict[str, Any]]:
    """Every page of a match-all search; returns the doc ids in order and the first page's body."""
    ids: list[str] = []
    first: dict[str, Any] | None = None
    offset = 0
    while True:
        response = client.post(
            "/api/v1/search",
            json={"query": MATCH_ALL, "k": 100, "offset": offset, "mode": mode},
            headers=case.headers,
        )
        assert response.status_code == 200, (case.slug, response.text)
        body = response.json()
        first = first or body
        ids += [hit["doc_id"] for hit in body["results"]]
        offset += 100
        if offset >= body["total"]:
            break
    assert first is not None
    return ids, first


def test_every_read_path_shows_exactly_what_can_read_allows(
    secure_corpus: SecureCorpus, security_stats: dict[str, Any]
) -> None:
    corpus, client = secure_corpus, secure_corpus.client
    services, classification = corpus.services, corpus.classification
    service = SearchService(services)
    rng = random.Random(SEED + 1)
    everything = set(corpus.docs)
    problems: list[str] = []
    leaks = pairs = http_reads = similar_calls = 0
    started = time.perf_counter()
    for n in range(N_PRINCIPALS):
        case = corpus.case(random_principal(rng, n))
        principal = case.principal
        expected = corpus.readable(principal)
        label = f"{case.slug} ({principal.clearance!r}, {principal.unit!r}, {principal.groups})"

        # The index filter and the registry clause, each on its own.
        in_index = {
            str((r.payload or {})["doc_id"])
            for r in services.store.scroll(qdrant_filter(principal, classification))
        }
        with services.sessions() as session:
            in_registry = readable_ids(session, principal, classification)

        # Search over HTTP: results (all pages), total and facets.
        mode = ("sparse", "sparse", "sparse", "dense", "hybrid")[n % 5]
        found, body = search_all(client, case, mode)
        if len(found) != len(set(found)):
            problems.append(f"{label}: a document appears twice in search results")
        if body["total"] != len(expected):
            problems.append(f"{label}: total {body['total']} != {len(expected)} readable")
        if body["facets"] != corpus.facets(expected):
            problems.append(f"{label}: facets {body['facets']} != {corpus.facets(expected)}")

        # get-by-id: the service for every document, HTTP for a sample (both must 404 alike).
        by_id = set()
        for doc_id in everything:
            try:
                service.document(principal, doc_id)
                by_id.add(doc_id)
            except Exception:  # NotFound
                pass
        sample = rng.sample(sorted(expected), min(4, len(expected))) + rng.sample(
            sorted(everything - expected), min(4, len(everything - expected))
        )
        for doc_id in sample:
            response = client.get(f"/api/v1/documents/{doc_id}", headers=case.headers)
            original = client.get(f"/api/v1/documents/{doc_id}/download", headers=case.headers)
            http_reads += 2
            if doc_id in expected:
                if response.status_code != 200 or response.json()["doc_id"] != doc_id:
                    problems.append(f"{label}: cannot read {doc_id} ({response.status_code})")
                if original.status_code != 200:
                    problems.append(f"{label}: cannot download {doc_id} ({original.status_code})")
                continue
            for what, answer in (("read", response), ("download", original)):
                if answer.status_code != 404 or answer.json() != MISSING:
                    leaks += 1
                    problems.append(f"LEAK {label}: {what} {corpus.docs[doc_id].slug} ({answer.status_code})")

        # similar: from a readable document, results are readable others; from a hidden one, 404.
        similar_seen: set[str] = set()
        for doc_id in sample[:2] + sample[-1:]:
            response = client.get(f"/api/v1/documents/{doc_id}/similar?k=100", headers=case.headers)
            similar_calls += 1
            if doc_id not in expected:
                if response.status_code != 404 or response.json() != MISSING:
                    leaks += 1
                    problems.append(f"LEAK {label}: similar of hidden {doc_id} ({response.status_code})")
                continue
            results = [hit["doc_id"] for hit in response.json()["results"]]
            similar_seen.update(results)
            others = expected - {doc_id}
            if not set(results) <= others or len(results) != min(100, len(others)):
                problems.append(f"{label}: similar of {doc_id} gave {len(results)} of {len(others)}")

        for path, shown in (
            ("index filter", in_index),
            ("registry", in_registry),
            ("search", set(found)),
            ("get-by-id", by_id),
            ("similar", similar_seen),
        ):
            extra = shown - expected
            leaks += len(extra)
            problems += [f"LEAK {label}: {path} shows {corpus.docs[d].slug}" for d in sorted(extra)[:5]]
            if path != "similar" and shown != expected:
                problems.append(f"{label}: {path} misses {sorted(expected - shown)[:5]}")
        pairs += len(everything)

    elapsed = time.perf_counter() - started
    security_stats.update(
        {
            "principals": N_PRINCIPALS,
            "documents": len(everything),
            "principal x document cases (index, registry, search, facets, get-by-id each)": pairs,
            "HTTP get-by-id and download checks": http_reads,
            "HTTP similar checks": similar_calls,
            "leaks": leaks,
            "differential test seconds": round(elapsed, 1),
        }
    )
    assert not problems, "\n".join(problems[:40])
    assert leaks == 0
