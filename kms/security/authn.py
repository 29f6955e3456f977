"""Authentication: turn a bearer credential into a `Principal`, or a reason for refusing it.

Three kinds of bearer credential:
- the local operator token (written 0600 into the data dir by `kms serve`), with which the CLI on the
  server machine acts as the operator over loopback;
- API keys (`kms_<key_id>_<secret>`, see `kms.security.users`);
- OIDC/JWT tokens, when `KMS_OIDC_ISSUER` is set (see `kms.security.oidc`).
Missing, unknown, revoked and expired credentials all get the same answer from the API (401); the
reason only goes to the audit log.
"""

from __future__ import annotations

import getpass
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from kms.config import Classification, Settings
from kms.db.driver import is_sqlite_file
from kms.db.security_models import UserRow
from kms.db.session import engine_of
from kms.domain import Principal
from kms.security import users
from kms.security.oidc import OidcError, OidcVerifier


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


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    failure: str | None = None  # for the audit log only
    key_id: str | None = None


class Authenticator:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        settings: Settings,
        classification: Classification,
        operator_token: str | None,
    ) -> None:
        self.sessions = sessions
        self.engine = engine_of(sessions)
        self._keys_now = self.engine if is_sqlite_file(self.engine) else None  # see `authenticate_now`
        self.operator_token = operator_token
        self.oidc = OidcVerifier.from_settings(settings, classification)

    def authenticate(self, token: str | None) -> AuthResult:
        result = self._answer(token, self.engine)
        return result if result is not None else self._oidc(str(token))

    def authenticate_now(self, token: str) -> AuthResult | None:
        """The answer when getting it cannot wait on anything, else None: then call `authenticate`
        from a worker thread. An event loop calls this to spare most requests that hand-off.

        The operator token is a comparison. An API key kept in a SQLite file is one indexed read
        (~0.1 ms), which in WAL mode never waits for a writer, on a connection of this thread's own
        (`kms.db.driver`): less than handing it to a thread and back (~0.2-0.35 ms measured here).
        OIDC tokens (signature checks, perhaps a JWKS download) and keys in a database server are
        never checked here.
        """
        return self._answer(token, self._keys_now)

    def _answer(self, token: str | None, keys: Engine | None) -> AuthResult | None:
        """Everything but an OIDC check, which is left to the caller (None), as is an API key when
        there is no `keys` database to read it from."""
        if not token:
            return AuthResult(None, "no credential")
        if self.operator_token and hmac.compare_digest(token.encode(), self.operator_token.encode()):
            return AuthResult(Principal.operator(operator_name()))
        if users.looks_like_api_key(token):
            return self._check_key(keys, token) if keys is not None else None
        if self.oidc is not None and token.count(".") == 2:
            return None
        return AuthResult(None, "unrecognised credential")

    @staticmethod
    def _check_key(engine: Engine, token: str) -> AuthResult:
        check = users.check_api_key(engine, token)
        return AuthResult(check.principal, check.failure, check.key_id)

    def _oidc(self, token: str) -> AuthResult:
        assert self.oidc is not None
        try:
            principal = self.oidc.verify(token)
        except OidcError as exc:
            return AuthResult(None, f"oidc: {exc}")
        with self.sessions() as session:  # a local row can switch an OIDC user off
            row = session.get(UserRow, principal.user_id)
            if row is not None and row.disabled:
                return AuthResult(None, "oidc: disabled user")
        return AuthResult(principal)
