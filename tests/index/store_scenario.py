"""Random documents, chunks and principals for store tests, with the access-field edge cases.

Chunk payloads are made by the real rule (`ingest.components.chunk_writer.access_payload`), so a
malformed allow list or an unknown classification reaches the store exactly as ingestion writes it.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ingest.components.chunk_writer import access_payload
from kms.config import Classification, CollectionLayout, Settings, load_classification, load_collection_layout
from kms.domain import Principal
from kms.index.base import ChunkPoint
from kms.index.qdrant_store import QdrantChunkStore
from kms.index.sparse import LEX, LEX_FOLDED, SparseVec
from kms.index.store import ChunkStore, open_store

BACKENDS = ("local", "edge", "server")
SERVER_URL = os.environ.get("KMS_TEST_QDRANT_URL", "")


def default_layout() -> CollectionLayout:
    return load_collection_layout(Settings(data_dir=Path(".")).index_config_dir)


def make_store(backend: str, data_dir: Path, layout: CollectionLayout | None = None) -> ChunkStore:
    layout = layout or default_layout()
    if backend == "server":
        if not SERVER_URL:
            pytest.skip("KMS_TEST_QDRANT_URL is not set: the server backend is not tested in this run")
        settings = Settings(data_dir=data_dir, qdrant_url=SERVER_URL, store="server")
        layout = replace(layout, name=f"kmstest_{uuid.uuid4().hex[:10]}")  # never touch real collections
    else:
        settings = Settings(data_dir=data_dir, store=backend)
    return open_store(settings, layout, auto_optimize=0)


def dispose(store: ChunkStore) -> None:
    if isinstance(store, QdrantChunkStore) and store.backend == "server":
        for name in store.collections():
            store.client.delete_collection(name)
    store.close()


LEVELS = ("public", "internal", "confidential", "secret", "top_secret")
UNITS = ("hq", "hq/digital", "hq/consular", "mission", "mission/jp-tokyo", "mission/fr-paris")
GROUPS = ("asean-desk", "crypto", "g7")
USERS = ("u1", "u2", "u3")
DOC_TYPES = ("resolution", "decree", "report", "cable", "guidance")
VOCAB = 60  # sparse term ids 0..59


def classification() -> Classification:
    return load_classification(Settings(data_dir=Path(".")).index_config_dir)


def random_allow(rng: random.Random) -> Any:
    """Well-formed lists mostly, plus every malformed shape a sidecar could carry."""
    roll = rng.random()
    if roll < 0.06:
        return None
    if roll < 0.12:
        return []
    if roll < 0.16:
        return "all-staff"  # a string, not a list: must grant nothing
    if roll < 0.20:
        return {"unit": "hq"}
    tokens: list[Any] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.2:
            tokens.append("all-staff")
        elif kind < 0.55:
            tokens.append(f"unit:{rng.choice(UNITS)}")
        elif kind < 0.75:
            tokens.append(f"group:{rng.choice(GROUPS)}")
        elif kind < 0.9:
            tokens.append(f"user:{rng.choice(USERS)}")
        else:
            tokens.append(rng.choice(["unit:../hq", "group:", "ALL-STAFF", 7, "unit:hq/"]))
    return tokens


def random_document(rng: random.Random, number: int) -> dict[str, Any]:
    level: Any = rng.choice(LEVELS)
    roll = rng.random()
    if roll < 0.06:
        level = None
    elif roll < 0.10:
        level = "bogus"
    return {
        "doc_id": f"doc-{number:04d}",
        "classification": level,
        "allow": random_allow(rng),
        "doc_type": rng.choice(DOC_TYPES),
        "owner_unit": rng.choice(UNITS),
        "year": rng.choice([2019, 2021, 2023, 2025]),
    }


def random_principal(rng: random.Random) -> Principal:
    roll = rng.random()
    clearance = rng.choice([*LEVELS, "bogus"]) if roll < 0.1 else rng.choice(LEVELS)
    return Principal(
        user_id=rng.choice(USERS),
        clearance=clearance,
        unit=rng.choice([*UNITS, "", "../etc"]),
        groups=tuple(rng.sample(GROUPS, rng.randint(0, 2))),
    )


def unit_vector(rng: random.Random, dim: int) -> list[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def sparse_vector(rng: random.Random, terms: int) -> SparseVec:
    weights = {rng.randrange(VOCAB): round(rng.uniform(0.2, 2.0), 4) for _ in range(terms)}
    indices = sorted(weights)
    return SparseVec(indices=indices, values=[weights[i] for i in indices])


def chunks_of(
    rng: random.Random, document: dict[str, Any], levels: Classification, *, dim: int, version: int = 1
) -> list[ChunkPoint]:
    chunks = []
    for chunk_no in range(rng.randint(1, 4)):
        payload: dict[str, Any] = {
            "doc_id": document["doc_id"],
            "version": version,
            "chunk_no": chunk_no,
            "text": f"{document['doc_id']} chunk {chunk_no}",
            "doc_type": document["doc_type"],
            "owner_unit": document["owner_unit"],
            "year": document["year"],
            "issued_date": f"{document['year']}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        }
        payload.update(access_payload(levels, document["classification"], document["allow"]))
        if payload["classification_rank"] is None:
            del payload["classification_rank"]  # as chunk_payload does: absent, never null
        chunks.append(
            ChunkPoint(
                doc_id=document["doc_id"],
                version=version,
                chunk_no=chunk_no,
                dense=unit_vector(rng, dim),
                sparse={LEX: sparse_vector(rng, 6), LEX_FOLDED: sparse_vector(rng, 4)},
                payload=payload,
            )
        )
    return chunks


@dataclass
class Corpus:
    documents: list[dict[str, Any]]
    chunks: list[ChunkPoint]


def random_corpus(seed: int, *, documents: int, dim: int) -> Corpus:
    rng = random.Random(seed)
    levels = classification()
    docs = [random_document(rng, i) for i in range(documents)]
    chunks = [c for d in docs for c in chunks_of(rng, d, levels, dim=dim)]
    return Corpus(docs, chunks)
