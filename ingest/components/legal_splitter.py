"""LegalSplitter: chunk documents at Phần/Chương/Mục/Điều/Khoản boundaries, prose by paragraphs."""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from kms.text.legal import split_text


@component
class LegalSplitter:
    """Split Vietnamese legal text without cutting inside an article; prose into ~250-word windows.

    Usage: `LegalSplitter(target_words=250).run(documents=[Document(content="Điều 1. ...")])`
    Each chunk's meta copies the document's meta plus `chunk_no`, `heading`, `start`, `end`, and
    `doc_text` (the full text, shared, for the registry).
    """

    def __init__(self, *, target_words: int = 250, max_words: int = 350, overlap_words: int = 40) -> None:
        self.target_words = target_words
        self.max_words = max_words
        self.overlap_words = overlap_words

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: cleaned documents with complete metadata.
        :returns: `documents`: the chunks, in document then reading order.
        """
        chunks: list[Document] = []
        for document in documents:
            text = document.content or ""
            sections = split_text(
                text,
                target_words=self.target_words,
                max_words=self.max_words,
                overlap_words=self.overlap_words,
            )
            for number, section in enumerate(sections):
                meta = {
                    **document.meta,
                    "chunk_no": number,
                    "chunk_count": len(sections),
                    "heading": section.heading,
                    "start": section.start,
                    "end": section.end,
                    "doc_text": text,
                }
                chunks.append(Document(content=section.text, meta=meta))
        return {"documents": chunks}
