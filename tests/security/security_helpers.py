"""Helpers for the security tests: the secure corpus, random principals and access fields.

`secure_corpus` (a session fixture in conftest.py): ONE real index (real model, real embedded store, real SQLite) holding
curated edge cases plus a few hundred random one- or two-sentence documents with random levels,
units, groups and allow lists, including empty and malformed ones. The documents go through the
real ingestion pipeline *without* the metadata validation that `kms ingest` applies, so malformed
access fields reach the writer, the registry and the index exactly as a buggy source would send them.

Every document contains the words "hồ sơ", so a sparse search for them matches every document:
whatever a principal's search returns must then be exactly the documents `can_read` allows.
"""

from __future__ import annotations

import os
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ingest.pipeline import build_pipeline, run_pipeline
from kms.db.security_models import UserRow
from kms.domain import DOC_TYPES, Principal
from kms.security import users
from kms.security.access import can_read
from kms.services import Services

OPERATOR_TOKEN = "security-tests-operator-token"
SEED = int(os.environ.get("KMS_SECURITY_SEED", "20261123"))
N_RANDOM_DOCS = int(os.environ.get("KMS_SECURITY_DOCS", "240"))
MATCH_ALL = "hồ sơ"

LEVELS = ("public", "internal", "confidential", "secret", "top_secret")
UNITS = (
    "hq",
    "hq/consular",
    "hq/policy",
    "hq/lãnh-sự",
    "mission",
    "mission/jp-tokyo",
    "mission/fr-paris",
    "mission/東京",
)
GROUPS = ("leadership", "consular-network", "economic-diplomacy", "nhóm-đặc-biệt")
USER_IDS = (*(f"u{n:02d}" for n in range(24)), "nguyễn.văn.an")
ISSUERS = ("Bộ Ngoại giao", "Cục Lãnh sự", "Đại sứ quán tại Nhật Bản", "Vụ Chính sách đối ngoại")
TOPICS = (
    "bảo hộ công dân",
    "thị thực và hộ chiếu",
    "hợp tác kinh tế",
    "chuyển đổi số",
    "lao động ngoài nước",
    "văn hóa và giáo dục",
    "an ninh biển",
    "viện trợ phát triển",
)
SENTENCES = (
    "Đại sứ quán đề nghị các đơn vị phối hợp xử lý kịp thời.",
    "Báo cáo nêu rõ kết quả đạt được trong quý vừa qua.",
    "Cục Lãnh sự hướng dẫn thủ tục cho công dân ở nước ngoài.",
    "Đoàn công tác sẽ làm việc với các cơ quan đối tác.",
    "Văn bản này thay thế hướng dẫn đã ban hành năm trước.",
    "Các cơ quan đại diện cần cập nhật số liệu hằng tháng.",
)

