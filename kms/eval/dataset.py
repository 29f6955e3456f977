"""BEIR-format datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

BEIR `_id`s may hold `/`, spaces and any Unicode, none of which a kms `doc_id` allows, so every
corpus record gets a safe internal id (`beir-` + a digest of its `_id`); results are mapped back.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kms.errors import InvalidInput
from kms.text.normalize import nfc

__all__ = ["BeirDataset", "Record", "load_dataset", "safe_doc_id"]


@dataclass(frozen=True)
class Record:
    beir_id: str
    doc_id: str  # the kms doc_id it is indexed under
    title: str
    text: str


@dataclass
class BeirDataset:
    path: Path
    split: str
    corpus: list[Record]
    queries: dict[str, str]  # query id -> text, only the queries judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> BEIR doc id -> grade
    by_doc_id: dict[str, str] = field(default_factory=dict)  # kms doc_id -> BEIR _id

    @property
    def name(self) -> str:
        return self.path.name

    def corpus_digest(self) -> str:
        """sha256 over the corpus file's bytes: the index cache key's first part."""
        digest = hashlib.sha256()
        with (self.path / "corpus.jsonl").open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def safe_doc_id(beir_id: str) -> str:
    """A kms doc_id (`[A-Za-z0-9._:-]`, ≤ 128 chars) that stands for one BEIR `_id`."""
    return "beir-" + hashlib.sha256(nfc(beir_id).encode("utf-8")).hexdigest()[:24]


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path.name} line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "_id" not in record:
                raise InvalidInput(f"{path.name} line {number}: expected an object with an _id")
            yield record


def splits(path: Path) -> list[str]:
    folder = path / "qrels"
    return sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []


def _split_name(path: Path, split: str | None) -> str:
    available = splits(path)
    if split is None:
        if len(available) != 1:
            raise InvalidInput(
                f"{path} has qrels for {', '.join(available) or 'no split'}: choose one with --split"
            )
        return available[0]
    if split not in available:
        raise InvalidInput(f"no qrels/{split}.tsv in {path} (have: {', '.join(available) or 'none'})")
    return split


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, [])
        if [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise InvalidInput(f"{path.name}: expected the header query-id, corpus-id, score")
        for row in reader:
            if not row or not row[0].strip():
                continue
            if len(row) < 3:
                raise InvalidInput(f"{path.name}: a row has fewer than three columns")
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


def load_dataset(path: Path, split: str | None = None) -> BeirDataset:
    """Read a BEIR folder; `split` defaults to the only qrels file present."""
    path = path.expanduser().resolve()
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise InvalidInput(f"{path} has no {name}: not a BEIR dataset folder")
    split = _split_name(path, split)
    qrels = load_qrels(path / "qrels" / f"{split}.tsv")
    corpus: list[Record] = []
    by_doc_id: dict[str, str] = {}
    for item in _jsonl(path / "corpus.jsonl"):
        beir_id = str(item["_id"])
        doc_id = safe_doc_id(beir_id)
        if doc_id in by_doc_id:
            if by_doc_id[doc_id] == beir_id:
                raise InvalidInput(f"corpus.jsonl: duplicate _id {beir_id!r}")
            raise InvalidInput(f"corpus.jsonl: ids {beir_id!r} and {by_doc_id[doc_id]!r} collide")
        by_doc_id[doc_id] = beir_id
        corpus.append(
            Record(beir_id, doc_id, nfc(str(item.get("title") or "")), nfc(str(item.get("text") or "")))
        )
    queries = {
        str(item["_id"]): nfc(str(item.get("text") or ""))
        for item in _jsonl(path / "queries.jsonl")
        if str(item["_id"]) in qrels
    }
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise InvalidInput(f"qrels/{split}.tsv judges queries not in queries.jsonl: {missing[:5]}")
    return BeirDataset(
        path=path, split=split, corpus=corpus, queries=queries, qrels=qrels, by_doc_id=by_doc_id
    )
