"""`kms.db.driver.driver_transaction`: a SQLite file's connection is the thread's own, held outside
the pool; a database server's comes from the pool."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from postgres_server import PgServer
from sqlalchemy import Engine, text

from kms.db.driver import driver_transaction
from kms.db.session import make_engine


@pytest.fixture
def file_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    return engine


def connection_of(engine: Engine) -> object:
    with driver_transaction(engine) as cursor:
        return cursor.connection


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_thread_keeps_its_connection_outside_the_pool(file_engine: Engine) -> None:
    first = connection_of(file_engine)
    assert connection_of(file_engine) is first
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(connection_of(file_engine)))
    thread.start()
    thread.join()
    assert others[0] is not first
    assert file_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with driver_transaction(file_engine) as cursor:  # the pragmas of the engine's connect hook ran
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_commit_rollback_and_other_connections_see_each_other(file_engine: Engine) -> None:
    with driver_transaction(file_engine) as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    assert count(file_engine) == 1  # committed, seen by a pooled connection
    with pytest.raises(RuntimeError), driver_transaction(file_engine) as cursor:
        cursor.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("the block failed")
    assert count(file_engine) == 1  # rolled back, and the held connection is usable again
    with file_engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (3)"))
    with driver_transaction(file_engine) as cursor:  # a write by another connection shows at once
        assert cursor.execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_dispose_closes_the_held_connections(file_engine: Engine) -> None:
    held = connection_of(file_engine)
    file_engine.dispose()
    assert isinstance(held, sqlite3.Connection)
    with pytest.raises(sqlite3.ProgrammingError):
        held.execute("SELECT 1")
    assert connection_of(file_engine) is not held
    with driver_transaction(file_engine) as cursor:
        assert cursor.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_an_in_memory_database_uses_its_one_pooled_connection() -> None:
    """A connection of its own would open another, empty, in-memory database."""
    engine = make_engine("sqlite://")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with driver_transaction(engine) as cursor:
            assert cursor.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        engine.dispose()


def test_a_database_server_uses_the_pool(pg_server: PgServer) -> None:
    engine = make_engine(pg_server.create_database())
    try:
        with driver_transaction(engine) as cursor:
            assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
            cursor.execute("SELECT 1")
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_a_forked_child_opens_its_own_connection(file_engine: Engine) -> None:
    import os

    parent = id(connection_of(file_engine))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, which works
        try:
            with driver_transaction(file_engine) as cursor:
                cursor.execute("INSERT INTO t VALUES (7)")
                ok = id(cursor.connection) != parent
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert count(file_engine) == 1
    assert id(connection_of(file_engine)) == parent
