"""Safe uploads: a streaming multipart reader that writes each file straight into the content store.

Nothing is spooled whole before it is checked:

- a `Content-Length` over the request limit is refused before a byte is read;
- each file part is hashed and written to `<originals>/.incoming/` as it arrives, and the request
  is refused (413) the moment a file passes the per-file limit or the body passes the request
  limit; a finished part is renamed into the content-addressed store (atomic, fsynced);
- form fields are small (64 KiB each) and few; part headers are bounded by the parser;
- file names are reduced to a safe base name (no directories, no control characters, no leading
  dots), since they are shown to people and used in download headers, never as paths;
- the type of each file is judged by its content (`converters.check_content`), with the DOCX
  zip-bomb limits; a file that fails is reported in the job with its reason, the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ingest import metadata
from ingest.converters import ConversionError, Limits, check_content
from ingest.files import FileSpec, mark_duplicates
from kms.config import Classification
from kms.domain import Principal
from kms.errors import IngestError, InvalidInput, TooLarge
from kms.originals import OriginalStore
from kms.security.access import is_valid_unit

MAX_FIELD_BYTES = 64 * 2**10
MAX_FIELDS = 200
MAX_NAME_CHARS = 200
INCOMING = ".incoming"
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f<>:\"/\\|?*\u202a-\u202e\u2066-\u2069]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def safe_name(name: str, *, default: str = "upload") -> str:
    """A file name that is safe to store, show and send back: its last path component, NFC, without
    control, bidi-override or reserved characters, leading dots or trailing dots/spaces, at most
    200 characters (the extension kept).

    `safe_name("../../etc/passwd")` == "passwd"; `safe_name("C:\\\\x\\\\..\\\\a.pdf")` == "a.pdf".
    """
    text = unicodedata.normalize("NFC", str(name))
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE_CHARS.sub("_", text).strip().lstrip(".").rstrip(". ")
    if not text or _WINDOWS_RESERVED.match(text):
        text = f"{default}{'_' + text if text else ''}"
    if len(text) > MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            text = text[:MAX_NAME_CHARS]
    return text


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_request_bytes: int
    max_files: int
    max_field_bytes: int = MAX_FIELD_BYTES
    max_fields: int = MAX_FIELDS


@dataclass
class ReceivedFile:
    """One uploaded file, already in the content store under `sha256`."""

    field: str
    name: str  # safe_name() of what the client sent
    given_name: str  # what the client sent (for matching per-file metadata)
    sha256: str
    size: int


@dataclass
class Received:
    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)

    def field_value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


class _Part:
    """The part being read: headers, then either a small field buffer or a file being written."""

    def __init__(self) -> None:
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.buffer = bytearray()
        self.handle: Any = None
        self.tmp: Path | None = None
        self.digest = hashlib.sha256()
        self.size = 0


class MultipartReceiver:
    """Feed it body chunks; it enforces the limits and writes files into `originals` as they come."""

    def __init__(self, boundary: bytes, limits: UploadLimits, originals: OriginalStore) -> None:
        self.limits = limits
        self.originals = originals
        self.incoming = originals.root / INCOMING
        self.result = Received()
        self.total = 0
        self._part: _Part | None = None
        self._temps: list[Path] = []
        self._error: Exception | None = None
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    # ---- feeding -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > self.limits.max_request_bytes:
            raise TooLarge(f"the upload is larger than the limit of {self.limits.max_request_bytes} bytes")
        try:
            self.parser.write(chunk)
        except FormParserError as exc:
            raise self._error or InvalidInput(f"malformed multipart body: {exc}") from exc
        if self._error is not None:
            raise self._error

    def finish(self) -> Received:
        try:
            self.parser.finalize()
        except FormParserError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
        if self._part is not None:
            raise InvalidInput("malformed multipart body: the last part is incomplete")
        return self.result

    def discard(self) -> None:
        """Remove half-written files (after an error); finished ones are in the content store."""
        if self._part is not None and self._part.handle is not None:
            self._part.handle.close()
        for tmp in self._temps:
            tmp.unlink(missing_ok=True)

    # ---- parser callbacks (errors are stored: the parser would wrap them) ----------------------
    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        raise error

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        self._part.header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        assert self._part is not None
        part = self._part
        part.headers[bytes(part.header_field).decode("latin-1").strip().lower()] = bytes(part.header_value)
        part.header_field.clear()
        part.header_value.clear()

    def _on_headers_finished(self) -> None:
        assert self._part is not None
        part = self._part
        disposition, options = parse_options_header(part.headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            self._fail(InvalidInput("malformed multipart body: a part without a form-data name"))
        part.name = _decode_header(options[b"name"])
        if b"filename" in options:
            part.filename = _decode_header(options[b"filename"])
            if len(self.result.files) >= self.limits.max_files:
                self._fail(TooLarge(f"too many files: at most {self.limits.max_files} per upload"))
            self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
            part.tmp = self.incoming / f"{uuid.uuid4().hex}.part"
            self._temps.append(part.tmp)
            part.handle = open(part.tmp, "wb")  # noqa: SIM115  (closed in _on_part_end / discard)
        elif sum(len(v) for v in self.result.fields.values()) >= self.limits.max_fields:
            self._fail(InvalidInput(f"too many form fields: at most {self.limits.max_fields}"))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        part = self._part
        piece = data[start:end]
        if part.handle is None:
            if len(part.buffer) + len(piece) > self.limits.max_field_bytes:
                self._fail(
                    TooLarge(f"form field {part.name!r} is longer than {self.limits.max_field_bytes} bytes")
                )
            part.buffer += piece
            return
        part.size += len(piece)
        if part.size > self.limits.max_file_bytes:
            self._fail(
                TooLarge(
                    f"file {safe_name(part.filename or '')!r} is larger than the limit of "
                    f"{self.limits.max_file_bytes} bytes"
                )
            )
        part.digest.update(piece)
        part.handle.write(piece)

    def _on_part_end(self) -> None:
        part, self._part = self._part, None
        assert part is not None
        if part.handle is None:
            try:
                value = bytes(part.buffer).decode("utf-8")
            except UnicodeDecodeError:
                self._fail(InvalidInput(f"form field {part.name!r} is not UTF-8"))
            self.result.fields.setdefault(part.name, []).append(value)
            return
        part.handle.flush()
        os.fsync(part.handle.fileno())
        part.handle.close()
        assert part.tmp is not None
        digest = part.digest.hexdigest()
        adopt(self.originals, part.tmp, digest)
        given = part.filename or ""
        self.result.files.append(
            ReceivedFile(
                field=part.name, name=safe_name(given), given_name=given, sha256=digest, size=part.size
            )
        )


def adopt(originals: OriginalStore, tmp: Path, digest: str) -> None:
    """Move a complete, fsynced temporary file into the content store under its digest."""
    target = originals.path(digest)
    if target.exists():
        tmp.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def _decode_header(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def multipart_boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidInput("the upload must be multipart/form-data (with a boundary)")
    return options[b"boundary"]


async def receive_multipart(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    limits: UploadLimits,
    originals: OriginalStore,
) -> Received:
    """Read a multipart/form-data body chunk by chunk (see the module docstring for the limits)."""
    boundary = multipart_boundary(content_type)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError as exc:
            raise InvalidInput("invalid Content-Length") from exc
        if declared > limits.max_request_bytes:
            raise TooLarge(f"the upload is larger than the limit of {limits.max_request_bytes} bytes")
    receiver = MultipartReceiver(boundary, limits, originals)
    try:
        async for chunk in chunks:
            receiver.feed(chunk)
        return receiver.finish()
    except BaseException:
        receiver.discard()
        raise
    finally:
        for tmp in receiver._temps:  # renamed into the store, or discarded above
            tmp.unlink(missing_ok=True)


# ---- from received files to job files ------------------------------------------------------------
FORM_FIELDS = ("classification", "owner_unit", "doc_type", "title", "language", "issuer", "issued_date")


def _json_object(received: Received, name: str) -> dict[str, Any]:
    raw = received.field_value(name)
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"form field {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"form field {name!r} must be a JSON object")
    return value


def upload_doc_id(principal: Principal, name: str) -> str:
    """Default doc_id of an upload: from the uploader's unit (or user) and the file name, so uploading
    a corrected file of the same name replaces the earlier one, and other units never collide."""
    owner = principal.unit if is_valid_unit(principal.unit) else f"user-{principal.user_id}"
    return metadata.default_doc_id(Path("upload") / owner / name, Path("upload"))


def upload_specs(
    received: Received,
    principal: Principal,
    *,
    classification: Classification,
    originals: OriginalStore,
    limits: Limits,
    allow_images: bool,
) -> list[FileSpec]:
    """Job files for an upload. Form fields: `metadata` (JSON object for every file),
    `file_metadata` (JSON object: file name -> fields for that file), and the plain fields
    classification, owner_unit, allow (repeatable), doc_type, title, language, issuer, issued_date.
    Each file is checked by content and against the uploader's reach; a refused file carries its
    reason and the others go on."""
    common = _json_object(received, "metadata")
    for name in FORM_FIELDS:
        value = received.field_value(name)
        if value is not None and value.strip():
            common[name] = value
    if received.fields.get("allow"):
        common["allow"] = [t for value in received.fields["allow"] for t in value.split(",") if t.strip()]
    per_file = _json_object(received, "file_metadata")
    bad = sorted({k for k in common if k not in metadata.FIELDS or k == "doc_id"})
    if bad:
        raise InvalidInput(f"unknown or per-file-only metadata field(s) for every file: {', '.join(bad)}")
    specs = []
    for file in received.files:
        own = per_file.get(file.given_name, per_file.get(file.name, {}))
        spec = FileSpec(name=file.name, path=f"upload:{file.name}", sha256=file.sha256, size=file.size)
        try:
            if not isinstance(own, dict):
                raise IngestError("its entry in file_metadata must be a JSON object")
            unknown = sorted(set(own) - set(metadata.FIELDS))
            if unknown:
                raise IngestError(f"unknown metadata field(s): {', '.join(unknown)}")
            spec.meta = metadata.validate({**common, **own}, classification)
            spec.meta.setdefault("doc_id", upload_doc_id(principal, file.name))
            if is_valid_unit(principal.unit):
                spec.meta.setdefault("owner_unit", principal.unit)
            _check_reach(principal, spec.meta, classification)
            check_content(
                file.name, originals.path(file.sha256).read_bytes(), limits=limits, allow_images=allow_images
            )
        except (IngestError, ConversionError) as exc:
            spec.error = str(exc)
        specs.append(spec)
    return mark_duplicates(specs)


def _check_reach(principal: Principal, meta: dict[str, Any], classification: Classification) -> None:
    """An uploader cannot classify above their own clearance, and an ingestor who is not an admin
    files documents under their own unit (or one below it)."""
    if principal.is_operator:
        return
    level = classification.rank(meta.get("classification"))
    clearance = classification.rank(principal.clearance)
    if level is not None and (clearance is None or level > clearance):
        raise IngestError("classification is above your clearance")
    owner = meta.get("owner_unit")
    if (
        "admin" not in principal.roles
        and owner
        and not (owner == principal.unit or str(owner).startswith(f"{principal.unit}/"))
    ):
        raise IngestError(f"owner_unit {owner!r} is not your unit")
