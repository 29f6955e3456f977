"""Build an evaluation index through the real ingestion path and run a dataset's queries against it.

Every BEIR record becomes one file (its text) with a `.meta.json` sidecar (its title, a safe
doc_id, classification `public`, allow `[all-staff]`), ingested by `ingest.runner.ingest_paths`;
queries go through `SearchService.search` as the operator, k = 100 documents per query.

Built indexes are cached under `<KMS_DATA_DIR>/eval-cache/<key>/`, where the key covers the corpus
bytes, the embedding model and everything that decides what gets indexed (the source of the
tokenizer, sparse encoder, chunker, cleaner, metadata extraction and chunk writer, and the
collection layout), so a change to any of them builds a fresh index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from kms.config import Settings
from kms.domain import Principal, SearchMode, SearchQuery
from kms.embedding import create_embedder, model_fingerprint
from kms.errors import InvalidInput, KmsError
from kms.eval.dataset import BeirDataset
from kms.eval.embedding_cache import CachedEmbedder
from kms.eval.metrics import evaluate
from kms.services import Services

__all__ = ["EvalIndex", "EvalResult", "index_key", "open_index", "run_queries"]

log = logging.getLogger(__name__)

HARNESS_VERSION = "1"
MARKER = "eval-index.json"
DEPTH = 100  # documents retrieved per query (enough for Recall@100)
# Modules whose code decides what an index holds: a change to any of them invalidates cached indexes.
_INDEX_MODULES = (
    "kms.text.normalize",
    "kms.text.tokens",
    "kms.text.docnumber",
    "kms.text.language",
    "kms.text.legal",
    "kms.index.sparse",
    "ingest.components.text_cleaner",
    "ingest.components.metadata_extractor",
    "ingest.components.legal_splitter",
    "ingest.components.chunk_embedder",
    "ingest.components.chunk_writer",
)
Progress = Callable[[int, int], None]


def code_fingerprint(settings: Settings) -> str:
    digest = hashlib.sha256(HARNESS_VERSION.encode())
    for name in _INDEX_MODULES:
        source = getattr(import_module(name), "__file__", None)
        digest.update(name.encode() + b"\0" + (Path(source).read_bytes() if source else b""))
    digest.update((settings.index_config_dir / "collection.yaml").read_bytes())
    return digest.hexdigest()


def index_key(dataset: BeirDataset, settings: Settings) -> str:
    """Cache key: corpus bytes + embedding model + indexing code and layout."""
    parts = (dataset.corpus_digest(), model_fingerprint(settings.embedder), code_fingerprint(settings))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass
class EvalIndex:
    services: Services
    directory: Path
    key: str
    reused: bool
    build_seconds: float
    documents: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    temporary: bool = False

    def close(self) -> None:
        self.services.close()
        embedder = self.services._embedders.get(self.services.settings.embedder)
        if isinstance(embedder, CachedEmbedder):
            embedder.close()
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)


def _open_services(
    directory: Path, base: Settings, embedding_cache: Path | None, *, cache_queries: bool = False
) -> Services:
    """Services on an embedded store and SQLite registry in `directory` (never a shared server)."""
    embedded = base.store if base.store in ("edge", "local") else ""
    settings = base.model_copy(
        update={"data_dir": directory, "qdrant_url": "", "database_url": "", "store": embedded}
    )
    services = Services.open(settings, check_model=False)
    if embedding_cache is not None:
        services._embedders[settings.embedder] = CachedEmbedder(
            create_embedder(settings.embedder), embedding_cache, cache_queries=cache_queries
        )
    services.ensure_index()
    return services


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _prepare_directory(directory: Path, key: str) -> bool:
    """True if `directory` already holds the complete index for `key`; else leave it empty."""
    marker = _read_marker(directory)
    if marker is not None and marker.get("key") == key:
        return True
    if directory.exists() and any(directory.iterdir()):
        if marker is None and not (directory / "kms.sqlite3").exists():
            raise InvalidInput(
                f"{directory} is not empty and holds no eval index: choose another --index-dir"
            )
        shutil.rmtree(directory)  # an eval index of another key, or an interrupted build
    directory.mkdir(parents=True, exist_ok=True)
    return False


def _write_corpus(dataset: BeirDataset, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for record in dataset.corpus:
        path = folder / f"{record.doc_id}.txt"
        path.write_text(record.text, encoding="utf-8")
        meta: dict[str, Any] = {"doc_id": record.doc_id, "classification": "public", "allow": ["all-staff"]}
        if record.title:
            meta["title"] = record.title
        (folder / f"{record.doc_id}.txt.meta.json").write_text(
            json.dumps(meta, ensure_ascii=False), encoding="utf-8"
        )


def open_index(
    dataset: BeirDataset,
    settings: Settings,
    *,
    index_dir: Path | None = None,
    cache: bool = True,
    cache_queries: bool = False,
    progress: Progress | None = None,
) -> EvalIndex:
    """Open the cached index for `dataset`, building it first when needed.

    `index_dir` keeps the index there; otherwise it lives in the cache (or, with `cache=False`, in a
    temporary directory removed on `close()`). `cache_queries` also caches query vectors, for
    quality runs that send the same queries in several modes (it takes embedding out of latency).
    """
    from ingest.runner import ingest_paths  # the ingestion stack loads only when an index is built

    key = index_key(dataset, settings)
    cache_root = settings.data_dir / "eval-cache"
    temporary = index_dir is None and not cache
    if temporary:
        directory = Path(tempfile.mkdtemp(prefix="kms-eval-"))
    else:
        directory = (index_dir or cache_root / key).expanduser().resolve()
    reused = _prepare_directory(directory, key)
    embedding_cache = (
        cache_root
        / f"passages-{hashlib.sha256(model_fingerprint(settings.embedder).encode()).hexdigest()[:12]}.sqlite"
    )
    services = _open_services(
        directory, settings, embedding_cache if cache else None, cache_queries=cache_queries
    )
    if reused:
        marker = _read_marker(directory) or {}
        return EvalIndex(
            services,
            directory,
            key,
            reused=True,
            build_seconds=float(marker.get("build_seconds", 0.0)),
            documents=int(marker.get("documents", 0)),
            failed=list(marker.get("failed", [])),
        )
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="corpus-", dir=directory) as tmp:
            _write_corpus(dataset, Path(tmp))
            results = ingest_paths(services, [Path(tmp)], progress=progress, actor="local:eval")
    except BaseException:
        services.close()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    failed = [
        {"id": dataset.by_doc_id.get(r.doc_id or "", r.doc_id), "error": r.error}
        for r in results
        if r.status == "failed"
    ]
    for failure in failed:
        log.warning("eval document %r failed to ingest: %s", failure["id"], failure["error"])
    marker = {
        "key": key,
        "dataset": str(dataset.path),
        "documents": len(dataset.corpus),
        "failed": failed,
        "build_seconds": round(seconds, 1),
        "embedder": settings.embedder,
    }
    (directory / MARKER).write_text(json.dumps(marker, ensure_ascii=False, indent=1), encoding="utf-8")
    return EvalIndex(
        services,
        directory,
        key,
        reused=False,
        build_seconds=seconds,
        documents=len(dataset.corpus),
        failed=failed,
        temporary=temporary,
    )


@dataclass
class EvalResult:
    run: dict[str, dict[str, float]]  # query id -> BEIR doc id -> score (score.py's RUN.json)
    metrics: dict[str, float]
    seconds: float
    latencies_ms: list[float]

    @property
    def queries_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


def ranked_scores(doc_ids: list[str], scores: list[float]) -> dict[str, float]:
    """The hits' scores, with any tie or inversion nudged down to the next float, so that sorting
    the run as trec_eval does (score descending, then id descending) gives back exactly our order.
    """
    out: dict[str, float] = {}
    previous = math.inf
    for doc_id, score in zip(doc_ids, scores, strict=True):
        value = float(score)
        if value >= previous:
            value = math.nextafter(previous, -math.inf)
        out[doc_id] = value
        previous = value
    return out


def run_queries(
    index: EvalIndex,
    dataset: BeirDataset,
    mode: SearchMode,
    *,
    transform: Callable[[str], str] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Run every judged query as the operator and score the run against the qrels."""
    from kms.search import SearchService

    if not dataset.queries:
        raise KmsError("the split judges no queries")
    service = SearchService(index.services)
    principal = Principal.operator("local:eval")
    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    total = len(dataset.queries)
    started = time.perf_counter()
    for number, (query_id, text) in enumerate(dataset.queries.items(), start=1):
        query = transform(text) if transform else text
        begun = time.perf_counter()
        try:
            result = service.search(principal, SearchQuery(query=query, k=DEPTH, mode=mode))
        except (
            InvalidInput
        ) as exc:  # e.g. an empty query: an empty ranking, like a system that returns nothing
            log.warning("query %r not run: %s", query_id, exc)
            run[query_id] = {}
            continue
        finally:
            latencies.append((time.perf_counter() - begun) * 1000)
        ids = [dataset.by_doc_id.get(hit.doc_id, hit.doc_id) for hit in result.results]
        run[query_id] = ranked_scores(ids, [hit.score for hit in result.results])
        if progress:
            progress(number, total)
    seconds = time.perf_counter() - started
    return EvalResult(run=run, metrics=evaluate(dataset.qrels, run), seconds=seconds, latencies_ms=latencies)
