"""`kms check`: does the index agree with the registry (the source of truth) and the originals?

For every document the registry says is indexed, the live collection must hold exactly its current
version's chunks 0..chunk_count-1, each carrying the registry's classification and allow list, and
its original must be in the content store. Anything else is a problem:

| kind             | what                                                      | repair                      |
|------------------|-----------------------------------------------------------|-----------------------------|
| orphan_chunks    | chunks of a document that is deleted or unknown           | delete them                 |
| stale_chunks     | chunks of another version than the registry's             | delete them                 |
| missing_chunks   | chunk numbers of the current version that are absent      | rebuild from the original   |
| extra_chunks     | chunk numbers beyond chunk_count                          | rebuild from the original   |
| access_mismatch  | a chunk's classification / allow differ from the registry | rewrite the access payload  |
| missing_original | the original is not in the content store                  | none: it cannot be rebuilt  |
| corrupt_original | (`deep`) the original's sha256 does not match             | none                        |

`check(repair=True)` fixes what it can, then checks again and reports what is left.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.components.chunk_writer import access_payload
from ingest.pipeline import build_pipeline, run_pipeline
from ingest.uploads import safe_name
from kms.db.models import DocumentRow
from kms.security.access import allow_tokens
from kms.services import Services

log = logging.getLogger(__name__)

REBUILD = frozenset({"missing_chunks", "extra_chunks"})
UNREPAIRABLE = frozenset({"missing_original", "corrupt_original"})


@dataclass
class Problem:
    kind: str
    doc_id: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    documents: int = 0  # indexed in the registry
    chunks: int = 0  # in the collection
    problems: list[Problem] = field(default_factory=list)
    repaired: list[Problem] = field(default_factory=list)
    repair_failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "documents": self.documents,
            "chunks": self.chunks,
            "problems": [p.as_dict() for p in self.problems],
            "repaired": [p.as_dict() for p in self.repaired],
            "repair_failed": list(self.repair_failed),
        }


@dataclass
class _Chunk:
    version: int
    chunk_no: int
    access: tuple[Any, Any, tuple[str, ...]]


def check(
    services: Services, *, repair: bool = False, deep: bool = False, collection: str | None = None
) -> CheckReport:
    """Compare registry, collection (`collection` or the live one) and originals; optionally repair."""
    report = _inspect(services, deep=deep, collection=collection)
    if not repair or report.clean:
        return report
    failed = _repair(services, report.problems, collection=collection)
    after = _inspect(services, deep=deep, collection=collection)
    after.repaired = [p for p in report.problems if p.kind not in UNREPAIRABLE]
    after.repair_failed = failed
    return after


def _expected_access(services: Services, row: DocumentRow) -> tuple[Any, Any, tuple[str, ...]]:
    payload = access_payload(services.classification, row.classification, list(row.allow or []))
    return payload["classification"], payload["classification_rank"], tuple(sorted(payload["allow"]))


def _inspect(services: Services, *, deep: bool, collection: str | None) -> CheckReport:
    report = CheckReport()
    chunks: dict[str, list[_Chunk]] = defaultdict(list)
    for record in services.store.scroll(None, collection=collection):
        payload = record.payload or {}
        report.chunks += 1
        access = (
            payload.get("classification"),
            payload.get("classification_rank"),
            tuple(sorted(allow_tokens(payload.get("allow")))),
        )
        chunks[str(payload.get("doc_id"))].append(
            _Chunk(int(payload.get("version", -1)), int(payload.get("chunk_no", -1)), access)
        )
    with services.sessions() as session:
        rows = {row.doc_id: row for row in session.scalars(select(DocumentRow))}
        session.expunge_all()
    problems = report.problems
    for doc_id in sorted(set(chunks) - {d for d, r in rows.items() if r.status == "indexed"}):
        state = rows[doc_id].status if doc_id in rows else "not in the registry"
        problems.append(
            Problem("orphan_chunks", doc_id, f"{len(chunks[doc_id])} chunk(s); document is {state}")
        )
    for doc_id, row in sorted(rows.items()):
        if row.status != "indexed":
            continue
        report.documents += 1
        have = chunks.get(doc_id, [])
        current = [c for c in have if c.version == row.version]
        stale = len(have) - len(current)
        if stale:
            problems.append(
                Problem("stale_chunks", doc_id, f"{stale} chunk(s) of other versions than {row.version}")
            )
        numbers = {c.chunk_no for c in current}
        expected = set(range(row.chunk_count))
        if expected - numbers or len(numbers) != len(current):
            problems.append(
                Problem(
                    "missing_chunks",
                    doc_id,
                    f"{len(expected - numbers)} of {row.chunk_count} chunk(s) missing",
                )
            )
        if numbers - expected:
            problems.append(
                Problem(
                    "extra_chunks", doc_id, f"{len(numbers - expected)} chunk(s) beyond {row.chunk_count}"
                )
            )
        access = _expected_access(services, row)
        wrong = sum(1 for c in have if c.access != access)
        if wrong:
            problems.append(
                Problem("access_mismatch", doc_id, f"{wrong} chunk(s) with other access than the registry")
            )
        original = services.originals.path(row.original_sha256 or "")
        if not row.original_sha256 or not original.exists():
            problems.append(Problem("missing_original", doc_id, "the original is not in the content store"))
        elif deep and _sha256(original) != row.original_sha256:
            problems.append(Problem("corrupt_original", doc_id, "the original's sha256 does not match"))
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _repair(services: Services, problems: list[Problem], *, collection: str | None) -> list[dict[str, str]]:
    store = services.store
    kinds: dict[str, set[str]] = defaultdict(set)
    for problem in problems:
        kinds[problem.doc_id].add(problem.kind)
    with services.sessions() as session:
        rows = {
            row.doc_id: row
            for row in session.scalars(select(DocumentRow).where(DocumentRow.doc_id.in_(list(kinds))))
        }
        session.expunge_all()
    rebuild: list[DocumentRow] = []
    for doc_id, found in sorted(kinds.items()):
        row = rows.get(doc_id)
        if "orphan_chunks" in found:
            store.delete_document(doc_id, collection=collection)
            log.warning("check: removed orphan chunks of %s", doc_id, extra={"doc_id": doc_id})
            continue
        if row is None:
            continue
        if found & REBUILD and "missing_original" not in found:
            rebuild.append(row)
            continue
        if "stale_chunks" in found:
            store.delete_document(doc_id, except_version=row.version, collection=collection)
        if "access_mismatch" in found:
            payload = access_payload(services.classification, row.classification, list(row.allow or []))
            store.set_payload(doc_id, payload, collection=collection)
            if payload["classification_rank"] is None:
                store.delete_payload_keys(doc_id, ["classification_rank"], collection=collection)
        log.warning("check: repaired %s (%s)", doc_id, ", ".join(sorted(found)), extra={"doc_id": doc_id})
    return rebuild_from_originals(services, rebuild, collection=collection) if rebuild else []


def rebuild_from_originals(
    services: Services, rows: list[DocumentRow], *, collection: str | None = None
) -> list[dict[str, str]]:
    """Re-index documents at their current version from their originals (after removing whatever
    the collection holds for them); returns the failures."""
    store = services.store
    target = collection or store.active_collection()
    pipeline = build_pipeline(services, collection=target)
    failed: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="kms-repair-") as tmp:
        for number, row in enumerate(rows):
            original = services.originals.path(row.original_sha256 or "")
            if not row.original_sha256 or not original.exists():
                failed.append({"doc_id": row.doc_id, "error": "the original is missing"})
                continue
            folder = Path(tmp) / str(number)
            folder.mkdir()
            link = folder / safe_name(row.file_name or "document.txt", default="document")
            link.symlink_to(original)
            meta = {k: v for k, v in row.as_meta().items() if v not in (None, "")}
            meta.update(
                sha256=row.sha256,
                meta_hash=row.meta_hash,
                original_path=row.source_path,
                file_name=row.file_name,
            )
            store.delete_document(row.doc_id, collection=collection)
            outcome = run_pipeline(pipeline, [str(link)], [meta])
            failed.extend({"doc_id": row.doc_id, "error": f["error"]} for f in outcome["failed"])
            if not outcome["failed"]:
                log.warning("check: rebuilt %s from its original", row.doc_id, extra={"doc_id": row.doc_id})
    return failed
