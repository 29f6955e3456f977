"""Document metadata given by people: CLI flags > sidecar > folder defaults (`.kms.yaml`).

Extraction from the text fills whatever is still missing later, in `MetadataExtractor`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from kms.config import Classification
from kms.domain import DOC_TYPES, LANGUAGES
from kms.errors import IngestError
from kms.security.access import is_valid_token, is_valid_unit

log = logging.getLogger(__name__)

SIDECAR_SUFFIXES = (".meta.json", ".meta.yaml", ".meta.yml")
FOLDER_DEFAULTS = ".kms.yaml"
FIELDS = (
    "doc_id",
    "title",
    "doc_number",
    "doc_type",
    "issuer",
    "issued_date",
    "language",
    "classification",
    "owner_unit",
    "allow",
)
DOC_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SIDECAR_MAX_BYTES = 1 << 20


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SIDECAR_SUFFIXES) or path.name == FOLDER_DEFAULTS


def _load_mapping(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _SIDECAR_MAX_BYTES:
        raise IngestError(f"metadata file {path.name} is larger than 1 MiB")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise IngestError(f"cannot parse metadata file {path.name}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise IngestError(f"metadata file {path.name} must hold a mapping")
    return data


def read_sidecar(path: Path) -> dict[str, Any]:
    for suffix in SIDECAR_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return _load_mapping(candidate)
    return {}


def folder_defaults(path: Path, root: Path) -> dict[str, Any]:
    """Merge `.kms.yaml` files from `root` down to the file's folder; nearer folders win."""
    merged: dict[str, Any] = {}
    parts = path.parent.relative_to(root).parts if path.is_relative_to(root) else ()
    folders = [root, *(root.joinpath(*parts[: i + 1]) for i in range(len(parts)))]
    for folder in folders:
        candidate = folder / FOLDER_DEFAULTS
        if candidate.is_file():
            merged.update({k: v for k, v in _load_mapping(candidate).items() if k != "doc_id"})
    return merged


def default_doc_id(path: Path, root: Path) -> str:
    """Deterministic id from the path relative to the ingested root: readable slug + short hash."""
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    folded = unicodedata.normalize("NFKD", relative.replace("đ", "d").replace("Đ", "D"))
    ascii_only = folded.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_only).strip("-.").lower()[:96] or "doc"
    digest = hashlib.sha256(unicodedata.normalize("NFC", relative).encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def resolve(
    path: Path, root: Path, overrides: dict[str, Any], classification: Classification
) -> dict[str, Any]:
    """Metadata people gave for `path`, validated; precedence CLI > sidecar > folder defaults."""
    merged: dict[str, Any] = {}
    for layer in (folder_defaults(path, root), read_sidecar(path), overrides):
        merged.update({k: v for k, v in layer.items() if v is not None})
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        log.warning("ignoring unknown metadata fields %s for %s", unknown, path.name)
    meta = validate({k: merged[k] for k in FIELDS if k in merged}, classification)
    meta.setdefault("doc_id", default_doc_id(path, root))
    return meta


def validate(raw: dict[str, Any], classification: Classification) -> dict[str, Any]:
    """Normalise and check each given field; raise IngestError naming the first bad one."""
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        meta[key] = _VALIDATORS[key](value, classification)
    return meta


def _text(value: Any, _c: Classification) -> str:
    if not isinstance(value, str | int | float):
        raise IngestError(f"expected text, got {type(value).__name__}")
    return unicodedata.normalize("NFC", str(value)).strip()


def _doc_id(value: Any, _c: Classification) -> str:
    text = str(value)
    if not DOC_ID.fullmatch(text):
        raise IngestError(f"invalid doc_id {text!r}: use 1–128 characters of A-Z a-z 0-9 . _ : -")
    return text


def _doc_type(value: Any, c: Classification) -> str:
    text = _text(value, c).lower()
    if text not in DOC_TYPES:
        raise IngestError(f"invalid doc_type {text!r} (known: {', '.join(DOC_TYPES)})")
    return text


def _language(value: Any, c: Classification) -> str:
    text = _text(value, c).lower()
    if text not in LANGUAGES:
        raise IngestError(f"invalid language {text!r} (known: vi, en)")
    return text


def _date(value: Any, _c: Classification) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError as exc:
        raise IngestError(f"invalid issued_date {value!r}: use YYYY-MM-DD") from exc


def _classification(value: Any, c: Classification) -> str:
    try:
        return c.parse(str(value))
    except Exception as exc:
        raise IngestError(str(exc)) from exc


def _unit(value: Any, c: Classification) -> str:
    text = _text(value, c)
    if not is_valid_unit(text):
        raise IngestError(f"invalid owner_unit {text!r}: use a unit path like hq/consular")
    return text


def _allow(value: Any, _c: Classification) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise IngestError("allow must be a list of tokens or a comma-separated string")
    tokens = [unicodedata.normalize("NFC", str(t)).strip() for t in items if str(t).strip()]
    bad = [t for t in tokens if not is_valid_token(t)]
    if bad:
        raise IngestError(
            f"malformed access token {bad[0]!r}: use all-staff, unit:<unit>, group:<name> or user:<id>"
        )
    return list(dict.fromkeys(tokens))


_VALIDATORS = {
    "doc_id": _doc_id,
    "title": _text,
    "doc_number": _text,
    "doc_type": _doc_type,
    "issuer": _text,
    "issued_date": _date,
    "language": _language,
    "classification": _classification,
    "owner_unit": _unit,
    "allow": _allow,
}


def meta_hash(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
