"""`kms eval`: retrieval quality of the real ingestion + search path on a BEIR-format dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from kms.config import Settings
from kms.domain import SearchMode
from kms.errors import InvalidInput, KmsError
from kms.text.normalize import fold

MODES = ("hybrid", "dense", "sparse")


def eval_command(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
    ],
    split: Annotated[str | None, typer.Option(help="qrels split (default: the only one present).")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of metrics.")] = False,
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="Build (or reuse) the index here and keep it.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Build in a temporary directory; reuse nothing.")
    ] = False,
    no_diacritics: Annotated[
        bool, typer.Option("--no-diacritics", help="Strip diacritics from every query first.")
    ] = False,
    run_file: Annotated[
        Path | None, typer.Option("--run-file", help="Write the run as {query_id: {doc_id: score}} JSON.")
    ] = None,
) -> None:
    """Index a dataset through the real pipeline (cached), run its queries, print nDCG@10, MRR@10,
    Recall@10, Recall@100 and queries/s."""
    from kms.cli.main import EXIT_FAILED, EXIT_USAGE, _fail
    from kms.cli.progress import progress_bar
    from kms.eval.dataset import load_dataset
    from kms.eval.harness import open_index, run_queries

    if mode not in MODES:
        raise _fail("--mode must be hybrid, dense or sparse", EXIT_USAGE)
    try:
        data = load_dataset(dataset, split)
    except InvalidInput as exc:
        raise _fail(str(exc), EXIT_USAGE) from exc
    settings = Settings()
    try:
        with progress_bar(f"index {data.name}", enabled=True) as report:
            index = open_index(data, settings, index_dir=index_dir, cache=not no_cache, progress=report)
    except InvalidInput as exc:
        raise _fail(str(exc), EXIT_USAGE) from exc
    except KmsError as exc:
        raise _fail(str(exc), EXIT_FAILED) from exc
    try:
        with progress_bar(f"{mode} queries", enabled=True) as report:
            result = run_queries(
                index,
                data,
                cast(SearchMode, mode),
                transform=fold if no_diacritics else None,
                progress=report,
            )
    finally:
        index.close()
    if run_file is not None:
        run_file.write_text(json.dumps(result.run, ensure_ascii=False), encoding="utf-8")
    summary: dict[str, Any] = {
        **{name: round(value, 6) for name, value in result.metrics.items() if name != "num_queries"},
        "num_queries": int(result.metrics["num_queries"]),
        "queries_per_s": round(result.queries_per_s, 2),
        "dataset": data.name,
        "split": data.split,
        "mode": mode,
        "no_diacritics": no_diacritics,
        "documents": index.documents,
        "failed_documents": len(index.failed),
        "index_reused": index.reused,
        "index_build_s": round(index.build_seconds, 1),
    }
    if index_dir is not None:
        summary["index_dir"] = str(index.directory)
    variant = " (queries without diacritics)" if no_diacritics else ""
    typer.echo(
        f"{data.name} [{data.split}] {mode}{variant}: {summary['num_queries']} queries, "
        f"{index.documents} documents ({len(index.failed)} failed to ingest)",
        err=as_json,
    )
    lines = [f"{name:<11} {summary[name]:.4f}" for name in ("ndcg@10", "mrr@10", "recall@10", "recall@100")]
    lines.append(f"{'queries/s':<11} {summary['queries_per_s']:.2f}")
    for line in lines:
        typer.echo(line, err=as_json)
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
