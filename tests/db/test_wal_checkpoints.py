"""`kms.db.checkpoint`: in `kms serve` the SQLite log is checkpointed by a thread, not by the
commit that happens to fill it (a request's audit append), and stays bounded if the thread stops."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlite_files import audit_records_in_file_alone

from kms.db import checkpoint
from kms.db.checkpoint import start_wal_checkpoints
from kms.db.session import make_engine, make_session_factory
from kms.security import audit

SQLITE_DEFAULT_AUTOCHECKPOINT = 1000  # pages


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite3"


@pytest.fixture
def engine(db_file: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_file}")
    yield engine
    engine.dispose()


def append_records(engine: Engine, count: int) -> None:
    sessions = make_session_factory(engine)
    for n in range(count):
        audit.append(sessions, actor="alice", action="search", detail={"query": f"q{n}", "results": []})


def log_frames(db_file: Path) -> int:
    """Frames the log file has room for (it is reused from its start after a full checkpoint)."""
    wal = Path(f"{db_file}-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_commits_leave_checkpoints_to_the_thread(engine: Engine, db_file: Path, tmp_path: Path) -> None:
    """A thread that has not run yet: the commits let the log grow past SQLite's default limit,
    where each would otherwise have stopped to copy it into the file."""
    checkpointer = start_wal_checkpoints(engine, interval_s=3600)
    assert checkpointer is not None
    try:
        append_records(engine, 600)
        assert log_frames(db_file) > 1.2 * SQLITE_DEFAULT_AUTOCHECKPOINT
        assert audit_records_in_file_alone(db_file, tmp_path) < 600
    finally:
        checkpointer.stop()


def test_without_the_thread_a_commit_checkpoints_at_the_default_limit(
    engine: Engine, db_file: Path, tmp_path: Path
) -> None:
    """The control of the test above: the same appends on SQLite's default keep the log small."""
    append_records(engine, 600)
    assert log_frames(db_file) <= 1.2 * SQLITE_DEFAULT_AUTOCHECKPOINT


def test_the_thread_copies_the_log_into_the_file(engine: Engine, db_file: Path, tmp_path: Path) -> None:
    checkpointer = start_wal_checkpoints(engine, interval_s=0.05)
    assert checkpointer is not None
    try:
        append_records(engine, 40)
        deadline = time.monotonic() + 20
        while audit_records_in_file_alone(db_file, tmp_path) < 40:
            assert time.monotonic() < deadline, "the thread never checkpointed the log"
            time.sleep(0.05)
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.stop()
    with make_session_factory(engine)() as session:
        assert audit.verify(session).ok


def test_a_last_pass_under_the_writers_lock_lets_the_log_start_over(engine: Engine, db_file: Path) -> None:
    """Appends every millisecond, as under load: a pass beside them never finds the log copied to
    its end (they add to it meanwhile), so SQLite would never start it over and it would grow to the
    fallback; the last pass holds the appends' lock, and the log stays a few intervals' worth."""
    checkpointer = start_wal_checkpoints(engine, interval_s=0.1, writers=audit.APPEND_LOCK)
    assert checkpointer is not None
    sessions = make_session_factory(engine)
    try:
        for n in range(1500):  # ~7,500 pages of log in all
            audit.append(sessions, actor="alice", action="search", detail={"query": f"q{n}"})
            time.sleep(0.001)
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints >= 2
    assert log_frames(db_file) < SQLITE_DEFAULT_AUTOCHECKPOINT


def test_a_stopped_thread_leaves_the_log_bounded_by_the_fallback(
    engine: Engine, db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "FALLBACK_PAGES", 200)
    checkpointer = start_wal_checkpoints(engine, interval_s=3600)
    assert checkpointer is not None
    checkpointer.stop()
    append_records(engine, 600)
    assert log_frames(db_file) < 400
    assert audit_records_in_file_alone(db_file, tmp_path) > 500  # all but the log's last few hundred pages


def test_a_thread_that_cannot_open_the_file_says_so_and_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'registry.sqlite3'}")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()  # SQLite cannot create the file again
    with caplog.at_level(logging.WARNING, logger="kms.db.checkpoint"):
        checkpointer = start_wal_checkpoints(engine, interval_s=0.01)
        assert checkpointer is not None
        checkpointer.stop()
    assert checkpointer.checkpoints == 0
    assert "no WAL checkpoints on a thread" in caplog.text
    engine.dispose()


def test_a_database_that_is_not_a_sqlite_file_gets_no_thread() -> None:
    memory = make_engine("sqlite://")
    assert start_wal_checkpoints(memory) is None
    memory.dispose()
