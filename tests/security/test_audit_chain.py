"""The hash-chained audit log: appending (threads, processes) and `kms audit verify` / `export`.

Tampering with, deleting or reordering a record is reported by `kms audit verify` (exit 1), naming
the first broken or missing record; an intact log verifies (exit 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_server import PgServer
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from kms.cli.main import app
from kms.config import Settings
from kms.db.session import make_engine, make_session_factory
from kms.errors import KmsError
from kms.security import audit


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[Path, sessionmaker[Session]]]:
    """A data dir whose registry holds six audit records."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    for n in range(1, 7):
        audit.append(
            sessions, actor="alice", action="search", target=None, detail={"query": f"q{n}", "results": [n]}
        )
    yield data_dir, sessions
    engine.dispose()


def kms(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"KMS_DATA_DIR": str(data_dir)}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def sql(sessions: sessionmaker[Session], statement: str, **params: object) -> None:
    with sessions() as session:
        session.execute(text(statement), params)
        session.commit()


def test_an_intact_log_verifies(log: tuple[Path, sessionmaker[Session]]) -> None:
    code, out, _err = kms(log[0], "audit", "verify")
    assert code == 0 and out.startswith("ok: 6 records, head ")


def tamper_detail(sessions: sessionmaker[Session]) -> None:
    sql(
        sessions, "UPDATE audit_log SET detail = :d WHERE id = 3", d='{"query":"nothing to see","results":[]}'
    )


def tamper_and_rehash(sessions: sessionmaker[Session]) -> None:
    """A smarter forger recomputes the altered record's own hash: the next record still disagrees."""
    with sessions() as session:
        row = session.execute(
            text("SELECT id, ts, actor, action, target, prev_hash FROM audit_log WHERE id = 3")
        ).one()
        detail = {"query": "nothing to see", "results": []}
        digest = audit.record_hash(
            id=row.id,
            ts=row.ts,
            actor="bob",
            action=row.action,
            target=row.target,
            detail=detail,
            prev_hash=row.prev_hash,
        )
        session.execute(
            text("UPDATE audit_log SET actor = 'bob', detail = :d, hash = :h WHERE id = 3"),
            {"d": audit.canonical(detail), "h": digest},
        )
        session.commit()


def swap_contents(sessions: sessionmaker[Session]) -> None:
    """Reorder: records 2 and 3 exchange everything but their ids."""
    columns = "ts, actor, action, target, detail, prev_hash, hash"
    with sessions() as session:
        two = session.execute(text(f"SELECT {columns} FROM audit_log WHERE id = 2")).one()
        three = session.execute(text(f"SELECT {columns} FROM audit_log WHERE id = 3")).one()
        for row_id, values in ((2, three), (3, two)):
            session.execute(
                text(
                    "UPDATE audit_log SET ts=:ts, actor=:actor, action=:action, target=:target, detail=:detail, "
                    "prev_hash=:prev_hash, hash=:hash WHERE id=:id"
                ),
                {**values._asdict(), "id": row_id},
            )
        session.commit()


def swap_ids(sessions: sessionmaker[Session]) -> None:
    sql(sessions, "UPDATE audit_log SET id = 100 WHERE id = 2")
    sql(sessions, "UPDATE audit_log SET id = 2 WHERE id = 3")
    sql(sessions, "UPDATE audit_log SET id = 3 WHERE id = 100")


def forge_tail(sessions: sessionmaker[Session]) -> None:
    """Append a well-formed record without going through kms (the head does not name it)."""
    with sessions() as session:
        last = session.execute(text("SELECT hash FROM audit_log WHERE id = 6")).one()
        digest = audit.record_hash(
            id=7,
            ts="2030-01-01T00:00:00+00:00",
            actor="x",
            action="search",
            target=None,
            detail={},
            prev_hash=last.hash,
        )
        session.execute(
            text(
                "INSERT INTO audit_log (id, ts, actor, action, target, detail, prev_hash, hash) "
                "VALUES (7, '2030-01-01T00:00:00+00:00', 'x', 'search', NULL, '{}', :p, :h)"
            ),
            {"p": last.hash, "h": digest},
        )
        session.commit()


TAMPERING: list[tuple[str, Callable[[sessionmaker[Session]], None], str]] = [
    ("altered detail", tamper_detail, "record 3 was altered"),
    ("altered and re-hashed", tamper_and_rehash, "record 4 does not follow record 3"),
    ("deleted in the middle", lambda s: sql(s, "DELETE FROM audit_log WHERE id = 3"), "record 3 is missing"),
    ("deleted first", lambda s: sql(s, "DELETE FROM audit_log WHERE id = 1"), "record 1 is missing"),
    ("deleted last", lambda s: sql(s, "DELETE FROM audit_log WHERE id = 6"), "records 6..6 are missing"),
    ("tail cut", lambda s: sql(s, "DELETE FROM audit_log WHERE id >= 4"), "records 4..6 are missing"),
    ("reordered contents", swap_contents, "record 2 "),
    ("reordered ids", swap_ids, "record 2 "),
    ("forged tail", forge_tail, "the audit head does not match record 7"),
    ("head deleted", lambda s: sql(s, "DELETE FROM audit_head"), "the audit head record is missing"),
]


