"""Ingestion throughput: the whole pipeline vs the raw embedder on the same chunks, in one run.

    python benchmarks/ingest.py [--docs 200] [--dataset alqac2023-train]

Prints one JSON object: documents/s and chunks/s of the pipeline (convert → clean → metadata →
split → embed → write), raw embedder passages/s on exactly the chunks the pipeline produced, and
their ratio (the machine is noisy: compare the ratio, not the absolute figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import SHARED_EVAL, beir_documents, emit, write_corpus  # noqa: E402
from ingest.components.chunk_embedder import passage_text  # noqa: E402
from ingest.runner import ingest_paths  # noqa: E402
from kms.config import Settings  # noqa: E402
from kms.demo import samples_dir  # noqa: E402
from kms.services import Services  # noqa: E402


def corpus(folder: Path, docs: int, dataset: str) -> list[Path]:
    if (SHARED_EVAL / dataset / "corpus.jsonl").exists():
        documents = [d for _, d in zip(range(docs), beir_documents(dataset), strict=False)]
        return write_corpus(folder, documents)
    return [samples_dir()]  # the bundled samples when ../shared is absent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--dataset", default="alqac2023-train")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-bench-ingest-") as tmp:
        paths = corpus(Path(tmp) / "corpus", args.docs, args.dataset)
        services = Services.open(Settings(data_dir=Path(tmp) / "data"))
        services.embedder.embed_passages(["khởi động mô hình"])  # load weights outside the timing
        started = time.perf_counter()
        results = ingest_paths(services, paths)
        pipeline_s = time.perf_counter() - started
        from haystack import Document

        texts = [passage_text(Document(content=str(r.payload["text"]), meta=r.payload))
                 for r in services.store.scroll(None) if r.payload]
        started = time.perf_counter()
        services.embedder.embed_passages(texts)
        embed_s = time.perf_counter() - started
        words = sum(len(t.split()) for t in texts)
        ok = [r for r in results if r.status != "failed"]
        emit({
            "bench": "ingest", "embedder": services.embedder.name, "docs": len(ok),
            "failed": len(results) - len(ok), "chunks": len(texts),
            "mean_words_per_chunk": round(words / max(1, len(texts)), 1),
            "pipeline_s": round(pipeline_s, 2), "pipeline_docs_per_s": round(len(ok) / pipeline_s, 2),
            "pipeline_chunks_per_s": round(len(texts) / pipeline_s, 2),
            "embedder_passages_per_s": round(len(texts) / embed_s, 2),
            "ratio": round((len(texts) / pipeline_s) / (len(texts) / embed_s), 3),
            "est_s_per_1000_docs": round(1000 * pipeline_s / max(1, len(ok)), 1),
        })
        services.close()


if __name__ == "__main__":
    main()
