"""TextCleaner: NFC-normalise and tidy extracted text before anything else reads it."""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from kms.text.normalize import clean_text


@component
class TextCleaner:
    """Normalise documents' text (NFC, whitespace, control characters); empty results go to `failed`.

    Usage: `TextCleaner().run(documents=[Document(content="Nghị quyết\\r\\n")])`
    """

    @component.output_types(documents=list[Document], failed=list[dict[str, str]])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: converted documents.
        :returns: `documents` with cleaned content, `failed` for documents left with no text.
        """
        cleaned: list[Document] = []
        failed: list[dict[str, str]] = []
        for document in documents:
            text = clean_text(document.content or "")
            if not text:
                failed.append(
                    {
                        "source_path": str(document.meta.get("source_path", "")),
                        "error": "empty document: no text found",
                    }
                )
                continue
            cleaned.append(Document(content=text, meta=dict(document.meta)))
        return {"documents": cleaned, "failed": failed}
