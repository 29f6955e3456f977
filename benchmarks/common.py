"""Helpers shared by the benchmarks: corpora, timing and JSON output."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def beir_documents(dataset: str) -> Iterator[tuple[str, str, str]]:
    """(id, title, text) from a BEIR corpus in ../shared/eval, if present."""
    path = SHARED_EVAL / dataset / "corpus.jsonl"
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            yield str(record["_id"]), str(record.get("title") or ""), str(record["text"])


def write_corpus(folder: Path, documents: list[tuple[str, str, str]]) -> list[Path]:
    """Write documents as .txt files with public/all-staff sidecars; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (_doc_id, title, text) in enumerate(documents):
        path = folder / f"doc-{number:06d}.txt"
        path.write_text(f"{title}\n\n{text}" if title else text, encoding="utf-8")
        path.with_name(path.name + ".meta.json").write_text(
            json.dumps({"doc_id": f"bench-{number:06d}", "classification": "public", "allow": ["all-staff"]}),
            encoding="utf-8",
        )
        paths.append(path)
    return paths