@pytest.mark.parametrize(("case", "tamper", "message"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_verify_reports_the_first_broken_or_missing_record(
    log: tuple[Path, sessionmaker[Session]],
    case: str,
    tamper: Callable[[sessionmaker[Session]], None],
    message: str,
) -> None:
    data_dir, sessions = log
    tamper(sessions)
    code, out, _err = kms(data_dir, "audit", "verify")
    assert code == 1, (case, out)
    assert out.startswith("BROKEN: ") and message in out, (case, out)
    code, out, _err = kms(data_dir, "audit", "verify", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_appending_after_tampering_does_not_hide_it(log: tuple[Path, sessionmaker[Session]]) -> None:
    data_dir, sessions = log
    tamper_detail(sessions)
    audit.append(sessions, actor="alice", action="search")
    code, out, _err = kms(data_dir, "audit", "verify")
    assert code == 1 and "record 3 was altered" in out


def test_a_deleted_head_stops_appending_instead_of_being_recreated(
    log: tuple[Path, sessionmaker[Session]],
) -> None:
    _data_dir, sessions = log
    sql(sessions, "DELETE FROM audit_head")
    with pytest.raises(KmsError, match="head is missing"):
        audit.append(sessions, actor="alice", action="search")


def test_export_writes_every_record_as_json_lines_and_is_audited(
    log: tuple[Path, sessionmaker[Session]],
) -> None:
    data_dir, _sessions = log
    code, out, err = kms(data_dir, "audit", "export")
    assert code == 0 and err.strip() == "6 records"
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert set(records[0]) == {"id", "ts", "actor", "action", "target", "detail", "prev_hash", "hash"}
    assert records[1]["prev_hash"] == records[0]["hash"]
    code, out, _err = kms(data_dir, "audit", "export", "--after", "6", "--action", "audit.export")
    exported = json.loads(out.splitlines()[0])
    assert exported["actor"].startswith("local:") and exported["detail"]["records"] == 6
    assert kms(data_dir, "audit", "verify")[0] == 0


def test_threads_append_one_unbroken_chain(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)

    def work(n: int) -> None:
        for i in range(25):
            audit.append(sessions, actor=f"t{n}", action="search", detail={"i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sessions() as session:
        result = audit.verify(session)
        ids = [r.id for r in audit.records(session)]
    engine.dispose()
    assert result.ok and result.records == 200 and ids == list(range(1, 201))


def test_processes_append_one_unbroken_chain(database_url: str) -> None:
    url = database_url
    make_engine(url).dispose()
    script = (
        "import sys\n"
        "from kms.db.session import make_engine, make_session_factory\n"
        "from kms.security import audit\n"
        "sessions = make_session_factory(make_engine(sys.argv[1]))\n"
        "for i in range(60):\n"
        "    audit.append(sessions, actor=sys.argv[2], action='search', detail={'i': i})\n"
    )
    env = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False"}
    workers = [subprocess.Popen([sys.executable, "-c", script, url, f"p{n}"], env=env) for n in range(3)]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        result = audit.verify(session)
    engine.dispose()
    assert result.ok and result.records == 180, result


def test_a_deleted_head_stops_appending_on_postgresql(pg_server: PgServer) -> None:
    engine = make_engine(pg_server.create_database())
    sessions = make_session_factory(engine)
    first = audit.append(sessions, actor="alice", action="search", detail={"n": 1})
    second = audit.append(sessions, actor="alice", action="search")
    assert (first.id, second.id, second.prev_hash) == (1, 2, first.hash)
    sql(sessions, "DELETE FROM audit_head")
    with pytest.raises(KmsError, match="head is missing"):
        audit.append(sessions, actor="alice", action="search")
    with sessions() as session:
        assert audit.verify(session).problem == "the audit head record is missing"
    engine.dispose()


# What the chain has always hashed: sha256 over the canonical JSON of the whole record. Logs written
# before `chain_hash` built that text around the detail's own must still verify.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**62),
    st.text(),
    st.text(),
    st.text(),
    st.none() | st.text(),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
)
def test_chain_hash_is_the_hash_of_the_records_canonical_json(
    record_id: int, ts: str, actor: str, action: str, target: str | None, detail: dict[str, object]
) -> None:
    body = {"id": record_id, "ts": ts, "actor": actor, "action": action, "target": target}
    whole = {**body, "detail": detail, "prev_hash": "ab" * 32}
    expected = hashlib.sha256(
        json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    ).hexdigest()
    detail_text, value = audit._normalise_detail(detail)
    assert audit.chain_hash(**body, detail_text=detail_text, prev_hash="ab" * 32) == expected
    assert audit.record_hash(**body, detail=value, prev_hash="ab" * 32) == expected
