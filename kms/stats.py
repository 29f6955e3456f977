"""Counts for `kms stats` and the operator API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from kms.db.job_models import JobFileRow, JobRow, SourceRow
from kms.db.registry import count_by_status
from kms.services import Services


def collect_stats(services: Services) -> dict[str, Any]:
    from ingest import jobs

    info = services.store.info()
    with services.sessions() as session:
        documents = count_by_status(session)
        pending_files = session.scalar(
            select(func.count())
            .select_from(JobFileRow)
            .join(JobRow, JobRow.id == JobFileRow.job_id)
            .where(JobRow.state.in_(jobs.ACTIVE_STATES), JobFileRow.state == "pending")
        )
        sources = session.scalar(select(func.count()).select_from(SourceRow))
    states = jobs.counts_by_state(services.sessions)
    return {
        "documents": documents,
        "chunks": info.points if info else 0,
        "collection": info.collection if info else None,
        "embedder": info.model if info else services.settings.embedder,
        "dim": info.dim if info else None,
        "data_dir": str(services.settings.data_dir),
        "qdrant": services.settings.qdrant_url or "embedded",
        "store": services.store.backend,
        "jobs": states,
        "queue_depth": states.get("queued", 0),
        "pending_files": int(pending_files or 0),
        "oldest_queued_s": round(jobs.oldest_queued_age_s(services.sessions), 1),
        "sources": int(sources or 0),
    }
