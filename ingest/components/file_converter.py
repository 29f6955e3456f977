"""FileConverter: turn files on disk into Haystack Documents (see `ingest.converters`)."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from ingest.converters import ConversionError, Limits, convert_file

log = logging.getLogger(__name__)

_LIMIT_NAMES = frozenset(f.name for f in fields(Limits))


@component
class FileConverter:
    """Convert files to Haystack Documents; files that cannot be converted go to `failed` with a reason.

    Usage: `FileConverter(limits={"max_file_bytes": 10 * 2**20}).run(sources=["a.pdf", "b.docx"])`
    """

    def __init__(self, *, limits: dict[str, Any] | None = None, allow_textless_pdf: bool = False) -> None:
        """
        :param limits: overrides of `ingest.converters.Limits` fields, e.g. `{"max_pdf_pages": 500}`.
        :param allow_textless_pdf: keep PDFs without any text layer (empty content,
            `pages_without_text` filled) for a later OCR stage instead of failing them.
        :raises ValueError: on an unknown limit name or a non-positive value.
        """
        unknown = sorted(set(limits or {}) - _LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown converter limit(s): {', '.join(unknown)}")
        self._limits = Limits(**(limits or {}))
        self.limits = dict(limits) if limits is not None else None
        self.allow_textless_pdf = allow_textless_pdf

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, limits=self.limits, allow_textless_pdf=self.allow_textless_pdf)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileConverter:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], failed=list[dict[str, str]])
    def run(self, sources: list[str], meta: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """
        :param sources: file paths.
        :param meta: optional metadata per source (same length), merged into each Document's meta;
            a `title` given here wins over the one found in the file.
        :returns: `documents` (one per converted file) and `failed`
            (`{"source_path": ..., "error": reason}` per file that could not be converted).
        :raises ValueError: if `meta` and `sources` differ in length.
        """
        if meta is not None and len(meta) != len(sources):
            raise ValueError(f"meta has {len(meta)} entries for {len(sources)} sources")
        documents: list[Document] = []
        failed: list[dict[str, str]] = []
        for index, source in enumerate(sources):
            path = Path(source)
            given = dict(meta[index]) if meta is not None else {}
            try:
                converted = convert_file(
                    path, limits=self._limits, allow_textless_pdf=self.allow_textless_pdf
                )
            except ConversionError as e:
                log.warning("cannot convert %s: %s", path, e)
                failed.append({"source_path": str(path), "error": str(e)})
                continue
            except Exception as e:  # a converter bug must not stop the batch
                log.exception("unexpected error converting %s", path)
                failed.append({"source_path": str(path), "error": f"internal error: {type(e).__name__}: {e}"})
                continue
            doc_meta: dict[str, Any] = {
                **given,
                "source_path": str(path),
                "file_type": converted.file_type,
                "pages_without_text": list(converted.pages_without_text),
            }
            if "title" not in given:
                doc_meta["title"] = converted.title or None
            documents.append(Document(content=converted.text, meta=doc_meta))
        return {"documents": documents, "failed": failed}
