"""Core statements compiled once per database driver, run on a DBAPI cursor.

For the few statements every request runs (the API-key check, the audit append): SQLAlchemy's
execution machinery (compiled-cache lookup, parameter and result processing in Python, result
wrapping) cost more than the statements themselves, measured on 2 cores: an audit append 0.49 ->
0.21 ms, an API-key check 0.14 -> 0.08 ms alone, and two to three times that inside a request. The SQL
still comes from the table definitions, and result columns are converted by their SQLAlchemy types;
bound values are passed to the driver as they are (text and integers only).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


@dataclass(frozen=True)
class DriverStatement:
    sql: str
    positional: tuple[str, ...] | None  # bind names in order, for drivers taking a sequence
    defaults: dict[str, Any]  # values the statement binds itself (literals in it)
    row_type: Callable[..., Any] | None = None  # a named tuple of the selected columns
    converters: tuple[Callable[[Any], Any] | None, ...] = ()  # per column, from its SQLAlchemy type

    def params(self, values: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        merged = {**self.defaults, **values}
        return [merged[name] for name in self.positional] if self.positional is not None else merged

    def execute(self, cursor: Any, **values: Any) -> Any:
        cursor.execute(self.sql, self.params(values))
        return cursor

    def first(self, cursor: Any, **values: Any) -> Any:
        """The first row, its columns converted and named (a plain tuple for DML ... RETURNING)."""
        row = self.execute(cursor, **values).fetchone()
        if row is None or self.row_type is None:
            return row
        return self.row_type(*(c(v) if c else v for c, v in zip(self.converters, row, strict=True)))


def compile_for(
    dialect: Dialect, statement: ClauseElement, column_keys: Sequence[str] | None = None
) -> DriverStatement:
    compiled = cast(
        SQLCompiler,
        statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None),
    )
    positional = tuple(compiled.positiontup or ()) if dialect.positional else None
    columns = list(getattr(statement, "selected_columns", None) or [])
    if not columns:
        return DriverStatement(compiled.string, positional, dict(compiled.params))
    return DriverStatement(
        compiled.string,
        positional,
        dict(compiled.params),
        namedtuple("Row", [column.key for column in columns]),
        tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns),
    )


@functools.lru_cache(maxsize=32)
def driver_errors(dialect: Dialect) -> tuple[type[Exception], ...]:
    """The driver's integrity and operational errors (a lost race, a busy lock)."""
    dbapi = dialect.loaded_dbapi
    return (dbapi.IntegrityError, dbapi.OperationalError)


@contextmanager
def driver_transaction(engine: Engine) -> Iterator[Any]:
    """A cursor on a DBAPI connection: committed when the block ends, rolled back if it raises.

    On a SQLite file the connection is this thread's own (`_ThreadConnections`), else a pooled one."""
    held = _THREAD_CONNECTIONS.for_engine(engine)
    if held is not None:
        yield from _transaction(held)
        return
    connection = engine.raw_connection()
    try:
        yield from _transaction(connection)
    finally:
        connection.close()  # back to the pool


def _transaction(connection: Any) -> Iterator[Any]:
    cursor = connection.cursor()
    try:
        yield cursor
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


def is_sqlite_file(engine: Engine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


class _ThreadConnections:
    """One DBAPI connection per (SQLite file engine, thread), held outside the engine's pool.

    Every request checks its API key and appends to the audit log on the driver; on a SQLite file
    the pool's checkout and return (connection wrapper, reset by rollback, queue) cost about as much
    as the statements after a search has left the CPU caches cold. A held connection never waits for
    the pool either, so an event loop may read on it. A database server keeps the pool: its
    connections can die while idle, and the pool's ping finds them. The connections are taken from
    the pool once (its connect hooks ran: the pragmas) and detached; `dispose()` of the engine
    closes them all. A thread id reused after a thread ended reuses that connection, which is idle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[int, Any]] = weakref.WeakKeyDictionary()
        self._inherited: list[Any] = []
        os.register_at_fork(after_in_child=self._forget_inherited)

    def _forget_inherited(self) -> None:
        """A forked child opens its own: SQLite connections must not cross a fork. The parent's are
        kept referenced, unused, since closing them here could disturb the parent's file locks."""
        self._inherited.append(self._by_engine)
        self._lock = threading.Lock()
        self._by_engine = weakref.WeakKeyDictionary()

    def for_engine(self, engine: Engine) -> Any | None:
        held = self._by_engine.get(engine)
        if held is None:
            if not is_sqlite_file(engine):
                return None
            held = self._register(engine)
        connection = held.get(threading.get_ident())
        if connection is None:
            connection = held[threading.get_ident()] = detached_connection(engine)
        return connection

    def _register(self, engine: Engine) -> dict[int, Any]:
        with self._lock:
            held = self._by_engine.get(engine)
            if held is None:
                held = self._by_engine[engine] = {}
                event.listen(engine, "engine_disposed", self._close_all)
            return held

    def _close_all(self, engine: Engine) -> None:
        held = self._by_engine.get(engine, {})
        for connection in list(held.values()):
            connection.close()
        held.clear()


def detached_connection(engine: Engine) -> Any:
    """A DBAPI connection of `engine`'s, opened by its pool (so its connect hooks ran) and then taken
    out of it: the caller holds it and closes it."""
    pooled = engine.raw_connection()
    pooled.detach()
    return pooled.dbapi_connection


_THREAD_CONNECTIONS = _ThreadConnections()
