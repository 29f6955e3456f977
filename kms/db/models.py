"""SQLAlchemy tables of the registry: the source of truth the vector index is rebuilt from."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    """One document's current version. `status`: indexed | failed | deleted."""

    __tablename__ = "documents"

    doc_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="indexed", index=True)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    meta_hash: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    doc_number: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    doc_type: Mapped[str] = mapped_column(String(32), default="other")
    issuer: Mapped[str | None] = mapped_column(String(256), nullable=True)
    issued_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="vi")
    classification: Mapped[str | None] = mapped_column(String(32), nullable=True)
    classification_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_unit: Mapped[str | None] = mapped_column(String(200), nullable=True)
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)
    source_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # content store key
    file_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    origin_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # when this version's content was indexed (not touched by access changes or rebuilds): alerts use it
    indexed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    def as_meta(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "doc_number": self.doc_number,
            "doc_type": self.doc_type,
            "issuer": self.issuer,
            "issued_date": self.issued_date.isoformat() if self.issued_date else None,
            "language": self.language,
            "classification": self.classification,
            "owner_unit": self.owner_unit,
            "allow": list(self.allow or []),
            "origin_node": self.origin_node,
        }


class DocumentAccessRow(Base):
    """One allow token of a document, so the registry can filter by the access rule in SQL."""

    __tablename__ = "document_access"

    doc_id: Mapped[str] = mapped_column(ForeignKey("documents.doc_id", ondelete="CASCADE"), primary_key=True)
    token: Mapped[str] = mapped_column(String(200), primary_key=True)

    __table_args__ = (Index("ix_document_access_token", "token"),)
