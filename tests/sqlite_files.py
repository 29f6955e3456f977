"""What a SQLite database file holds on its own, without its write-ahead log."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from pathlib import Path


def audit_records_in_file_alone(db_file: Path, scratch: Path, action: str | None = None) -> int:
    """Audit records (of `action`, if given) in a copy of `db_file` opened without its log; 0 for a
    copy taken in the middle of a checkpoint (the caller asks again)."""
    copy = scratch / f"alone-{time.monotonic_ns()}.sqlite3"
    shutil.copyfile(db_file, copy)
    query = "SELECT count(*) FROM audit_log" + (" WHERE action = ?" if action else "")
    try:
        with contextlib.closing(sqlite3.connect(copy)) as connection:
            return int(connection.execute(query, (action,) if action else ()).fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
    finally:
        copy.unlink()
