"""Tables of the durable ingestion queue and of source folders.

A job holds file *references*: each file's bytes are already in the content-addressed store of
originals, so a job can be run, re-run after a crash, or retried later without the caller.

Scheduling times (`not_before`, `lease_expires_at`) are epoch seconds (floats): they are compared
in SQL on SQLite and PostgreSQL alike, with no time-zone or string-format surprises.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kms.db.models import Base, utcnow

JOB_STATES = ("queued", "running", "succeeded", "failed", "dead", "cancelled")
TERMINAL_STATES = frozenset({"succeeded", "failed", "dead", "cancelled"})
FILE_STATES = ("pending", "done", "failed")


class JobRow(Base):
    """One ingestion job.

    `state`: queued → running → succeeded | failed (some files could not be ingested; `error` says
    how many) | dead (the job itself kept failing: `attempts` reached `max_attempts`) | cancelled.
    A running job whose lease expires (its worker died) is claimable again.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default="ingest")  # ingest | sync
    state: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower runs first
    submitted_by: Mapped[str] = mapped_column(String(300), index=True)
    submitter_unit: Mapped[str] = mapped_column(String(200), default="")
    # the submitter as a principal (clearance, unit, groups, roles): replacing an existing document
    # is checked against it when the file is processed, not only when it was submitted
    submitter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)  # finished files, failed ones included
    files_failed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_written: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims since the job last made progress
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # every claim
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # last run, start to finish

    __table_args__ = (Index("ix_jobs_claim", "state", "priority", "id"),)


class JobFileRow(Base):
    """One file of a job (or, for a source sync, one file to remove from the index).

    `state`: pending → done | failed; `status` is the runner's word for a done file
    (added | replaced | unchanged | deleted) or `failed`, with `error` the reason.
    """

    __tablename__ = "job_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8), default="ingest")  # ingest | delete
    name: Mapped[str] = mapped_column(Text)  # a safe base name (uploads are renamed on the way in)
    path: Mapped[str] = mapped_column(Text)  # where it came from: a path, `upload:<name>`, `<source>:<rel>`
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # key in the content store
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # validated metadata, doc_id included
    doc_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_rel: Mapped[str | None] = mapped_column(Text, nullable=True)  # sync jobs: path in the source
    source_stat: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # sync jobs: size, mtime_ns

    __table_args__ = (Index("ix_job_files_job_state", "job_id", "state", "seq"),)


class SourceRow(Base):
    """A folder (an HQ department share, a mission's drop folder) kept in sync with the index."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    # lowest-precedence metadata for every file: `.kms.yaml` files, sidecars then override it
    defaults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    schedule_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    next_sync_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # epoch s, scheduled ones
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SourceFileRow(Base):
    """What kms last ingested from one file of a source (to find changed and deleted files)."""

    __tablename__ = "source_files"

    source: Mapped[str] = mapped_column(ForeignKey("sources.name", ondelete="CASCADE"), primary_key=True)
    rel_path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(128), index=True)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    meta_hash: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="indexed")  # indexed | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
