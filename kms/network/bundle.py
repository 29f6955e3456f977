"""Content bundles: one document version's metadata, chunks with their vectors, and the original.

A bundle is canonical JSON (its sha256 is what a signed change names), stored and sent gzipped.
Vectors travel as little-endian float32 / uint32 in base64, exactly as the index holds them, so
the receiver never re-embeds. Access fields are NOT in a bundle: they come from the signed change
and the receiver rebuilds every chunk payload itself (`chunk_payload`), so a peer cannot smuggle a
permission field into the index.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from kms.db.models import DocumentRow
from kms.errors import KmsError
from kms.index.base import doc_condition, version_condition
from kms.index.sparse import SparseVec
from kms.services import Services

FORMAT = 1
META_FIELDS = (
    "title",
    "doc_number",
    "doc_type",
    "issuer",
    "issued_date",
    "language",
    "owner_unit",
    "origin_node",
    "sha256",
    "meta_hash",
    "file_name",
    "original_sha256",
    "text",
)
MAX_RAW_BYTES = 1 << 30  # a decompressed bundle larger than this is refused (decompression bombs)


class StaleContent(KmsError):
    """The index does not (yet) hold exactly this version's chunks: a write is under way."""


class BadBundle(KmsError):
    """A bundle failed its digest or does not describe what its change said."""


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _f32(values: Any) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def _u32(values: Any) -> str:
    return base64.b64encode(np.asarray(values, dtype="<u4").tobytes()).decode("ascii")


def _floats(text: str) -> list[float]:
    return [float(x) for x in np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in np.frombuffer(base64.b64decode(text, validate=True), dtype="<u4")]


def _sparse_parts(vector: Any) -> tuple[list[int], list[float]] | None:
    if isinstance(vector, models.SparseVector):
        return list(vector.indices), list(vector.values)
    if isinstance(vector, dict) and "indices" in vector:
        return list(vector["indices"]), list(vector["values"])
    return None


def row_meta(row: DocumentRow) -> dict[str, Any]:
    return {
        "title": row.title,
        "doc_number": row.doc_number,
        "doc_type": row.doc_type,
        "issuer": row.issuer,
        "issued_date": row.issued_date.isoformat() if row.issued_date else None,
        "language": row.language,
        "owner_unit": row.owner_unit,
        "origin_node": row.origin_node,
        "sha256": row.sha256,
        "meta_hash": row.meta_hash,
        "file_name": row.file_name,
        "original_sha256": row.original_sha256,
        "text": row.text,
    }


def build(services: Services, row: DocumentRow, *, model: str, dim: int, origin: str) -> bytes:
    """The canonical bundle bytes of `row`'s current version, read from the index and the originals."""
    store = services.store
    chunk_filter = models.Filter(must=[doc_condition(row.doc_id), version_condition(row.version)])
    chunks: list[dict[str, Any]] = []
    for record in store.scroll(chunk_filter, with_vectors=True):
        payload = record.payload or {}
        vectors = record.vector if isinstance(record.vector, dict) else {}
        dense = vectors.get(store.layout.dense_name)
        if not isinstance(dense, list) or len(dense) != dim:
            raise StaleContent(f"chunk of {row.doc_id} v{row.version} has no {dim}-dim dense vector")
        sparse: dict[str, list[str]] = {}
        for name in store.layout.sparse:
            parts = _sparse_parts(vectors.get(name))
            if parts is not None and parts[0]:
                sparse[name] = [_u32(parts[0]), _f32(parts[1])]
        chunks.append(
            {
                "no": int(payload.get("chunk_no", 0)),
                "text": str(payload.get("text") or ""),
                "heading": str(payload.get("heading") or ""),
                "start": int(payload.get("start") or 0),
                "end": int(payload.get("end") or 0),
                "dense": _f32(dense),
                "sparse": sparse,
            }
        )
    if len(chunks) != row.chunk_count:
        raise StaleContent(
            f"{row.doc_id} v{row.version}: index has {len(chunks)} of {row.chunk_count} chunks"
        )
    chunks.sort(key=lambda c: int(c["no"]))
    original: dict[str, Any] | None = None
    if row.original_sha256 and services.originals.exists(row.original_sha256):
        data = services.originals.get(row.original_sha256)
        original = {"sha256": row.original_sha256, "data": base64.b64encode(data).decode("ascii")}
    meta = row_meta(row)
    meta["origin_node"] = row.origin_node or origin
    return canonical(
        {
            "format": FORMAT,
            "doc_id": row.doc_id,
            "version": row.version,
            "model": model,
            "dim": dim,
            "meta": meta,
            "chunks": chunks,
            "original": original,
        }
    )


