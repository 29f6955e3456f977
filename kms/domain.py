"""Plain domain models shared by ingestion, the index, search, the API and the CLI."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

DOC_TYPES = (
    "resolution",
    "decree",
    "circular",
    "decision",
    "directive",
    "report",
    "cable",
    "guidance",
    "minutes",
    "other",
)
LANGUAGES = ("vi", "en")
SearchMode = Literal["hybrid", "dense", "sparse"]
ROLES = ("reader", "ingestor", "admin", "auditor")


@dataclass(frozen=True)
class Principal:
    """Who is asking. `is_operator` is the local CLI operator or a system task: it sees everything."""

    user_id: str
    clearance: str
    unit: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("reader",)
    is_operator: bool = False

    @classmethod
    def operator(cls, name: str = "local:operator") -> Principal:
        return cls(user_id=name, clearance="top_secret", unit="", roles=ROLES, is_operator=True)

    def has_role(self, role: str) -> bool:
        """Roles are explicit: `admin` does not imply `auditor` or `reader` (separation of duties)."""
        return self.is_operator or role in self.roles


@dataclass
class DocumentMeta:
    """Metadata of one document as stored in the registry and copied onto every chunk."""

    doc_id: str
    title: str = ""
    doc_number: str | None = None
    doc_type: str = "other"
    issuer: str | None = None
    issued_date: dt.date | None = None
    language: str = "vi"
    classification: str | None = None
    owner_unit: str | None = None
    allow: list[str] = field(default_factory=list)
    source_path: str | None = None
    sha256: str = ""
    origin_node: str | None = None


@dataclass
class Chunk:
    """One retrievable passage of a document version."""

    doc_id: str
    version: int
    chunk_no: int
    text: str
    heading: str = ""  # the legal-structure path, e.g. "Chương II > Điều 5"
    start: int = 0  # character offsets into the document's full text
    end: int = 0


@dataclass
class SearchFilters:
    doc_type: list[str] = field(default_factory=list)
    issuer: list[str] = field(default_factory=list)
    owner_unit: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    classification: list[str] = field(default_factory=list)
    year: list[int] = field(default_factory=list)
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    doc_ids: list[str] | None = None  # internal (alerts): restrict to these documents; [] matches nothing


@dataclass
class SearchQuery:
    query: str
    k: int = 10
    offset: int = 0
    mode: SearchMode = "hybrid"
    filters: SearchFilters = field(default_factory=SearchFilters)


@dataclass
class SearchHit:
    doc_id: str
    title: str
    doc_number: str | None
    doc_type: str
    issuer: str | None
    issued_date: str | None
    language: str
    classification: str | None
    owner_unit: str | None
    score: float
    snippet: str
    highlights: list[tuple[int, int]]
    chunk_no: int


@dataclass
class SearchResult:
    results: list[SearchHit]
    total: int
    facets: dict[str, dict[str, int]]
    # Milliseconds spent: "embed" (the query embedding, 0 if the mode needs none), "retrieve" (the
    # access filter, query embedding and the store's candidate query), "index" (that and every
    # other store call: the page's payloads, named document numbers) and "search" (all of it).
    timings: dict[str, float] = field(default_factory=dict)
