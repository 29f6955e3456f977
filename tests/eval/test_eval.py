"""`kms eval` end to end on a tiny BEIR dataset (and a slice of a shared dev set when present)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from kms.cli.main import app
from kms.config import Settings
from kms.errors import InvalidInput
from kms.eval.dataset import load_dataset, safe_doc_id
from kms.eval.harness import open_index, ranked_scores, run_queries
from kms.eval.metrics import evaluate, rank
from kms.text.normalize import fold

TINY = Path(__file__).parent / "data" / "tiny"
SHARED_EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval"
SCORE_PY = SHARED_EVAL / "score.py"
KEYS = {"ndcg@10", "mrr@10", "recall@10", "recall@100", "num_queries", "queries_per_s"}


def kms_eval(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    return subprocess.run(
        [sys.executable, "-m", "kms.cli.main", "eval", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], Path]:
    data_dir = tmp_path_factory.mktemp("eval-data")
    run_file = data_dir / "run.json"
    result = kms_eval(data_dir, "--dataset", str(TINY), "--json", "--run-file", str(run_file))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return data_dir, summary, run_file


def test_json_line_has_the_metrics_as_fractions(cli_run: tuple[Path, dict[str, object], Path]) -> None:
    _, summary, _ = cli_run
    assert set(summary) >= KEYS
    assert summary["num_queries"] == 7  # q8 is not judged
    for key in ("ndcg@10", "mrr@10", "recall@10", "recall@100"):
        assert 0.0 <= float(summary[key]) <= 1.0  # type: ignore[arg-type]
    assert float(summary["ndcg@10"]) >= 0.8  # type: ignore[arg-type]
    assert float(summary["queries_per_s"]) > 0  # type: ignore[arg-type]
    assert summary["mode"] == "hybrid" and summary["split"] == "test"


def test_run_reports_the_original_ids(cli_run: tuple[Path, dict[str, object], Path]) -> None:
    _, _, run_file = cli_run
    run = json.loads(run_file.read_text(encoding="utf-8"))
    corpus_ids = {
        json.loads(line)["_id"] for line in (TINY / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    }
    assert {doc for ranking in run.values() for doc in ranking} <= corpus_ids
    assert rank(run["q4"])[0] == "điện báo #7 (Tokyo)"
    assert rank(run["q3"])[0] == "nghị quyết 292/NQ-CP"


@pytest.mark.skipif(not SCORE_PY.exists(), reason=f"{SCORE_PY} is not present")
def test_metrics_agree_with_the_reference_scorer(cli_run: tuple[Path, dict[str, object], Path]) -> None:
    _, summary, run_file = cli_run
    reference = subprocess.run(
        [sys.executable, str(SCORE_PY), str(TINY / "qrels" / "test.tsv"), str(run_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(reference.stdout)
    for key in ("ndcg@10", "mrr@10", "recall@10", "recall@100"):
        assert float(summary[key]) == pytest.approx(expected[key], abs=5e-5), key  # type: ignore[arg-type]
    assert summary["num_queries"] == expected["num_queries"]


def in_process(data_dir: Path, *args: str) -> Result:
    env = {"KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    return CliRunner().invoke(app, ["eval", *args], env=env)


def test_second_run_reuses_the_cached_index(cli_run: tuple[Path, dict[str, object], Path]) -> None:
    data_dir, first, _ = cli_run
    again = in_process(data_dir, "--dataset", str(TINY), "--mode", "sparse", "--no-diacritics", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["index_reused"] is True and first["index_reused"] is False
    assert summary["mode"] == "sparse" and summary["no_diacritics"] is True


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert in_process(tmp_path, "--dataset", str(TINY), "--split", "nope").exit_code == 2
    assert in_process(tmp_path, "--dataset", str(tmp_path)).exit_code == 2
    assert in_process(tmp_path, "--dataset", str(TINY), "--mode", "fuzzy").exit_code == 2


def test_split_defaults_to_the_only_one_and_must_be_chosen_among_several(tmp_path: Path) -> None:
    assert load_dataset(TINY).split == "test"
    copy = tmp_path / "two-splits"
    (copy / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (copy / name).write_text((TINY / name).read_text(encoding="utf-8"), encoding="utf-8")
    for split in ("dev", "test"):
        (copy / "qrels" / f"{split}.tsv").write_text(
            (TINY / "qrels" / "test.tsv").read_text(encoding="utf-8")
        )
    with pytest.raises(InvalidInput, match="--split"):
        load_dataset(copy)
    assert load_dataset(copy, "dev").split == "dev"


def test_safe_doc_ids_are_valid_kms_ids_and_map_back() -> None:
    dataset = load_dataset(TINY)
    for record in dataset.corpus:
        assert record.doc_id == safe_doc_id(record.beir_id)
        assert record.doc_id.replace("-", "").isalnum() and len(record.doc_id) <= 128
        assert dataset.by_doc_id[record.doc_id] == record.beir_id


def test_duplicate_corpus_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    line = json.dumps({"_id": "a/b", "title": "", "text": "x"})
    (tmp_path / "corpus.jsonl").write_text(f"{line}\n{line}\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta/b\t1\n")
    with pytest.raises(InvalidInput, match="duplicate"):
        load_dataset(tmp_path)


def test_ranked_scores_keep_the_given_order_under_trec_eval_sorting() -> None:
    scores = ranked_scores(["a", "z", "m", "b"], [0.5, 0.5, 0.7, 0.1])
    assert rank(scores) == ["a", "z", "m", "b"]
    assert scores["a"] == 0.5


def _slice(source: Path, target: Path, documents: int, queries: int) -> Path:
    """The first `documents` passages of a BEIR set and up to `queries` queries judged on them."""
    (target / "qrels").mkdir(parents=True)
    corpus = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:documents]
    kept = {json.loads(line)["_id"] for line in corpus}
    split = sorted((source / "qrels").glob("*.tsv"))[0]
    rows = split.read_text(encoding="utf-8").splitlines()
    judged = [row for row in rows[1:] if row.split("\t")[1] in kept][:queries]
    wanted = {row.split("\t")[0] for row in judged}
    query_lines = [
        line
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in wanted
    ]
    (target / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (target / "queries.jsonl").write_text("\n".join(query_lines) + "\n", encoding="utf-8")
    (target / "qrels" / split.name).write_text("\n".join([rows[0], *judged]) + "\n", encoding="utf-8")
    return target


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_EVAL / "xquad-vi").exists(), reason="../shared/eval/xquad-vi is not present")
def test_a_slice_of_xquad_through_the_real_path(tmp_path: Path) -> None:
    dataset = load_dataset(_slice(SHARED_EVAL / "xquad-vi", tmp_path / "xquad-slice", 24, 40))
    index = open_index(dataset, Settings(data_dir=tmp_path / "data"), index_dir=tmp_path / "index")
    try:
        assert (
            index.documents == 24 and not index.failed and (tmp_path / "index" / "eval-index.json").exists()
        )
        scores = {mode: run_queries(index, dataset, mode).metrics for mode in ("hybrid", "dense", "sparse")}
        folded = run_queries(index, dataset, "hybrid", transform=fold).metrics
    finally:
        index.close()
    assert scores["hybrid"]["ndcg@10"] >= 0.85, scores
    assert scores["hybrid"]["recall@100"] == 1.0
    assert (
        scores["hybrid"]["ndcg@10"] >= max(scores["dense"]["ndcg@10"], scores["sparse"]["ndcg@10"]) - 0.03
    ), scores
    assert folded["ndcg@10"] >= scores["hybrid"]["ndcg@10"] - 0.1, (folded, scores)
    assert evaluate(dataset.qrels, {})["ndcg@10"] == 0.0
