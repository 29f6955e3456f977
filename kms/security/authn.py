"""Authentication: turn a bearer credential into a `Principal`, or None.

The local operator token (written 0600 into the data dir by `kms serve`) lets the CLI on the
server machine act as the operator over loopback.
"""

from __future__ import annotations

import getpass
import hmac
import secrets
from pathlib import Path

from kms.domain import Principal
from kms.services import Services


def operator_name() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:operator"


def write_operator_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(token, encoding="utf-8")
    return token


def principal_from_bearer(
    services: Services, token: str | None, operator_token: str | None
) -> Principal | None:
    """Missing, unknown, revoked and expired credentials all give None (the caller answers 401)."""
    if not token:
        return None
    if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
        return Principal.operator(operator_name())
    return None
