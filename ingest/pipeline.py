"""Assembly of the Haystack ingestion pipeline: convert → clean → metadata → split → embed → write."""

from __future__ import annotations

import os
from typing import Any

from haystack import Pipeline

from ingest.components.chunk_embedder import ChunkEmbedder
from ingest.components.chunk_writer import ChunkWriter
from ingest.components.file_converter import FileConverter
from ingest.components.legal_splitter import LegalSplitter
from ingest.components.metadata_extractor import MetadataExtractor
from ingest.components.text_cleaner import TextCleaner
from kms.embedding import Embedder
from kms.services import Services

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


def build_pipeline(
    services: Services, *, embedder: Embedder | None = None, collection: str | None = None
) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component(
        "converter", FileConverter(limits={"max_file_bytes": services.settings.max_upload_bytes})
    )
    pipeline.add_component("cleaner", TextCleaner())
    pipeline.add_component("metadata", MetadataExtractor())
    pipeline.add_component("splitter", LegalSplitter())
    pipeline.add_component(
        "embedder", ChunkEmbedder(spec=services.settings.embedder, embedder=embedder or services.embedder)
    )
    pipeline.add_component(
        "writer",
        ChunkWriter(
            store=services.store,
            sessions=services.sessions,
            classification=services.classification,
            collection=collection,
        ),
    )
    pipeline.connect("converter.documents", "cleaner.documents")
    pipeline.connect("cleaner.documents", "metadata.documents")
    pipeline.connect("metadata.documents", "splitter.documents")
    pipeline.connect("splitter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    return pipeline


def run_pipeline(pipeline: Pipeline, sources: list[str], meta: list[dict[str, Any]]) -> dict[str, Any]:
    """Run one batch; returns {"written": [...], "failed": [{"source_path", "error"}]}."""
    result = pipeline.run(
        {"converter": {"sources": sources, "meta": meta}}, include_outputs_from={"converter", "cleaner"}
    )
    failed = [*result.get("converter", {}).get("failed", []), *result.get("cleaner", {}).get("failed", [])]
    return {"written": result.get("writer", {}).get("written", []), "failed": failed}
