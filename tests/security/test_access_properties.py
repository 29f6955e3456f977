"""Property-based tests of the access rule's three forms: `can_read`, `qdrant_filter`, `registry_clause`.

Documents get random access fields, including empty lists, unknown levels, null or missing fields,
malformed tokens, bare strings and mappings where a list belongs, and unicode unit names. Their chunk
payloads are built by the real writer (`chunk_payload`), stored in each embedded store backend, and
read back through `qdrant_filter`; registry rows are written the way the writer writes them and read
back through `registry_clause`. Both must equal `can_read` on the document as given.
"""

from __future__ import annotations

import dataclasses
import itertools
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import models

from ingest.components.chunk_writer import access_payload, chunk_payload
from kms.config import Settings
from kms.db.models import DocumentRow
from kms.db.registry import set_allow
from kms.domain import Principal
from kms.index.base import ChunkPoint
from kms.security.access import (
    MATCH_NOTHING,
    administer_clause,
    allow_tokens,
    can_administer,
    can_read,
    combine,
    document_rank,
    is_valid_token,
    permission_key,
    principal_tokens,
    qdrant_filter,
    registry_clause,
)
from kms.services import Services

LEVELS = ["public", "internal", "confidential", "secret", "top_secret"]
VALID_TOKENS = [
    "all-staff",
    "user:alice",
    "user:bob",
    "user:nguyễn.văn.an",
    "unit:hq",
    "unit:hq/consular",
    "unit:hq/lãnh-sự",
    "unit:mission",
    "unit:mission/jp-tokyo",
    "unit:mission/東京",
    "group:g1",
    "group:nhóm-a",
]
MALFORMED_TOKENS = [
    "",
    " all-staff",
    "ALL-STAFF",
    "unit:",
    "unit:/hq",
    "unit:hq/",
    "unit:..",
    "unit:hq//consular",
    "group:a b",
    "user:",
    "user:alice:x",
    unicodedata.normalize("NFD", "unit:hq/lãnh-sự"),
]
UNITS = ["hq", "hq/consular", "hq/lãnh-sự", "hq/consular/visa", "mission", "mission/jp-tokyo", "mission/東京"]
BAD_UNITS = [
    "",
    "/",
    "hq/",
    "/hq",
    "..",
    "hq//consular",
    "hq/ consular",
    unicodedata.normalize("NFD", "hq/lãnh-sự"),
]

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
level = st.sampled_from(LEVELS)
junk_level = st.one_of(
    st.none(),
    st.sampled_from(["", "ultra", "Public", "Mật", " public", "top-secret"]),
    st.integers(-2, 6),
    text,
)
valid_token = st.sampled_from(VALID_TOKENS)
token = st.one_of(valid_token, valid_token, valid_token, st.sampled_from(MALFORMED_TOKENS), text)
allow = st.one_of(
    st.lists(token, max_size=5),
    st.lists(st.one_of(token, st.integers(), st.none()), max_size=4),
    st.none(),
    st.just([]),
    st.sampled_from(VALID_TOKENS),  # a bare string where a list belongs
    st.dictionaries(st.sampled_from(VALID_TOKENS), st.booleans(), max_size=2),
)
documents = st.one_of(
    # well-formed documents, most of them readable by someone: boundary mistakes show up here
    st.fixed_dictionaries({"classification": level, "allow": st.lists(valid_token, min_size=1, max_size=3)}),
    st.fixed_dictionaries({}, optional={"classification": st.one_of(level, junk_level), "allow": allow}),
)
principals = st.builds(
    Principal,
    user_id=st.one_of(st.sampled_from(["alice", "bob", "nguyễn.văn.an", "", "x y", "alice:x"]), text),
    clearance=st.one_of(level, st.sampled_from(["", "ultra", "Mật", "SECRET"])),
    unit=st.one_of(st.sampled_from(UNITS), st.sampled_from(BAD_UNITS), text),
    groups=st.lists(st.one_of(st.sampled_from(["g1", "nhóm-a", "", "a b"]), text), max_size=3).map(tuple),
    roles=st.just(("reader",)),
    is_operator=st.sampled_from([False, False, False, False, True]),
)
PROPERTY_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
_serial = itertools.count()


@pytest.fixture(scope="module", params=["edge", "local"])
def store_services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """An empty index in each embedded store backend (the collection is created, no model is loaded)."""
    data_dir: Path = tmp_path_factory.mktemp(f"props-{request.param}")
    services = Services.open(Settings(data_dir=data_dir, store=request.param))
    yield services
    services.close()