# Hand-picked edge cases: (slug, access fields as given; a missing key means the field is absent).
CURATED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("public-all-staff", {"classification": "public", "allow": ["all-staff"]}),
    ("internal-hq", {"classification": "internal", "allow": ["unit:hq"]}),
    ("confidential-consular", {"classification": "confidential", "allow": ["unit:hq/consular"]}),
    ("secret-tokyo", {"classification": "secret", "allow": ["unit:mission/jp-tokyo"]}),
    ("top-secret-leadership", {"classification": "top_secret", "allow": ["group:leadership"]}),
    ("secret-one-user", {"classification": "secret", "allow": ["user:u01"]}),
    ("no-classification", {"classification": None, "allow": ["all-staff"]}),
    ("missing-classification", {"allow": ["all-staff"]}),
    ("unknown-classification", {"classification": "ultra", "allow": ["all-staff"]}),
    ("label-not-id", {"classification": "Mật", "allow": ["all-staff"]}),
    ("wrong-case-level", {"classification": "Public", "allow": ["all-staff"]}),
    ("empty-allow", {"classification": "public", "allow": []}),
    ("missing-allow", {"classification": "public"}),
    ("null-allow", {"classification": "public", "allow": None}),
    ("string-allow", {"classification": "public", "allow": "all-staff"}),
    ("mapping-allow", {"classification": "public", "allow": {"all-staff": True}}),
    ("malformed-tokens", {"classification": "public", "allow": ["ALL-STAFF", "unit:", "unit:hq/", "user:"]}),
    ("spaced-token", {"classification": "public", "allow": [" all-staff", "group:a b"]}),
    ("mixed-allow", {"classification": "internal", "allow": [7, None, "group:consular-network"]}),
    ("unicode-unit", {"classification": "confidential", "allow": ["unit:hq/lãnh-sự"]}),
    (
        "unicode-unit-nfd",
        {"classification": "confidential", "allow": [unicodedata.normalize("NFD", "unit:hq/lãnh-sự")]},
    ),
    ("cjk-unit", {"classification": "secret", "allow": ["unit:mission/東京"]}),
    ("mission-wide", {"classification": "internal", "allow": ["unit:mission"]}),
    ("child-unit-only", {"classification": "internal", "allow": ["unit:hq/consular/visa"]}),
    ("unicode-group", {"classification": "internal", "allow": ["group:nhóm-đặc-biệt"]}),
    ("unicode-user", {"classification": "confidential", "allow": ["user:nguyễn.văn.an"]}),
)


@dataclass(frozen=True)
class Doc:
    doc_id: str
    slug: str
    meta: dict[str, Any]  # exactly what was given to the pipeline (may be malformed)
    text: str


@dataclass
class Case:
    """A principal, the headers that authenticate as it, and a description for failure messages."""

    slug: str
    principal: Principal
    headers: dict[str, str]


@dataclass
class SecureCorpus:
    services: Services
    client: TestClient
    docs: dict[str, Doc]
    catalog: dict[str, dict[str, Any]]  # doc_id -> the operator's search hit (payload fields)
    rng: random.Random
    _users: int = field(default=0)

    @property
    def classification(self) -> Any:
        return self.services.classification

    def readable(self, principal: Principal) -> set[str]:
        return {d for d, doc in self.docs.items() if can_read(principal, doc.meta, self.classification)}

    def facets(self, doc_ids: set[str]) -> dict[str, dict[str, int]]:
        """What the facets must be when the results are exactly `doc_ids` (see kms.search)."""
        expected: dict[str, dict[str, int]] = {}
        for name in ("doc_type", "issuer", "owner_unit", "year", "language", "classification"):
            values = []
            for doc_id in doc_ids:
                hit = self.catalog[doc_id]
                value = (
                    int(hit["issued_date"][:4]) if name == "year" and hit["issued_date"] else hit.get(name)
                )
                if value not in (None, ""):
                    values.append(str(value))
            expected[name] = dict(Counter(values))
        return expected

    def case(self, principal: Principal, slug: str = "") -> Case:
        """Store `principal` as a user (its fields as they are, even invalid ones) and give it a key."""
        self._users += 1
        stored = Principal(
            user_id=principal.user_id or f"anon{self._users}",
            clearance=principal.clearance,
            unit=principal.unit,
            groups=principal.groups,
            roles=principal.roles,
        )
        with self.services.sessions() as session:
            if session.get(UserRow, stored.user_id) is not None:
                session.delete(session.get(UserRow, stored.user_id))
                session.flush()
            session.add(
                UserRow(
                    user_id=stored.user_id,
                    clearance=stored.clearance,
                    unit=stored.unit,
                    groups=list(stored.groups),
                    roles=list(stored.roles),
                    disabled=False,
                )
            )
            session.flush()
            _info, key = users.create_key(session, user_id=stored.user_id)
            session.commit()
        return Case(slug or stored.user_id, stored, {"authorization": f"Bearer {key}"})


