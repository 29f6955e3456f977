"""`kms demo`: load the bundled sample corpus and create demo users with API keys."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from kms.cli.backend import open_backend
from kms.config import Classification, Settings, load_classification
from kms.db.security_models import UserRow
from kms.db.session import make_engine, make_session_factory
from kms.security import audit, users
from kms.security.authn import operator_name


def samples_dir() -> Path:
    return Path(str(resources.files("kms.samples"))) / "corpus"


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    clearance: str
    unit: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("reader",)


# Different clearances, an HQ unit and two missions, plus an admin and an auditor.
DEMO_USERS = (
    DemoUser("demo-hq-policy", "secret", "hq/policy", ("leadership",)),
    DemoUser(
        "demo-hq-consular", "confidential", "hq/consular", ("consular-network",), ("reader", "ingestor")
    ),
    DemoUser("demo-tokyo", "internal", "mission/jp-tokyo"),
    DemoUser("demo-paris", "confidential", "mission/fr-paris", ("economic-diplomacy",)),
    DemoUser("demo-admin", "internal", "hq/digital", (), ("admin", "reader")),
    DemoUser("demo-auditor", "public", "hq/personnel", (), ("auditor",)),
)


def load_demo(settings: Settings) -> None:
    backend = open_backend(settings)
    try:
        results = backend.ingest([samples_dir()], {})
    finally:
        backend.close()
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    sys.stderr.write(f"sample corpus: {counts}\n")
    keys = create_demo_users(settings)
    sys.stdout.write("demo users (each run issues fresh keys and revokes the previous ones):\n")
    for user, key in keys:
        roles = ",".join(user.roles)
        sys.stdout.write(f"  {user.user_id:<17} {user.clearance:<13} {user.unit:<17} {roles:<15} {key}\n")
    sys.stdout.flush()
    sys.stderr.write(
        "try: curl -s -X POST 127.0.0.1:8000/api/v1/search -H 'content-type: application/json' "
        f"-H 'authorization: Bearer {keys[0][1]}' -d '{{\"query\":\"bảo hộ công dân\"}}'\n"
    )


def create_demo_users(settings: Settings) -> list[tuple[DemoUser, str]]:
    """Create the demo users if missing and give each a fresh key (older demo keys are revoked)."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        sessions = make_session_factory(engine)
        classification = load_classification(settings.index_config_dir)
        return [(user, _fresh_key(sessions, classification, user)) for user in DEMO_USERS]
    finally:
        engine.dispose()


def _fresh_key(sessions: sessionmaker[Session], classification: Classification, user: DemoUser) -> str:
    actor = operator_name()
    with sessions() as session:
        created = session.get(UserRow, user.user_id) is None
        if created:
            users.create_user(
                session,
                user_id=user.user_id,
                clearance=user.clearance,
                unit=user.unit,
                groups=user.groups,
                roles=user.roles,
                classification=classification,
            )
        old = [k.key_id for k in users.list_keys(session, user_id=user.user_id) if k.revoked_at is None]
        for key_id in old:
            users.revoke_key(session, key_id=key_id)
        info, key = users.create_key(session, user_id=user.user_id)
        session.commit()
    if created:
        audit.append(sessions, actor=actor, action="user.create", target=user.user_id, detail={"demo": True})
    for key_id in old:
        audit.append(
            sessions, actor=actor, action="key.revoke", target=key_id, detail={"user_id": user.user_id}
        )
    audit.append(
        sessions, actor=actor, action="key.create", target=info.key_id, detail={"user_id": user.user_id}
    )
    return key
