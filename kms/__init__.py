"""kms: knowledge management and semantic search for a foreign ministry's HQ and missions."""

from __future__ import annotations

import os

# Haystack would phone home on first import; nothing here may reach the outside network.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from kms.config import Settings
from kms.domain import Principal, SearchHit, SearchQuery

__all__ = ["Principal", "SearchHit", "SearchQuery", "Settings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # importing FastAPI is slow; only load it when asked for
        from kms.api.app import create_app

        return create_app
    raise AttributeError(name)
