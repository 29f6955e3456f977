"""The access rule, written once as a reference predicate and once as each store's filter.

A principal may read a document iff
    rank(document.classification) <= rank(principal.clearance)
    AND document.allow ∩ tokens(principal) ≠ ∅.
A missing or unknown classification, or a missing/empty/malformed allow list, hides the document
from everybody except the operator. Nothing outside this module builds a permission filter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from qdrant_client import models
from sqlalchemy import ColumnElement, and_, false, func, select, true

from kms.config import Classification
from kms.domain import Principal

ALL_STAFF = "all-staff"
# A unit path segment starts with a letter or digit ("." and ".." are not units); at most 8 levels.
_SEGMENT = r"[^\W_][\w.-]{0,63}"
_UNIT_PATH = rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}"
_TOKEN = re.compile(rf"^(?:all-staff|(?:user|group):[\w.@+-]{{1,128}}|unit:{_UNIT_PATH})$")
_UNIT = re.compile(rf"^{_UNIT_PATH}$")

# A condition no point can satisfy: ranks are never negative. Used where a principal has no valid
# clearance, so a filter can never degrade into "match everything".
MATCH_NOTHING = models.FieldCondition(key="classification_rank", range=models.Range(lt=-1))


def is_valid_token(token: object) -> bool:
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def is_valid_unit(unit: object) -> bool:
    return isinstance(unit, str) and _UNIT.fullmatch(unit) is not None


def unit_ancestors(unit: str) -> list[str]:
    """`mission/jp-tokyo` -> [`mission/jp-tokyo`, `mission`]."""
    parts = unit.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def principal_tokens(principal: Principal) -> frozenset[str]:
    tokens = {ALL_STAFF, f"user:{principal.user_id}"}
    if is_valid_unit(principal.unit):
        tokens.update(f"unit:{u}" for u in unit_ancestors(principal.unit))
    tokens.update(f"group:{g}" for g in principal.groups if g)
    return frozenset(t for t in tokens if is_valid_token(t))


def document_rank(classification: Classification, value: object) -> int | None:
    return classification.rank(value) if isinstance(value, str) else None


def allow_tokens(value: object) -> list[str]:
    """The well-formed tokens of an allow list, in order; anything but a list gives []."""
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(t for t in value if is_valid_token(t)))


def can_read(principal: Principal, document: Mapping[str, Any], classification: Classification) -> bool:
    """Reference predicate over a document's `classification` and `allow` fields."""
    if principal.is_operator:
        return True
    clearance = classification.rank(principal.clearance)
    rank = document_rank(classification, document.get("classification"))
    if clearance is None or rank is None or rank > clearance:
        return False
    allow = document.get("allow")
    if not isinstance(allow, list) or not allow:
        return False
    return any(isinstance(t, str) and t in principal_tokens(principal) for t in allow)


def permission_key(principal: Principal, classification: Classification) -> str:
    """A digest of everything the rule looks at: equal keys read exactly the same documents.

    Any cache of results must be keyed by this (never by the user id alone, never shared).
    """
    if principal.is_operator:
        return "operator"
    rank = classification.rank(principal.clearance)
    tokens = "\x1f".join(sorted(principal_tokens(principal)))
    return hashlib.sha256(f"{rank}\x1e{tokens}".encode()).hexdigest()


def _effective_rank(classification: Classification, document: Mapping[str, Any]) -> int:
    """A document's rank for admin actions: a missing or unknown classification counts as the highest."""
    rank = document_rank(classification, document.get("classification"))
    return rank if rank is not None else max(level.rank for level in classification.levels)


def can_administer(principal: Principal, document: Mapping[str, Any], classification: Classification) -> bool:
    """May an admin see and change a document's access fields (not its text) through admin endpoints?

    Roles never raise clearance: an admin acts only on documents at or below their own clearance,
    and a document with no valid classification only by an admin with the highest clearance.
    """
    if principal.is_operator:
        return True
    clearance = classification.rank(principal.clearance)
    if "admin" not in principal.roles or clearance is None:
        return False
    return _effective_rank(classification, document) <= clearance


def can_delete(principal: Principal, document: Mapping[str, Any], classification: Classification) -> bool:
    """Admins within their clearance; ingestors for documents of their own unit that they can read."""
    if can_administer(principal, document, classification):
        return True
    return (
        "ingestor" in principal.roles
        and is_valid_unit(principal.unit)
        and document.get("owner_unit") == principal.unit
        and can_read(principal, document, classification)
    )


def qdrant_filter(principal: Principal, classification: Classification) -> models.Filter | None:
    """The Qdrant filter that shows `principal` exactly what `can_read` allows (None for the operator).

    Relies on the chunk payload written by kms/index/store.py: `classification_rank` (absent when the
    classification is unknown, so a range condition fails) and `allow` (a list of tokens).
    """
    if principal.is_operator:
        return None
    clearance = classification.rank(principal.clearance)
    tokens = sorted(principal_tokens(principal))
    if clearance is None or not tokens:
        return models.Filter(must=[MATCH_NOTHING])
    return models.Filter(
        must=[
            models.FieldCondition(key="classification_rank", range=models.Range(gte=0, lte=clearance)),
            models.FieldCondition(key="allow", match=models.MatchAny(any=tokens)),
        ]
    )


def combine(access: models.Filter | None, extra: Iterable[models.Condition]) -> models.Filter | None:
    """AND the access filter with other conditions, never loosening it."""
    conditions: list[models.Condition] = list(extra)
    if access is not None:
        conditions.append(access)
    return models.Filter(must=conditions) if conditions else None


def administer_clause(principal: Principal, classification: Classification) -> ColumnElement[bool]:
    """`can_administer` as a SQL condition on `documents`: the rows an admin may list and manage."""
    from kms.db.models import DocumentRow

    if principal.is_operator:
        return true()
    clearance = classification.rank(principal.clearance)
    if "admin" not in principal.roles or clearance is None:
        return false()
    top = max(level.rank for level in classification.levels)
    return func.coalesce(DocumentRow.classification_rank, top) <= clearance


def registry_clause(principal: Principal, classification: Classification) -> ColumnElement[bool]:
    """The same rule as a SQL condition on the registry's `documents` table."""
    from kms.db.models import DocumentAccessRow, DocumentRow

    if principal.is_operator:
        return true()
    clearance = classification.rank(principal.clearance)
    tokens = sorted(principal_tokens(principal))
    if clearance is None or not tokens:
        return false()
    allowed = select(DocumentAccessRow.doc_id).where(
        DocumentAccessRow.doc_id == DocumentRow.doc_id, DocumentAccessRow.token.in_(tokens)
    )
    return and_(
        DocumentRow.classification_rank.is_not(None),
        DocumentRow.classification_rank >= 0,
        DocumentRow.classification_rank <= clearance,
        allowed.exists(),
    )
