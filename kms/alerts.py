"""Saved searches and "new for you" alerts.

A saved search alerts its owner to documents indexed since they last looked that (a) the owner may
read — the registry clause and the search's Qdrant filter both apply — and (b) contain the query's
words (a lexical match, so an alert is explainable; semantic similarity alone matches everything).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, update

from kms.db.alert_models import SavedSearchRow
from kms.db.models import DocumentRow, utcnow
from kms.domain import Principal, SearchFilters, SearchQuery
from kms.errors import InvalidInput, NotFound
from kms.search import SearchService
from kms.security.access import registry_clause

MAX_SAVED_PER_USER = 100
ALERT_HITS = 20


def saved_searches(search: SearchService, principal: Principal) -> list[SavedSearchRow]:
    with search.services.sessions() as session:
        statement = select(SavedSearchRow).where(SavedSearchRow.user_id == principal.user_id)
        return list(session.scalars(statement.order_by(SavedSearchRow.id)))


def save_search(
    search: SearchService, principal: Principal, *, name: str, query: str, filters: dict[str, Any]
) -> SavedSearchRow:
    SearchFilters(**filters)  # reject unknown filter fields now, not when alerts run
    with search.services.sessions() as session:
        count = len(
            list(
                session.scalars(select(SavedSearchRow.id).where(SavedSearchRow.user_id == principal.user_id))
            )
        )
        if count >= MAX_SAVED_PER_USER:
            raise InvalidInput(f"at most {MAX_SAVED_PER_USER} saved searches per user")
        row = SavedSearchRow(user_id=principal.user_id, name=name or query[:80], query=query, filters=filters)
        session.add(row)
        session.commit()
        return row


def delete_saved_search(search: SearchService, principal: Principal, saved_id: int) -> None:
    with search.services.sessions() as session:
        row = session.get(SavedSearchRow, saved_id)
        if row is None or row.user_id != principal.user_id:  # another user's search does not exist for you
            raise NotFound()
        session.delete(row)
        session.commit()


def new_readable_ids(search: SearchService, principal: Principal, since: dt.datetime) -> list[str]:
    services = search.services
    with services.sessions() as session:
        statement = select(DocumentRow.doc_id).where(
            DocumentRow.status == "indexed",
            DocumentRow.indexed_at > since,
            registry_clause(principal, services.classification),
        )
        return sorted(session.scalars(statement))


def alerts(search: SearchService, principal: Principal) -> list[dict[str, Any]]:
    """For each saved search with new matching documents: the search and its new hits."""
    found = []
    for saved in saved_searches(search, principal):
        doc_ids = new_readable_ids(search, principal, _aware(saved.seen_at))
        if not doc_ids:
            continue
        filters = SearchFilters(**{**saved.filters, "doc_ids": doc_ids})
        result = search.search(
            principal, SearchQuery(query=saved.query, k=ALERT_HITS, mode="sparse", filters=filters)
        )
        if result.results:
            found.append(
                {
                    "saved_search_id": saved.id,
                    "name": saved.name,
                    "query": saved.query,
                    "results": [asdict(hit) for hit in result.results],
                }
            )
    return found


def mark_seen(search: SearchService, principal: Principal) -> None:
    with search.services.sessions() as session:
        session.execute(
            update(SavedSearchRow).where(SavedSearchRow.user_id == principal.user_id).values(seen_at=utcnow())
        )
        session.commit()


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