def _write_chunks(services: Services, metas: list[dict[str, Any]]) -> list[str]:
    """Write one chunk per document with the writer's own payload; returns the doc ids."""
    run = next(_serial)
    ids, points = [], []
    for n, fields in enumerate(metas):
        doc_id = f"p{run}-{n}"
        meta = {**fields, "doc_id": doc_id, "chunk_no": 0, "title": "t", "language": "vi"}
        payload = chunk_payload(meta, "hồ sơ", 1, services.classification)
        points.append(ChunkPoint(doc_id, 1, 0, [1.0] + [0.0] * 383, {}, payload))
        ids.append(doc_id)
    services.store.upsert(points)
    return ids


def _shown(services: Services, principal: Principal, ids: list[str]) -> set[str]:
    only = models.FieldCondition(key="doc_id", match=models.MatchAny(any=ids))
    query = combine(qdrant_filter(principal, services.classification), [only])
    return {str((r.payload or {})["doc_id"]) for r in services.store.scroll(query)}


@PROPERTY_SETTINGS
@given(metas=st.lists(documents, min_size=1, max_size=8), principal=principals)
def test_index_filter_equals_can_read(
    store_services: Services, metas: list[dict[str, Any]], principal: Principal
) -> None:
    services = store_services
    ids = _write_chunks(services, metas)
    try:
        expected = {
            i for i, m in zip(ids, metas, strict=True) if can_read(principal, m, services.classification)
        }
        assert _shown(services, principal, ids) == expected
    finally:
        for doc_id in ids:
            services.store.delete_document(doc_id)


@PROPERTY_SETTINGS
@given(
    classification=st.one_of(level, junk_level),
    rank=st.sampled_from(["absent", None, "consistent"]),
    allow=st.sampled_from(["absent", None, "empty", "tokens"]),
    tokens=st.lists(st.sampled_from(VALID_TOKENS), min_size=1, max_size=3),
    principal=principals,
)
def test_null_or_missing_access_fields_never_match(
    store_services: Services,
    classification: Any,
    rank: Any,
    allow: Any,
    tokens: list[str],
    principal: Principal,
) -> None:
    """Raw payloads (as a buggy writer or an old index could hold them): fail closed."""
    services = store_services
    payload: dict[str, Any] = {"doc_id": f"raw{next(_serial)}", "classification": classification}
    if rank == "consistent":
        payload["classification_rank"] = document_rank(services.classification, classification)
    elif rank is None:
        payload["classification_rank"] = None
    if allow != "absent":
        payload["allow"] = {None: None, "empty": [], "tokens": tokens}[allow]
    services.store.upsert([ChunkPoint(payload["doc_id"], 1, 0, [1.0] + [0.0] * 383, {}, payload)])
    try:
        shown = _shown(services, principal, [payload["doc_id"]])
        readable = principal.is_operator or (
            rank == "consistent"
            and allow == "tokens"
            and can_read(principal, payload, services.classification)
        )
        assert bool(shown) == readable, (payload, principal)
    finally:
        services.store.delete_document(payload["doc_id"])


@PROPERTY_SETTINGS
@given(metas=st.lists(documents, min_size=1, max_size=8), principal=principals)
def test_registry_clause_equals_can_read(
    store_services: Services, metas: list[dict[str, Any]], principal: Principal
) -> None:
    services = store_services
    run = next(_serial)
    ids = [f"r{run}-{n}" for n in range(len(metas))]
    with services.sessions() as session:
        for doc_id, meta in zip(ids, metas, strict=True):
            value = meta.get("classification")
            row = DocumentRow(
                doc_id=doc_id,
                status="indexed",
                classification=value if isinstance(value, str) else None,
                classification_rank=document_rank(services.classification, value),
            )
            session.add(row)
            session.flush()
            set_allow(session, row, meta.get("allow") or [])  # exactly what ChunkWriter passes
        session.commit()
        try:
            from sqlalchemy import select

            clause = registry_clause(principal, services.classification)
            found = set(
                session.scalars(select(DocumentRow.doc_id).where(DocumentRow.doc_id.in_(ids), clause))
            )
            expected = {
                i for i, m in zip(ids, metas, strict=True) if can_read(principal, m, services.classification)
            }
            assert found == expected
            admin = dataclasses.replace(principal, roles=("admin",))
            managed = administer_clause(admin, services.classification)
            found = set(
                session.scalars(select(DocumentRow.doc_id).where(DocumentRow.doc_id.in_(ids), managed))
            )
            stored = [
                {"classification": c if isinstance(c := m.get("classification"), str) else None}
                for m in metas
            ]
            expected = {
                i
                for i, m in zip(ids, stored, strict=True)
                if can_administer(admin, m, services.classification)
            }
            assert found == expected
        finally:
            for doc_id in ids:
                session.delete(session.get(DocumentRow, doc_id))
            session.commit()


