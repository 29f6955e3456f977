"""Request and response models: only the fields listed here leave the API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic.main import IncEx

from kms.domain import SearchFilters, SearchQuery, SearchResult


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_type: list[str] = Field(default_factory=list, max_length=50)
    issuer: list[str] = Field(default_factory=list, max_length=50)
    owner_unit: list[str] = Field(default_factory=list, max_length=50)
    language: list[str] = Field(default_factory=list, max_length=10)
    classification: list[str] = Field(default_factory=list, max_length=10)
    year: list[Annotated[int, Field(ge=1, le=9999)]] = Field(default_factory=list, max_length=50)
    date_from: dt.date | None = None
    date_to: dt.date | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(max_length=5000)
    k: int = Field(default=10, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1000)
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    filters: FiltersIn = Field(default_factory=FiltersIn)

    @field_validator("query")
    @classmethod
    def _query_length(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("query must not be empty")
        if len(stripped) > 1000:
            raise ValueError("query must be at most 1000 characters")
        return stripped

    def to_domain(self) -> SearchQuery:
        return SearchQuery(
            query=self.query,
            k=self.k,
            offset=self.offset,
            mode=self.mode,
            filters=SearchFilters(**self.filters.model_dump()),
        )


class DocumentMetaOut(BaseModel):
    """Metadata anyone who may read a document may see (the allow list is for admin schemas only)."""

    doc_id: str
    title: str
    doc_number: str | None
    doc_type: str
    issuer: str | None
    issued_date: str | None
    language: str
    classification: str | None
    owner_unit: str | None


class HitOut(DocumentMetaOut):
    score: float
    snippet: str
    highlights: list[tuple[int, int]]
    chunk_no: int


class SearchOut(BaseModel):
    results: list[HitOut]
    total: int
    facets: dict[str, dict[str, int]]


_SEARCH_RESULT = TypeAdapter(SearchResult)
_HIT_FIELDS: IncEx = set(HitOut.model_fields)
_SEARCH_OUT_FIELDS: dict[str, IncEx | bool] = {
    name: {"__all__": _HIT_FIELDS} if name == "results" else True for name in SearchOut.model_fields
}


def search_out_json(result: SearchResult) -> bytes:
    """`result` as a `SearchOut` in JSON: only the fields SearchOut names, written straight from the
    result's dataclasses, whose fields have SearchOut's types (the same bytes as validating a
    SearchOut first, in a quarter of the time)."""
    return _SEARCH_RESULT.dump_json(result, include=_SEARCH_OUT_FIELDS)


class SimilarOut(BaseModel):
    results: list[HitOut]


class DocumentOut(DocumentMetaOut):
    origin_node: str | None
    version: int
    chunk_count: int
    text: str


class IngestPathsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, max_length=10000)
    overrides: dict[str, object] = Field(default_factory=dict)


class FileResultOut(BaseModel):
    path: str
    doc_id: str | None
    status: str
    chunks: int
    error: str | None


class IngestOut(BaseModel):
    results: list[FileResultOut]
