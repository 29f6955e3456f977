"""OcrReader: give scanned PDF pages and images their text before anything needs it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from haystack import Document, component

from ingest.converters import ConversionError, pdf_page_texts
from ingest.ocr import OcrError, ocr_image, ocr_pdf_pages

log = logging.getLogger(__name__)


@component
class OcrReader:
    """OCR the pages a converter found without text (`meta["pages_without_text"]`) and images
    (`file_type` "image"); documents that have all their text pass through untouched.

    Usage: `OcrReader(languages="vie+eng").run(documents=converted)`, after
    `FileConverter(allow_textless_pdf=True)`.
    Needs `meta["source_path"]` (set by FileConverter). A PDF mixing text and scanned pages gets
    the OCR text at the place of each scanned page.
    """

    def __init__(
        self,
        *,
        languages: str = "vie+eng",
        dpi: int = 300,
        timeout_s: float = 120.0,
        max_pages: int = 300,
        enabled: bool = True,
    ) -> None:
        """
        :param languages: Tesseract languages, `+`-separated (Debian package tesseract-ocr-<lang>).
        :param dpi: resolution PDF pages are rendered at.
        :param timeout_s: limit for rendering or reading one page.
        :param max_pages: documents with more scanned pages than this fail instead.
        :param enabled: False: scanned documents fail with "OCR is not enabled".
        """
        self.languages = languages
        self.dpi = dpi
        self.timeout_s = timeout_s
        self.max_pages = max_pages
        self.enabled = enabled

    @component.output_types(documents=list[Document], failed=list[dict[str, str]])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: converted documents.
        :returns: `documents` with OCR text where it was needed (`meta["ocr_pages"]` lists the pages
            read), and `failed` (`{"source_path", "error"}`) for documents OCR could not read.
        """
        done: list[Document] = []
        failed: list[dict[str, str]] = []
        for document in documents:
            scanned = list(document.meta.get("pages_without_text") or [])
            if not scanned:
                done.append(document)
                continue
            source = str(document.meta.get("source_path", ""))
            try:
                done.append(self._read(document, source, scanned))
            except (OcrError, ConversionError) as exc:
                log.warning("OCR failed for %s: %s", document.meta.get("doc_id"), exc)
                failed.append({"source_path": source, "error": str(exc)})
        return {"documents": done, "failed": failed}

    def _read(self, document: Document, source: str, scanned: list[int]) -> Document:
        if not self.enabled:
            raise OcrError("no text layer (scanned document?) and OCR is not enabled (KMS_OCR_ENABLED)")
        if len(scanned) > self.max_pages:
            raise OcrError(f"{len(scanned)} scanned pages: more than the OCR limit of {self.max_pages}")
        path = Path(source)
        if document.meta.get("file_type") == "image":
            text = ocr_image(path, languages=self.languages, timeout_s=self.timeout_s)
        else:
            read = ocr_pdf_pages(
                path, scanned, languages=self.languages, dpi=self.dpi, timeout_s=self.timeout_s
            )
            if document.content:  # mixed: put each page's OCR text where the page is
                pages = pdf_page_texts(path.read_bytes())
                text = "\n\n".join(read.get(n, t) for n, t in enumerate(pages, 1))
            else:
                text = "\n\n".join(read[n] for n in scanned)
        log.info("OCR read %s page(s) of %s", len(scanned), document.meta.get("doc_id"))
        return Document(content=text, meta={**document.meta, "ocr_pages": scanned, "pages_without_text": []})