@given(value=allow, classification=st.one_of(level, junk_level))
def test_writer_keeps_only_well_formed_tokens_of_a_list(value: Any, classification: Any) -> None:
    from kms.config import load_classification

    levels = load_classification(Settings().index_config_dir)
    payload = access_payload(levels, classification, value)
    assert payload["allow"] == allow_tokens(value)
    assert all(is_valid_token(t) for t in payload["allow"])
    if not isinstance(value, list):
        assert payload["allow"] == []  # a bare string or a mapping never turns into tokens
    assert payload["classification_rank"] == document_rank(levels, classification)


@given(a=principals, b=principals, metas=st.lists(documents, max_size=12))
def test_equal_permission_keys_read_the_same_documents(
    a: Principal, b: Principal, metas: list[dict[str, Any]]
) -> None:
    from kms.config import load_classification

    levels = load_classification(Settings().index_config_dir)
    if permission_key(a, levels) == permission_key(b, levels):
        assert [can_read(a, m, levels) for m in metas] == [can_read(b, m, levels) for m in metas]
    twin = Principal(a.user_id, a.clearance, a.unit, tuple(reversed(a.groups)), ("admin",), a.is_operator)
    assert permission_key(twin, levels) == permission_key(a, levels)  # roles never change what one reads


@given(principal=principals)
def test_filter_never_degrades_into_match_everything(principal: Principal) -> None:
    from kms.config import load_classification

    levels = load_classification(Settings().index_config_dir)
    built = qdrant_filter(principal, levels)
    if principal.is_operator:
        assert built is None
        return
    assert built is not None and built.must
    if levels.rank(principal.clearance) is None or not principal_tokens(principal):
        assert built.must == [MATCH_NOTHING]
    assert principal_tokens(principal) >= {"all-staff"}
    assert all(is_valid_token(t) for t in principal_tokens(principal))


