"""Retrieval quality and query latency per dataset and mode, through the real ingest + search path.

    python benchmarks/retrieval.py [--datasets DIR ...] [--modes hybrid dense sparse] [--no-variants]
                                   [--latency-queries 50]

Datasets default to every BEIR folder in ../shared/eval. Each index is built once and cached under
$KMS_DATA_DIR/eval-cache (see kms/eval/harness.py). Prints one JSON line per dataset × mode × query
variant: the queries as given, and the same queries with their diacritics stripped (`fold`).

Quality runs every judged query (k = 100, as the operator) with query vectors cached across modes and
variants (the same model's vectors, computed once). Latency is then measured on the first
`--latency-queries` queries of each mode and variant with live query embedding: p50/p95 per
`SearchService.search` call, embedding included.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import SHARED_EVAL, emit, percentiles
from kms.config import Settings
from kms.domain import SearchMode
from kms.eval.dataset import load_dataset
from kms.eval.embedding_cache import CachedEmbedder
from kms.eval.harness import open_index, run_queries
from kms.text.normalize import fold

MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", type=Path, nargs="*", help="BEIR folders (default: all in ../shared/eval)"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--no-variants", action="store_true", help="skip the queries-without-diacritics runs")
    parser.add_argument("--latency-queries", type=int, default=50, help="queries timed per mode and variant")
    args = parser.parse_args()
    folders = args.datasets or sorted(p for p in SHARED_EVAL.iterdir() if (p / "corpus.jsonl").is_file())
    if not folders:
        raise SystemExit(f"no datasets given and none found in {SHARED_EVAL}")
    settings = Settings()
    for folder in folders:
        dataset = load_dataset(folder)
        index = open_index(dataset, settings, cache_queries=True)
        embedder = index.services.embedder
        sample = list(dataset.queries)[: args.latency_queries]
        timed = replace(
            dataset,
            queries={q: dataset.queries[q] for q in sample},
            qrels={q: dataset.qrels[q] for q in sample},
        )
        try:
            for mode in args.modes:
                for variant in ("original",) if args.no_variants else ("original", "no_diacritics"):
                    transform = fold if variant == "no_diacritics" else None
                    set_query_cache(embedder, True)
                    result = run_queries(index, dataset, mode, transform=transform)
                    set_query_cache(embedder, False)
                    latency = percentiles(run_queries(index, timed, mode, transform=transform).latencies_ms)
                    emit(
                        {
                            "bench": "retrieval",
                            "dataset": dataset.name,
                            "split": dataset.split,
                            "mode": mode,
                            "queries": variant,
                            **{k: round(v, 4) for k, v in result.metrics.items() if k != "num_queries"},
                            "num_queries": int(result.metrics["num_queries"]),
                            "latency_queries": len(sample),
                            "p50_ms": latency["p50_ms"],
                            "p95_ms": latency["p95_ms"],
                            "documents": index.documents,
                            "index_build_s": round(index.build_seconds, 1),
                            "index_reused": index.reused,
                        }
                    )
        finally:
            index.close()


def set_query_cache(embedder: object, enabled: bool) -> None:
    if isinstance(embedder, CachedEmbedder):
        embedder.cache_queries = enabled


if __name__ == "__main__":
    main()
