"""Tables of the knowledge network (issue #8): the change log, replication state per peer, bundles.

Every node appends one `changes` row per document change in the same transaction as the registry
commit; `seq` is assigned under the `change_head` row lock, so it is gap-free and in commit order on
SQLite and PostgreSQL alike (a reader never sees seq n+1 before seq n). HQ serves its log to the
missions as a feed; a mission pushes the rows of its own documents to HQ.

Times are epoch seconds (floats), compared in SQL without time-zone surprises.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kms.db.models import Base


class ChangeRow(Base):
    """One change of one document: `kind` upsert | access | delete, with the state it left."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer)
    classification: Mapped[str | None] = mapped_column(String(32), nullable=True)
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)
    origin_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_ts: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_changes_doc_seq", "doc_id", "seq"),)


class ChangeHeadRow(Base):
    """The single row (id 1) holding the last seq and this log's random id (a restored log gets a new one)."""

    __tablename__ = "change_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    log_id: Mapped[str] = mapped_column(String(32))


class PeerRow(Base):
    """Replication state with one peer, kept at both ends (the columns used depend on the role).

    Mission, peer = HQ: `pull_*` is the feed position applied here; `push_seq` the last own change
    HQ acknowledged; `remote_*` what HQ said about the feed at the last contact.
    HQ, peer = a mission: `epoch` and `config_hash` of its feed; `pull_*` the position the mission
    acknowledged; `push_log`/`push_seq` the last change applied from the mission's own log.
    """

    __tablename__ = "replication_peers"

    peer: Mapped[str] = mapped_column(String(200), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    config_hash: Mapped[str] = mapped_column(String(64), default="")
    pull_log: Mapped[str] = mapped_column(String(32), default="")
    pull_epoch: Mapped[int] = mapped_column(Integer, default=0)
    pull_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    push_log: Mapped[str] = mapped_column(String(32), default="")
    push_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    seen_logs: Mapped[list[str]] = mapped_column(JSON, default=list)  # every log id accepted from it
    remote_head: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    remote_pending: Mapped[int] = mapped_column(Integer, default=0)
    remote_oldest_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_sync_ts: Mapped[float | None] = mapped_column(Float, nullable=True)  # last complete sync
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # metrics, see kms.network.state


class SentRow(Base):
    """HQ: a document HQ has offered a peer (so a later withdrawal is sent to exactly those peers)."""

    __tablename__ = "replication_sent"

    peer: Mapped[str] = mapped_column(String(200), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    delete_seq: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), nullable=True
    )


class ReceivedRow(Base):
    """A document this node holds because a peer sent it: which version and content."""

    __tablename__ = "replication_received"

    doc_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    received_ts: Mapped[float] = mapped_column(Float)


class BundleRow(Base):
    """A document version's content bundle (chunks + vectors + original), built once, sent to many."""

    __tablename__ = "replication_bundles"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    raw_bytes: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    stored_bytes: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    chunks: Mapped[int] = mapped_column(Integer)
    created_ts: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_bundles_doc", "doc_id", "version", "model", unique=True),)