# ---- the rule written out by hand: catches a mistake shared by can_read and the filters ----------
AN = Principal("an", "confidential", "hq/consular", ("g1",), ("reader",))
ADMIN_LOW = Principal("root", "internal", "hq/digital", (), ("admin", "reader", "auditor", "ingestor"))
NO_UNIT = Principal("vo", "top_secret", "", ())
BAD_UNIT = Principal("vo", "top_secret", "hq//x", ())
UNICODE = Principal("lan", "secret", "hq/lãnh-sự", ("nhóm-a",))
COSMIC = Principal("x", "cosmic", "hq", ())
BAD_ID = Principal("a b", "secret", "hq", ())
OPERATOR = Principal.operator()
HQ = Principal("chi", "secret", "hq", ())
MISSION = Principal("minh", "secret", "mission", ())
RULE_TABLE: list[tuple[Principal, dict[str, Any], bool, str]] = [
    (AN, {"classification": "public", "allow": ["all-staff"]}, True, "below clearance, everyone"),
    (AN, {"classification": "confidential", "allow": ["all-staff"]}, True, "at clearance"),
    (AN, {"classification": "secret", "allow": ["all-staff"]}, False, "above clearance"),
    (
        AN,
        {"classification": "top_secret", "allow": ["user:an"]},
        False,
        "being named does not raise clearance",
    ),
    (AN, {"classification": "internal", "allow": ["unit:hq"]}, True, "an ancestor unit grants"),
    (AN, {"classification": "internal", "allow": ["unit:hq/consular"]}, True, "own unit"),
    (AN, {"classification": "internal", "allow": ["unit:hq/consular/visa"]}, False, "a child unit does not"),
    (
        AN,
        {"classification": "internal", "allow": ["unit:hq/consul"]},
        False,
        "a string prefix is not an ancestor",
    ),
    (AN, {"classification": "internal", "allow": ["unit:hq/consular-old"]}, False, "nor a longer sibling"),
    (AN, {"classification": "internal", "allow": ["unit:mission"]}, False, "another branch"),
    (AN, {"classification": "internal", "allow": ["group:g1"]}, True, "a group"),
    (AN, {"classification": "internal", "allow": ["group:G1"]}, False, "groups are case-sensitive"),
    (AN, {"classification": "internal", "allow": ["user:an"]}, True, "the user"),
    (AN, {"classification": "internal", "allow": ["user:an2", "user:AN"]}, False, "other users"),
    (AN, {"classification": "internal", "allow": ["group:x", "unit:hq"]}, True, "any one token is enough"),
    (AN, {"classification": "internal", "allow": []}, False, "empty allow"),
    (AN, {"classification": "internal", "allow": None}, False, "null allow"),
    (AN, {"classification": "internal"}, False, "missing allow"),
    (AN, {"classification": "internal", "allow": "all-staff"}, False, "a string is not a list"),
    (AN, {"classification": "internal", "allow": ["all-staff "]}, False, "no trimming at read time"),
    (AN, {"classification": None, "allow": ["all-staff"]}, False, "null classification"),
    (AN, {"allow": ["all-staff"]}, False, "missing classification"),
    (
        AN,
        {"classification": "Public", "allow": ["all-staff"]},
        False,
        "ids only: labels are parsed at ingestion",
    ),
    (AN, {"classification": "Nội bộ", "allow": ["all-staff"]}, False, "a Vietnamese label is not an id"),
    (ADMIN_LOW, {"classification": "secret", "allow": ["all-staff"]}, False, "roles never raise clearance"),
    (ADMIN_LOW, {"classification": "internal", "allow": ["unit:hq"]}, True, "an admin reads like anyone"),
    (
        ADMIN_LOW,
        {"classification": None, "allow": ["all-staff"]},
        False,
        "admins read no unclassified document",
    ),
    (
        COSMIC,
        {"classification": "public", "allow": ["all-staff"]},
        False,
        "an unknown clearance reads nothing",
    ),
    (NO_UNIT, {"classification": "public", "allow": ["all-staff"]}, True, "no unit: all-staff still applies"),
    (NO_UNIT, {"classification": "public", "allow": ["unit:hq"]}, False, "no unit: no unit token"),
    (BAD_UNIT, {"classification": "public", "allow": ["unit:hq"]}, False, "a malformed unit grants nothing"),
    (UNICODE, {"classification": "secret", "allow": ["unit:hq/lãnh-sự"]}, True, "unicode unit"),
    (UNICODE, {"classification": "secret", "allow": ["unit:hq"]}, True, "its ancestor"),
    (
        UNICODE,
        {"classification": "secret", "allow": [unicodedata.normalize("NFD", "unit:hq/lãnh-sự")]},
        False,
        "NFD",
    ),
    (UNICODE, {"classification": "secret", "allow": ["group:nhóm-a"]}, True, "unicode group"),
    (BAD_ID, {"classification": "public", "allow": ["user:a b"]}, False, "a malformed user token"),
    (HQ, {"classification": "internal", "allow": ["unit:hq"]}, True, "HQ staff read HQ-wide documents"),
    (HQ, {"classification": "internal", "allow": ["unit:hq/consular"]}, False, "but not a department's"),
    (MISSION, {"classification": "internal", "allow": ["unit:mission/jp-tokyo"]}, False, "nor one mission's"),
    (OPERATOR, {"classification": None, "allow": []}, True, "the operator sees everything"),
]


@pytest.mark.parametrize(
    ("principal", "document", "expected", "why"), RULE_TABLE, ids=[row[3] for row in RULE_TABLE]
)
def test_rule_table(
    store_services: Services, principal: Principal, document: dict[str, Any], expected: bool, why: str
) -> None:
    services = store_services
    assert can_read(principal, document, services.classification) is expected, why
    ids = _write_chunks(services, [document])
    try:
        assert bool(_shown(services, principal, ids)) is expected, f"index: {why}"
    finally:
        services.store.delete_document(ids[0])


def test_boundary_grid(store_services: Services) -> None:
    """Every level x every clearance x each kind of token, exhaustively, on each backend."""
    services = store_services
    tokens = [
        "all-staff",
        "unit:hq",
        "unit:hq/consular",
        "unit:hq/consular/visa",
        "group:g1",
        "user:an",
        "user:bo",
    ]
    metas = [{"classification": lvl, "allow": [t]} for lvl in LEVELS for t in tokens]
    ids = _write_chunks(services, metas)
    try:
        for clearance in [*LEVELS, "cosmic"]:
            for unit, groups in (("hq/consular", ("g1",)), ("mission", ()), ("", ("g1",))):
                principal = Principal("an", clearance, unit, groups)
                expected = {
                    i
                    for i, m in zip(ids, metas, strict=True)
                    if can_read(principal, m, services.classification)
                }
                assert _shown(services, principal, ids) == expected, principal
                rank = services.classification.rank(clearance)
                assert all(
                    LEVELS.index(m["classification"]) <= (rank if rank is not None else -1)
                    for i, m in zip(ids, metas, strict=True)
                    if i in expected
                )
    finally:
        for doc_id in ids:
            services.store.delete_document(doc_id)
