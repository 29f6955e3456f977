"""Assembly of the Haystack ingestion pipeline: convert → OCR → clean → metadata → split → embed → write."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

from haystack import Document, Pipeline

from ingest.components.chunk_embedder import ChunkEmbedder
from ingest.components.chunk_writer import ChunkWriter
from ingest.components.file_converter import FileConverter
from ingest.components.legal_splitter import LegalSplitter
from ingest.components.metadata_extractor import MetadataExtractor
from ingest.components.ocr_reader import OcrReader
from ingest.components.text_cleaner import TextCleaner
from kms.embedding import Embedder
from kms.services import Services

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


def _components(
    services: Services, *, embedder: Embedder | None = None, collection: str | None = None
) -> dict[str, Any]:
    settings = services.settings
    return {
        # scanned PDFs and images come out with empty text and go to OCR, not to failure
        "converter": FileConverter(
            limits={"max_file_bytes": settings.max_upload_bytes}, allow_textless_pdf=True
        ),
        "ocr": OcrReader(
            languages=settings.ocr_languages,
            dpi=settings.ocr_dpi,
            timeout_s=settings.ocr_timeout_s,
            max_pages=settings.ocr_max_pages,
            enabled=settings.ocr_enabled,
        ),
        "cleaner": TextCleaner(),
        "metadata": MetadataExtractor(),
        "splitter": LegalSplitter(),
        "embedder": ChunkEmbedder(spec=settings.embedder, embedder=embedder or services.embedder),
        "writer": ChunkWriter(
            store=services.store,
            sessions=services.sessions,
            classification=services.classification,
            collection=collection,
        ),
    }


_PREPARE = ("converter", "ocr", "cleaner", "metadata", "splitter")
_INDEX = ("embedder", "writer")


def _chain(pipeline: Pipeline, components: dict[str, Any], names: tuple[str, ...]) -> Pipeline:
    for name in names:
        pipeline.add_component(name, components[name])
    for before, after in itertools.pairwise(names):
        pipeline.connect(f"{before}.documents", f"{after}.documents")
    return pipeline


def build_pipeline(
    services: Services, *, embedder: Embedder | None = None, collection: str | None = None
) -> Pipeline:
    components = _components(services, embedder=embedder, collection=collection)
    return _chain(Pipeline(), components, (*_PREPARE, *_INDEX))


@dataclass(frozen=True)
class Stages:
    """The same pipeline cut in two: preparing (convert → OCR → clean → metadata → split) and
    indexing (embed → write). A job decides what to index between the two, and the indexing half
    is called component by component (see `run_index`).

    Measured on 2 cores: preparing the next batch in a thread while the current one is embedded
    made ingestion slower (0.79 vs 0.98 of the raw embedder's throughput), since the model already
    keeps both cores busy; batches run one after the other."""

    prepare: Pipeline
    index: Pipeline


def build_stages(services: Services) -> Stages:
    components = _components(services)
    return Stages(
        prepare=_chain(Pipeline(), components, _PREPARE), index=_chain(Pipeline(), components, _INDEX)
    )


def run_prepare(stages: Stages, sources: list[str], meta: list[dict[str, Any]]) -> dict[str, Any]:
    """Returns {"documents": chunks, "failed": [{"source_path", "error"}]}."""
    result = stages.prepare.run(
        {"converter": {"sources": sources, "meta": meta}},
        include_outputs_from={"converter", "ocr", "cleaner"},
    )
    failed = [
        failure
        for stage in ("converter", "ocr", "cleaner")
        for failure in result.get(stage, {}).get("failed", [])
    ]
    return {"documents": result.get("splitter", {}).get("documents", []), "failed": failed}


def run_index(stages: Stages, chunks: list[Document]) -> list[dict[str, Any]]:
    """Embed and write chunks (all chunks of a document together); the writer's `written`.

    The two components are called in turn rather than through `Pipeline.run`, which deep-copies
    every input: here, every chunk's vectors and its document's full text, for nothing.
    """
    if not chunks:
        return []
    embedded = stages.index.get_component("embedder").run(documents=chunks)["documents"]
    written: list[dict[str, Any]] = stages.index.get_component("writer").run(documents=embedded)["written"]
    return written


def run_pipeline(pipeline: Pipeline, sources: list[str], meta: list[dict[str, Any]]) -> dict[str, Any]:
    """Run one batch; returns {"written": [...], "failed": [{"source_path", "error"}]}."""
    result = pipeline.run(
        {"converter": {"sources": sources, "meta": meta}},
        include_outputs_from={"converter", "ocr", "cleaner"},
    )
    failed = [
        failure
        for stage in ("converter", "ocr", "cleaner")
        for failure in result.get(stage, {}).get("failed", [])
    ]
    return {"written": result.get("writer", {}).get("written", []), "failed": failed}
