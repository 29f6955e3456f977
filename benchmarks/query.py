"""Search latency over HTTP vs calling the embedder + Qdrant directly, at 1k and 5k chunks.

    python benchmarks/query.py [--sizes 1000 5000] [--queries 100]

Indexes are built through the real pipeline from ../shared/eval/alqac2023-train (real embeddings) and
cached under $KMS_DATA_DIR/bench (default ./data/bench) between runs. Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import (
    SHARED_EVAL,
    LoopbackClient,
    beir_documents,
    emit,
    kms_server,
    percentiles,
    write_corpus,
)
from ingest.runner import ingest_paths
from kms.config import Settings
from kms.domain import Principal, SearchQuery
from kms.search import SearchService, plan_query
from kms.services import Services

DATASET = "alqac2023-train"


def build(data_dir: Path, chunks: int) -> Services:
    services = Services.open(Settings(data_dir=data_dir))
    if services.store.count(None) >= chunks:
        return services
    source = list(beir_documents(DATASET))
    batch, number = 200, 0
    with tempfile.TemporaryDirectory() as tmp:
        while services.store.count(None) < chunks:
            documents = []
            for doc_id, title, text in itertools.islice(itertools.cycle(source), number, number + batch):
                copy = number // len(source)
                documents.append((doc_id, title, text if copy == 0 else f"{text}\n(Bản sao {copy})"))
                number += 1
            folder = Path(tmp) / f"b{number}"
            paths = write_corpus(folder, documents)
            for path in paths:  # unique ids across batches
                meta = path.with_name(path.name + ".meta.json")
                meta.write_text(meta.read_text().replace("bench-", f"bench-{number}-"), encoding="utf-8")
            ingest_paths(services, [folder])
            sys.stderr.write(f"\rindexed {services.store.count(None)} chunks")
    sys.stderr.write("\n")
    return services


def queries(limit: int) -> list[str]:
    path = SHARED_EVAL / DATASET / "queries.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return texts[:limit]


def direct_latency(services: Services, texts: list[str]) -> dict[str, dict[str, float]]:
    service = SearchService(services)
    operator = Principal.operator()
    raw, full = [], []
    for text in texts:
        started = time.perf_counter()
        plan = plan_query(text, "hybrid")
        service._retrieve(plan, None, 100)  # embed + fused Qdrant query, nothing else
        raw.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        service.search(operator, SearchQuery(query=text))
        full.append((time.perf_counter() - started) * 1000)
    return {"embed_plus_qdrant": percentiles(raw), "search_service": percentiles(full)}


def http_latency(data_dir: Path, texts: list[str]) -> dict[str, float]:
    with kms_server(data_dir) as (base, _pid):
        auth = {"authorization": f"Bearer {(data_dir / 'serve.token').read_text().strip()}"}
        client = LoopbackClient(base)
        client.post_json("/api/v1/search", {"query": "khởi động"}, auth)
        samples = []
        for text in texts:
            started = time.perf_counter()
            status, _headers, _body = client.post_json("/api/v1/search", {"query": text[:1000]}, auth)
            samples.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SystemExit(f"search answered {status}")
        return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    if not (SHARED_EVAL / DATASET).exists():
        raise SystemExit(f"needs {SHARED_EVAL / DATASET}")
    root = Settings().data_dir / "bench"
    texts = queries(args.queries)
    for size in args.sizes:
        data_dir = root / f"query-{size}"
        services = build(data_dir, size)
        chunks = services.store.count(None)
        direct = direct_latency(services, texts)
        services.close()
        http = http_latency(data_dir, texts)
        emit(
            {
                "bench": "query",
                "chunks": chunks,
                "queries": len(texts),
                "mode": "hybrid",
                **direct,
                "http": http,
                "http_over_direct_p50": round(http["p50_ms"] / direct["embed_plus_qdrant"]["p50_ms"], 3),
            }
        )


if __name__ == "__main__":
    main()
