"""Structured logs: one JSON object per line on stderr (for `kms serve` and `kms worker`), or the
plain `LEVEL logger: message` form for interactive commands.

    {"ts": "2026-…Z", "level": "INFO", "logger": "ingest.worker", "msg": "job 7 succeeded",
     "job_id": 7, "state": "succeeded", "files": 3, "failed": 0, "chunks": 41, "seconds": 2.315}

Fields passed with `extra=` become keys. Log ids (doc_id, job_id), never document text or secrets.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(*, json_lines: bool, level: str = "INFO") -> None:
    """Replace the root handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("haystack").setLevel(max(root.level, logging.WARNING))  # one line per component run
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through the root handler, same format
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def wants_json(setting: str, *, service: bool) -> bool:
    """`KMS_LOG_FORMAT`: json, text, or auto (JSON for long-running services)."""
    if setting.lower() == "json":
        return True
    if setting.lower() == "text":
        return False
    return service
