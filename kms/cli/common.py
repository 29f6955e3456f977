"""Helpers shared by the CLI command groups: exit codes, error mapping, the registry database."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.orm import Session, sessionmaker

from kms.config import Classification, Settings, load_classification
from kms.db.session import make_engine, make_session_factory
from kms.errors import Conflict, InvalidInput, KmsError, NotFound

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 1, 2, 4
T = TypeVar("T")


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run_action(action: Callable[[], T]) -> T:
    """Run an action, mapping kms errors to exit codes (4 not found, 2 bad input, 1 otherwise)."""
    try:
        return action()
    except NotFound as exc:
        raise fail("not found", EXIT_NOT_FOUND) from exc
    except Conflict as exc:
        raise fail(str(exc), EXIT_FAILED) from exc
    except InvalidInput as exc:
        raise fail(str(exc), EXIT_USAGE) from exc
    except KmsError as exc:
        raise fail(str(exc), EXIT_FAILED) from exc


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


class Registry:
    """The registry database alone (no index, no model): users, keys and the audit log.

    Safe while `kms serve` runs: SQLite in WAL mode and PostgreSQL both take concurrent writers.
    """

    def __init__(self, settings: Settings) -> None:
        settings.ensure_data_dir()
        self.engine = make_engine(settings.sqlalchemy_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.classification: Classification = load_classification(settings.index_config_dir)

    def close(self) -> None:
        self.engine.dispose()


def open_registry() -> Registry:
    return run_action(lambda: Registry(Settings()))
