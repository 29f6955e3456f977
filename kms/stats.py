"""Counts for `kms stats` and the operator API."""

from __future__ import annotations

from typing import Any

from kms.db.registry import count_by_status
from kms.services import Services


def collect_stats(services: Services) -> dict[str, Any]:
    info = services.store.info()
    with services.sessions() as session:
        documents = count_by_status(session)
    return {
        "documents": documents,
        "chunks": info.points if info else 0,
        "collection": info.collection if info else None,
        "embedder": info.model if info else services.settings.embedder,
        "dim": info.dim if info else None,
        "data_dir": str(services.settings.data_dir),
        "qdrant": services.settings.qdrant_url or "embedded",
    }
