"""Checkpoints of a SQLite file's write-ahead log on a thread of their own, for `kms serve`.

SQLite copies its log back into the database file when a commit brings the log past
`wal_autocheckpoint` pages (1,000 by default), inside the committing call. In `kms serve` that call
is nearly always a request's: every search appends to the audit log (a few pages), so about one
search in two hundred also did the checkpoint, and its append took several times its usual time
(`benchmarks/audit_append.py`). `start_wal_checkpoints` moves that work to a thread that checkpoints
every second without waiting for readers or writers (PASSIVE; only its short last pass holds the
audit appends' lock, see `WalCheckpointer._checkpoint`), and raises the limit at which a commit
still checkpoints itself to `FALLBACK_PAGES`: should the thread stop or fall behind, the log stays
bounded as before, only larger. A log's frames are durable once committed, whether or not they
were checkpointed, so a crash between checkpoints loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine, event

from kms.db.driver import detached_connection, is_sqlite_file

__all__ = ["FALLBACK_PAGES", "WalCheckpointer", "start_wal_checkpoints"]

log = logging.getLogger(__name__)

# 4 KiB pages: a log of at most ~40 MB if the thread stops, against ~4 MB with SQLite's default.
FALLBACK_PAGES = 10_000
INTERVAL_S = 1.0


class WalCheckpointer:
    """A daemon thread checkpointing `engine`'s log every `interval_s` on a connection of its own;
    `writers`: a lock the process's frequent writers commit under (the audit log's appends)."""

    def __init__(
        self,
        engine: Engine,
        interval_s: float = INTERVAL_S,
        writers: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.writers = writers if writers is not None else contextlib.nullcontext()
        self.checkpoints = 0  # completed runs (whatever they found to copy)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kms-wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            connection = detached_connection(self.engine)  # held for the thread's life
        except Exception as exc:  # said once; commits checkpoint at the fallback from now on
            log.warning(
                "no WAL checkpoints on a thread (commits do them at %d pages): %s",
                FALLBACK_PAGES,
                exc,
            )
            return
        try:
            while not self._stop.wait(self.interval_s):
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: Any) -> None:
        """Copy the log into the file beside the writers, then what they added meanwhile while
        `writers` is held (a short pass): SQLite starts a log over only if it was copied to its
        end when the next commit comes, else it grows on, to the fallback."""
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self.writers:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # a locked or vanished file: commits still checkpoint at the fallback
            log.warning("WAL checkpoint failed: %s", exc)
        else:
            self.checkpoints += 1


def _fallback_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
    cursor.close()


def start_wal_checkpoints(
    engine: Engine,
    interval_s: float = INTERVAL_S,
    *,
    writers: contextlib.AbstractContextManager[Any] | None = None,
) -> WalCheckpointer | None:
    """Checkpoint `engine`'s log on a thread from now on; None for a database that is not a SQLite
    file (a server checkpoints on its own). Call it before the engine's connections are shared
    with other threads: it closes the ones open now, so that every connection opened from here on
    leaves checkpoints to the thread."""
    if not is_sqlite_file(engine):
        return None
    event.listen(engine, "connect", _fallback_autocheckpoint)
    engine.dispose()  # pooled and per-thread connections (kms.db.driver) reopen with the pragma
    return WalCheckpointer(engine, interval_s, writers).start()