@dataclass(frozen=True)
class BundleChunk:
    chunk_no: int
    text: str
    heading: str
    start: int
    end: int
    dense: list[float]
    sparse: dict[str, SparseVec]


@dataclass(frozen=True)
class Bundle:
    doc_id: str
    version: int
    model: str
    dim: int
    meta: dict[str, Any]
    chunks: list[BundleChunk]
    original: bytes | None


def parse(raw: bytes, *, expected_sha256: str, sparse_names: set[str]) -> Bundle:
    """Check the digest first, then decode; anything unexpected is a BadBundle."""
    if sha256_hex(raw) != expected_sha256:
        raise BadBundle("bundle content does not match the digest its change was signed with")
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise BadBundle(f"unknown bundle format {data.get('format')!r}")
        meta = {k: data["meta"].get(k) for k in META_FIELDS}
        dim = int(data["dim"])
        chunks = []
        for item in data["chunks"]:
            dense = _floats(item["dense"])
            if len(dense) != dim:
                raise BadBundle("a chunk's dense vector has the wrong dimension")
            sparse = {}
            for name, (indices, values) in (item.get("sparse") or {}).items():
                if name not in sparse_names:
                    raise BadBundle(f"unknown sparse vector {name!r}")
                sparse[name] = SparseVec(indices=_ints(indices), values=_floats(values))
            chunks.append(
                BundleChunk(
                    chunk_no=int(item["no"]),
                    text=str(item["text"]),
                    heading=str(item.get("heading") or ""),
                    start=int(item.get("start") or 0),
                    end=int(item.get("end") or 0),
                    dense=dense,
                    sparse=sparse,
                )
            )
        original = None
        if data.get("original"):
            original = base64.b64decode(data["original"]["data"], validate=True)
            if sha256_hex(original) != data["original"]["sha256"] or data["original"]["sha256"] != meta.get(
                "original_sha256"
            ):
                raise BadBundle("the original file does not match its digest")
        return Bundle(
            doc_id=str(data["doc_id"]),
            version=int(data["version"]),
            model=str(data["model"]),
            dim=dim,
            meta=meta,
            chunks=chunks,
            original=original,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBundle(f"malformed bundle: {exc}") from exc


def compress(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


def decompress(data: bytes, limit: int = MAX_RAW_BYTES) -> bytes:
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = decoder.decompress(data, limit)
    except zlib.error as exc:
        raise BadBundle(f"bundle is not valid gzip: {exc}") from exc
    if decoder.unconsumed_tail or not decoder.eof:
        raise BadBundle("bundle is truncated or larger than the limit")
    return raw


class BundleFiles:
    """Gzipped bundles on disk by digest: HQ's cache (built once, fetched by many) and a receiver's spool."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BadBundle("not a sha256 digest")
        return self.root / sha[:2] / f"{sha}.gz"

    def get(self, sha: str) -> bytes | None:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, sha: str, compressed: bytes, *, durable: bool = True) -> Path:
        """Write atomically; `durable=False` skips the fsync (for files checked by digest when read)."""
        target = self.path(sha)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(compressed)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        return target

    def discard(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every file (a spool at the head of the feed holds nothing still needed)."""
        if self.root.is_dir():
            for path in self.root.glob("*/*"):
                path.unlink(missing_ok=True)
