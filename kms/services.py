"""Everything one kms process needs, opened once: settings, YAML config, registry, index, model."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from kms.config import (
    Classification,
    CollectionLayout,
    Settings,
    Unit,
    load_classification,
    load_collection_layout,
    load_units,
)
from kms.db.session import make_engine, make_session_factory
from kms.embedding import Embedder, create_embedder
from kms.index.store import ChunkStore, open_store
from kms.originals import OriginalStore

log = logging.getLogger(__name__)
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


@dataclass
class Services:
    settings: Settings
    classification: Classification
    units: tuple[Unit, ...]
    layout: CollectionLayout
    engine: Engine
    sessions: sessionmaker[Session]
    store: ChunkStore
    originals: OriginalStore
    active_model: str = ""  # the embedder the live collection was built with (differs during a reindex)
    _embedders: dict[str, Embedder] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, check_model: bool = True) -> Services:
        settings.ensure_data_dir()
        config_dir = settings.index_config_dir
        layout = load_collection_layout(config_dir)
        engine = make_engine(settings.sqlalchemy_url)
        store = open_store(settings, layout)  # KMS_STORE: edge | local | server
        services = cls(
            settings=settings,
            classification=load_classification(config_dir),
            units=load_units(config_dir),
            layout=layout,
            engine=engine,
            sessions=make_session_factory(engine),
            store=store,
            originals=OriginalStore(settings.originals_dir),
        )
        if check_model:
            services.ensure_index()
        return services

    def ensure_index(self) -> str:
        """Create the first collection, or fail with a clear message if it was built with another model."""
        embedder = self.embedder
        collection = self.store.ensure_active(embedder.name, embedder.dim)
        self.active_model = embedder.name
        return collection

    @property
    def query_embedder(self) -> Embedder:
        """The model matching the live collection (the old one while a reindex is under way)."""
        return self.embedder_for(self.active_model or self.settings.embedder)

    @cached_property
    def embedder(self) -> Embedder:
        return self.embedder_for(self.settings.embedder)

    def embedder_for(self, spec: str) -> Embedder:
        if spec not in self._embedders:
            self._embedders[spec] = create_embedder(spec)
        return self._embedders[spec]

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()