def random_access(rng: random.Random) -> dict[str, Any]:
    """Random access fields: mostly well-formed, sometimes absent, empty or malformed."""
    fields: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.85:
        fields["classification"] = rng.choice(LEVELS)
    elif roll < 0.9:
        fields["classification"] = rng.choice(("ultra", "", "Secret", "Tối mật", " public"))
    elif roll < 0.95:
        fields["classification"] = None
    roll = rng.random()
    if roll < 0.8:
        tokens = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.08:
                tokens.append("all-staff")
            elif kind < 0.55:
                tokens.append(f"unit:{rng.choice(UNITS)}")
            elif kind < 0.8:
                tokens.append(f"group:{rng.choice(GROUPS)}")
            else:
                tokens.append(f"user:{rng.choice(USER_IDS)}")
        fields["allow"] = tokens
    elif roll < 0.86:
        fields["allow"] = []
    elif roll < 0.9:
        pass  # no allow list at all
    else:
        fields["allow"] = rng.choice(
            (
                None,
                "all-staff",
                {"all-staff": 1},
                ["All-Staff"],
                ["unit:", "group:"],
                [3, {"x": 1}, f"unit:{rng.choice(UNITS)}"],
                [f"unit:{rng.choice(UNITS)}/"],
            )
        )
    return fields


def random_principal(rng: random.Random, n: int) -> Principal:
    clearance = rng.choice(LEVELS) if rng.random() < 0.9 else rng.choice(("", "ultra", "Mật", "SECRET"))
    unit = (
        rng.choice(UNITS) if rng.random() < 0.93 else rng.choice(("", "/", "hq//x", "../hq", "hq/ consular"))
    )
    groups = tuple(rng.sample(GROUPS, rng.randint(0, 2)))
    if rng.random() < 0.05:
        groups += (rng.choice(("", "a b", "nhóm đặc biệt")),)
    user_id = rng.choice(USER_IDS) if rng.random() < 0.5 else f"r{n:03d}"
    return Principal(user_id=user_id, clearance=clearance, unit=unit, groups=groups, roles=("reader",))


def _doc_text(rng: random.Random, n: int, topic: str) -> str:
    sentences = [f"Hồ sơ {topic} số {n}."]
    if rng.random() < 0.6:
        sentences.append(rng.choice(SENTENCES))
    return " ".join(sentences)


def build_corpus(services: Services, folder: Path, rng: random.Random) -> dict[str, Doc]:
    folder.mkdir(parents=True, exist_ok=True)
    docs: dict[str, Doc] = {}
    specs = [(slug, fields) for slug, fields in CURATED]
    specs += [(f"random-{n:03d}", random_access(rng)) for n in range(N_RANDOM_DOCS)]
    for n, (slug, fields) in enumerate(specs):
        doc_id = f"sec-{n:03d}-{slug}"[:100]
        topic = rng.choice(TOPICS)
        meta: dict[str, Any] = {
            "doc_id": doc_id,
            "title": f"Hồ sơ {n}: {topic}",
            "doc_type": rng.choice(DOC_TYPES),
            "issuer": rng.choice(ISSUERS),
            "issued_date": f"{rng.randint(2018, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "language": "vi",
            "owner_unit": rng.choice(UNITS),
            **fields,
        }
        docs[doc_id] = Doc(doc_id=doc_id, slug=slug, meta=meta, text=_doc_text(rng, n, topic))
    pipeline = build_pipeline(services)
    ordered = list(docs.values())
    for start in range(0, len(ordered), 48):
        batch = ordered[start : start + 48]
        sources = []
        metas = []
        for doc in batch:
            path = folder / f"{doc.doc_id}.txt"
            path.write_text(doc.text, encoding="utf-8")
            sources.append(str(path))
            digest = services.originals.put(doc.text.encode())  # as the real ingest keeps originals
            metas.append({**doc.meta, "sha256": digest, "file_name": path.name})
        outcome = run_pipeline(pipeline, sources, metas)
        assert not outcome["failed"], outcome["failed"]
        assert {w["doc_id"] for w in outcome["written"]} == {d.doc_id for d in batch}
    return docs
