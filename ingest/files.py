"""What a job's files are: `FileSpec` (a file in the content store + its metadata), `FileResult`,
and preparing specs from paths (metadata precedence, size limit, copy into the content store).

No Haystack, no index and no model here, so queueing (`kms ingest --queue`, uploads, source syncs)
stays light; `ingest.runner` runs the specs through the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from ingest import metadata
from ingest.converters import IMAGE_EXTENSIONS, SUPPORTED_EXTENSIONS
from kms.config import Classification, Settings
from kms.errors import IngestError
from kms.originals import OriginalStore

INGESTIBLE_EXTENSIONS = SUPPORTED_EXTENSIONS | IMAGE_EXTENSIONS


@dataclass
class FileResult:
    path: str
    doc_id: str | None
    status: str  # added | unchanged | replaced | deleted | failed
    chunks: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileSpec:
    """One file of a job. Its bytes are in the content store under `sha256`; `meta` is what people
    gave (validated, `doc_id` included). `error`: refused before it could be queued."""

    name: str
    path: str
    sha256: str | None = None
    size: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    op: str = "ingest"  # ingest | delete
    error: str | None = None
    source_rel: str | None = None
    source_stat: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str | None:
        value = self.meta.get("doc_id")
        return str(value) if value else None


def expand(paths: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """Yield (file, root) for every ingestible file; folders are walked in sorted order."""
    for given in paths:
        path = given.expanduser().absolute()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = child.relative_to(path)
                if any(part.startswith(".") for part in relative.parts) or metadata.is_sidecar(child):
                    continue
                yield child, path
        elif not metadata.is_sidecar(path):
            yield path, path.parent


def prepare_file(
    path: Path,
    root: Path,
    overrides: dict[str, Any],
    *,
    classification: Classification,
    originals: OriginalStore,
    max_bytes: int,
    defaults: dict[str, Any] | None = None,
) -> FileSpec:
    """Resolve a file's metadata and keep its bytes in the content store (before anything is indexed).

    Precedence: `overrides` (CLI flags) > sidecar > `.kms.yaml` folder defaults > `defaults` (a
    source's settings). A file that cannot be read or has bad metadata comes back with `error`.
    """
    from ingest.uploads import safe_name

    spec = FileSpec(name=safe_name(path.name), path=str(path))
    try:
        if not path.is_file():
            raise IngestError("no such file")
        if path.suffix.lower() not in INGESTIBLE_EXTENSIONS and path.suffix:
            raise IngestError(f"unsupported file type {path.suffix!r}")
        meta = metadata.resolve(path, root, overrides, classification)
        if defaults:
            meta = {**metadata.validate(defaults, classification), **meta}
        spec.meta = meta
        stat = path.stat()
        if stat.st_size > max_bytes:
            raise IngestError(f"file is larger than the limit of {max_bytes} bytes")
        data = path.read_bytes()
    except (IngestError, OSError) as exc:
        spec.error = _reason(exc)
        return spec
    spec.size = len(data)
    spec.sha256 = originals.put(data)  # the original is kept before anything is indexed from it
    spec.source_stat = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return spec


class Catalog(Protocol):
    """What preparing and queueing files needs: no index, no model (`Services` is one)."""

    settings: Settings
    sessions: sessionmaker[Session]
    classification: Classification
    originals: OriginalStore


def prepare_paths(
    services: Catalog, paths: Iterable[Path], overrides: dict[str, Any] | None = None
) -> list[FileSpec]:
    """FileSpecs for files and folders (walked in sorted order); a repeated doc_id fails its file."""
    specs = [
        prepare_file(
            path,
            root,
            overrides or {},
            classification=services.classification,
            originals=services.originals,
            max_bytes=services.settings.max_upload_bytes,
        )
        for path, root in expand(paths)
    ]
    return mark_duplicates(specs)


def mark_duplicates(specs: list[FileSpec]) -> list[FileSpec]:
    seen: set[str] = set()
    for spec in specs:
        doc_id = spec.doc_id
        if spec.error is None and spec.op == "ingest" and doc_id is not None:
            if doc_id in seen:
                spec.error = f"duplicate doc_id {doc_id!r} in this batch"
            seen.add(doc_id)
    return specs


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return str(exc)
