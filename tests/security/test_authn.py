"""Authentication: API keys (salted hashes, revocation, disabled users) and OIDC bearer tokens.

The OIDC tests sign tokens with keys generated here (PyJWT + cryptography) and serve the public
half as a JWKS file: valid, expired, wrong audience, wrong issuer, wrong signature, `alg: none`,
HMAC signed with the public key, unknown key id, missing claims.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from security_helpers import MATCH_ALL, SecureCorpus
from sqlalchemy.orm import Session, sessionmaker

from kms.api.app import create_app
from kms.config import Settings, load_classification
from kms.db.security_models import ApiKeyRow, UserRow
from kms.db.session import make_engine, make_session_factory
from kms.domain import Principal
from kms.errors import ConfigError
from kms.security import users
from kms.security.authn import Authenticator

ISSUER, AUDIENCE = "https://idp.mofa.test/realms/kms", "kms-api"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Settings, sessionmaker[Session]]]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    yield settings, make_session_factory(engine)
    engine.dispose()


def authenticator(settings: Settings, sessions: sessionmaker[Session]) -> Authenticator:
    levels = load_classification(settings.index_config_dir)
    return Authenticator(
        sessions=sessions, settings=settings, classification=levels, operator_token="op-token"
    )


def add_user(sessions: sessionmaker[Session], user_id: str = "alice", **kwargs: Any) -> str:
    levels = load_classification(Settings().index_config_dir)
    with sessions() as session:
        users.create_user(
            session,
            user_id=user_id,
            clearance=kwargs.get("clearance", "secret"),
            unit=kwargs.get("unit", "hq/consular"),
            groups=kwargs.get("groups", ["leadership"]),
            roles=kwargs.get("roles", ["reader"]),
            classification=levels,
        )
        _info, key = users.create_key(session, user_id=user_id)
        session.commit()
    return key


# ---- API keys --------------------------------------------------------------------------------
def test_only_a_salted_hash_of_a_key_is_stored(registry: tuple[Settings, sessionmaker[Session]]) -> None:
    settings, sessions = registry
    key = add_user(sessions)
    secret = key.split("_", 2)[2]
    with sessions() as session:
        row = session.query(ApiKeyRow).one()
        assert key.startswith(f"kms_{row.key_id}_") and secret not in (row.digest, row.salt)
        assert len(row.salt) == 32 and len(row.digest) == 64
    database = (settings.data_dir / "kms.sqlite3").read_bytes()
    for wal in settings.data_dir.glob("kms.sqlite3-*"):
        database += wal.read_bytes()
    assert secret.encode() not in database


def test_keys_authenticate_until_revoked_or_disabled(
    registry: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = registry
    key = add_user(sessions)
    auth = authenticator(settings, sessions)
    principal = auth.authenticate(key).principal
    assert principal == Principal("alice", "secret", "hq/consular", ("leadership",), ("reader",))
    assert auth.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")).failure == "unknown key"
    assert auth.authenticate("kms_" + "0" * 16 + "_" + key.split("_", 2)[2]).failure == "unknown key"
    assert auth.authenticate("kms_garbage").failure == "malformed key"
    assert auth.authenticate("op-token").principal == Principal.operator(
        auth.authenticate("op-token").principal.user_id
    )  # type: ignore[union-attr]
    with sessions() as session:
        user = session.get(UserRow, "alice")
        assert user is not None
        user.disabled = True
        session.commit()
    assert auth.authenticate(key).failure == "disabled user"
    with sessions() as session:
        user = session.get(UserRow, "alice")
        assert user is not None
        user.disabled = False
        key_id = users.key_id_of(key)
        assert key_id is not None
        users.revoke_key(session, key_id=key_id)
        session.commit()
    assert auth.authenticate(key).failure == "revoked key"


@pytest.fixture
def any_registry(database_url: str, tmp_path: Path) -> Iterator[tuple[Settings, sessionmaker[Session]]]:
    """A registry on a SQLite file or on the test PostgreSQL server."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    yield settings, make_session_factory(engine)
    engine.dispose()


def test_the_event_loop_check_answers_like_the_threaded_one(
    any_registry: tuple[Settings, sessionmaker[Session]],
) -> None:
    """`authenticate_now` (the gate, on the event loop) answers API keys only from a SQLite file,
    and then exactly as `authenticate`: a change made by another connection shows at once."""
    settings, sessions = any_registry
    key = add_user(sessions)
    auth = authenticator(settings, sessions)
    on_sqlite = settings.sqlalchemy_url.startswith("sqlite")

    def both(token: str) -> tuple[object, object]:
        threaded, now = auth.authenticate(token), auth.authenticate_now(token)
        assert now == (threaded if on_sqlite else None), token
        return threaded.principal, threaded.failure

    assert both(key)[0] == Principal("alice", "secret", "hq/consular", ("leadership",), ("reader",))
    assert both("kms_" + "0" * 16 + "_" + key.split("_", 2)[2]) == (None, "unknown key")
    assert both("kms_garbage") == (None, "malformed key")
    assert auth.authenticate_now("op-token") == auth.authenticate("op-token")
    assert auth.authenticate_now("not-a-key") == auth.authenticate("not-a-key")
    with sessions() as session:
        user = session.get(UserRow, "alice")
        assert user is not None
        user.disabled = True
        session.commit()
    assert both(key) == (None, "disabled user")
    with sessions() as session:
        user = session.get(UserRow, "alice")
        assert user is not None
        user.disabled = False
        users.revoke_key(session, key_id=str(users.key_id_of(key)))
        session.commit()
    assert both(key) == (None, "revoked key")


def test_an_unknown_key_id_costs_the_same_hashing(
    registry: tuple[Settings, sessionmaker[Session]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, sessions = registry
    key = add_user(sessions)
    calls: list[str] = []
    real = users._digest
    monkeypatch.setattr(
        users, "_digest", lambda salt, key_id, secret: calls.append(key_id) or real(salt, key_id, secret)
    )
    auth = authenticator(settings, sessions)
    for token in (key, "kms_" + "f" * 16 + "_" + "x" * 43, "kms_nonsense"):
        auth.authenticate(token)
    assert len(calls) == 3  # one HMAC per attempt, known or not


def test_users_validate_their_fields(registry: tuple[Settings, sessionmaker[Session]]) -> None:
    _settings, sessions = registry
    levels = load_classification(Settings().index_config_dir)
    bad: list[dict[str, Any]] = [
        {"user_id": "a b"},
        {"user_id": "x:y"},
        {"clearance": "ultra"},
        {"unit": "hq//x"},
        {"groups": ["a b"]},
        {"roles": ["root"]},
    ]
    for fields in bad:
        args: dict[str, Any] = {"user_id": "u", "clearance": "public", "unit": "hq", **fields}
        with sessions() as session, pytest.raises(Exception, match=r"invalid|unknown"):
            users.create_user(session, classification=levels, **args)
    with sessions() as session:
        info = users.create_user(session, user_id="u", clearance="Mật", unit="hq", classification=levels)
        assert info.clearance == "confidential" and info.roles == ["reader"]
        session.commit()
    with sessions() as session, pytest.raises(Exception, match="already exists"):
        users.create_user(session, user_id="u", clearance="public", unit="hq", classification=levels)


# ---- OIDC ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Idp:
    rsa: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    jwks: Path
    settings: Settings

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: Any = None,
        alg: str = "RS256",
        kid: str = "rsa-1",
        **drop: bool,
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "f1c2-0001",
            "iat": now,
            "exp": now + 300,
            "preferred_username": "tran.thi.binh",
            "kms_clearance": "Mật",
            "kms_unit": "mission/jp-tokyo",
            "groups": ["consular-network", "a b"],
            "kms_roles": ["reader", "admin"],
            **(claims or {}),
        }
        for name, remove in drop.items():
            if remove:
                body.pop(name)
        return jwt.encode(body, key if key is not None else self.rsa, algorithm=alg, headers={"kid": kid})


def jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(public))
    return {**data, "kid": kid, "use": "sig", "alg": alg}


@pytest.fixture
def idp(tmp_path: Path) -> Idp:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    keys = [jwk(rsa_key.public_key(), "rsa-1", "RS256"), jwk(ec_key.public_key(), "ec-1", "ES256")]
    jwks.write_text(json.dumps({"keys": keys}), encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path / "data",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks=str(jwks),
        oidc_leeway_s=5,
    )
    settings.ensure_data_dir()
    return Idp(rsa_key, other, ec_key, jwks, settings)


@pytest.fixture
def oidc_auth(idp: Idp) -> Iterator[Authenticator]:
    engine = make_engine(idp.settings.sqlalchemy_url)
    yield authenticator(idp.settings, make_session_factory(engine))
    engine.dispose()


def test_a_valid_token_maps_its_claims(idp: Idp, oidc_auth: Authenticator) -> None:
    result = oidc_auth.authenticate(idp.token())
    # Labels map to level ids, invalid groups are dropped, and a token cannot grant `admin`.
    assert result.principal == Principal(
        "tran.thi.binh", "confidential", "mission/jp-tokyo", ("consular-network",), ("reader",)
    )
    es = oidc_auth.authenticate(idp.token(key=idp.ec, alg="ES256", kid="ec-1"))
    assert es.principal is not None and es.principal.user_id == "tran.thi.binh"
    no_roles = oidc_auth.authenticate(idp.token({"kms_roles": None}, kms_roles=True))
    assert no_roles.principal is not None and no_roles.principal.roles == ("reader",)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "x",
        "exp": now + 300,
        "kms_clearance": "top_secret",
        "kms_unit": "hq",
    }


def hs256_with_public_key(idp: Idp) -> str:
    """The classic key-confusion forgery: HMAC keyed with the IdP's public key."""
    pem = idp.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(forged_claims()).encode())}"
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


def alg_none(_idp: Idp) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(forged_claims()).encode())}."


REFUSED = [
    ("expired", lambda i: i.token({"exp": int(time.time()) - 60}), "expired token"),
    ("wrong audience", lambda i: i.token({"aud": "another-app"}), "wrong audience"),
    ("wrong issuer", lambda i: i.token({"iss": "https://evil.test"}), "wrong issuer"),
    ("wrong signature", lambda i: i.token(key=i.other), "bad signature"),
    ("alg none", alg_none, "algorithm 'none' is not allowed"),
    ("HS256 with the public key", hs256_with_public_key, "algorithm 'HS256' is not allowed"),
    ("RS384 not allowed", lambda i: i.token(alg="RS384"), "algorithm 'RS384' is not allowed"),
    ("unknown kid", lambda i: i.token(kid="rsa-9"), "no key in the JWKS matches"),
    (
        "EC token with an RSA kid",
        lambda i: i.token(key=i.ec, alg="ES256", kid="rsa-1"),
        "no key in the JWKS matches",
    ),
    ("no exp", lambda i: i.token(exp=True), "invalid token"),
    ("no sub", lambda i: i.token(sub=True), "invalid token"),
    ("no clearance", lambda i: i.token(kms_clearance=True), "no clearance claim"),
    ("unknown clearance", lambda i: i.token({"kms_clearance": "cosmic"}), "unknown clearance"),
    ("bad unit", lambda i: i.token({"kms_unit": "../hq"}), "no valid unit"),
    ("bad user id", lambda i: i.token({"preferred_username": "a b"}), "no usable user id"),
    ("not a jwt", lambda i: "a.b.c", "malformed token"),
]


@pytest.mark.parametrize(("case", "make", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_tokens_are_refused(
    idp: Idp, oidc_auth: Authenticator, case: str, make: Any, reason: str
) -> None:
    result = oidc_auth.authenticate(make(idp))
    assert result.principal is None and result.failure is not None and reason in result.failure, (
        case,
        result,
    )


def test_a_disabled_local_user_switches_an_oidc_user_off(idp: Idp, oidc_auth: Authenticator) -> None:
    with oidc_auth.sessions() as session:
        session.add(
            UserRow(
                user_id="tran.thi.binh", clearance="public", unit="hq", groups=[], roles=[], disabled=True
            )
        )
        session.commit()
    assert oidc_auth.authenticate(idp.token()).failure == "oidc: disabled user"


def test_the_jwks_file_is_reread_when_keys_rotate(idp: Idp, oidc_auth: Authenticator) -> None:
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert oidc_auth.authenticate(idp.token(key=new, kid="rsa-2")).principal is None
    idp.jwks.write_text(json.dumps({"keys": [jwk(new.public_key(), "rsa-2", "RS256")]}), encoding="utf-8")
    os.utime(idp.jwks, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert oidc_auth.authenticate(idp.token(key=new, kid="rsa-2")).principal is not None
    assert oidc_auth.authenticate(idp.token()).principal is None  # the old key is gone


def test_an_oidc_token_searches_with_its_mapped_permissions(idp: Idp, secure_corpus: SecureCorpus) -> None:
    services = dataclasses.replace(
        secure_corpus.services,
        settings=idp.settings.model_copy(update={"data_dir": secure_corpus.services.settings.data_dir}),
    )
    with TestClient(create_app(services)) as client:
        headers = {"authorization": f"Bearer {idp.token()}"}
        body = client.post(
            "/api/v1/search", json={"query": MATCH_ALL, "k": 100, "mode": "sparse"}, headers=headers
        ).json()
        principal = Principal(
            "tran.thi.binh", "confidential", "mission/jp-tokyo", ("consular-network",), ("reader",)
        )
        expected = secure_corpus.readable(principal)
        assert body["total"] == len(expected) and {h["doc_id"] for h in body["results"]} <= expected
        bad = {"authorization": f"Bearer {alg_none(idp)}"}
        assert client.post("/api/v1/search", json={"query": "x"}, headers=bad).status_code == 401


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KMS_OIDC_ISSUER": ISSUER}, "KMS_OIDC_AUDIENCE"),
        ({"KMS_OIDC_ISSUER": ISSUER, "KMS_OIDC_AUDIENCE": AUDIENCE}, "KMS_OIDC_JWKS"),
        (
            {"KMS_OIDC_ISSUER": ISSUER, "KMS_OIDC_AUDIENCE": AUDIENCE, "KMS_OIDC_JWKS": "http://idp/jwks"},
            "KMS_OIDC_JWKS",
        ),
        (
            {
                "KMS_OIDC_ISSUER": ISSUER,
                "KMS_OIDC_AUDIENCE": AUDIENCE,
                "KMS_OIDC_JWKS": "/x",
                "KMS_OIDC_ALGORITHMS": '["HS256"]',
            },
            "KMS_OIDC_ALGORITHMS",
        ),
        (
            {
                "KMS_OIDC_ISSUER": ISSUER,
                "KMS_OIDC_AUDIENCE": AUDIENCE,
                "KMS_OIDC_JWKS": "/x",
                "KMS_OIDC_ALGORITHMS": '["none"]',
            },
            "KMS_OIDC_ALGORITHMS",
        ),
    ],
)
def test_unsafe_oidc_settings_stop_start_up_naming_the_variable(
    env: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=variable):
        Settings()


def test_the_cli_stops_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KMS_DATA_DIR": str(tmp_path),
        "KMS_OIDC_ISSUER": ISSUER,
        "HAYSTACK_TELEMETRY_ENABLED": "False",
    }
    env.pop("KMS_OIDC_AUDIENCE", None)
    result = subprocess.run(
        [sys.executable, "-m", "kms.cli.main", "users", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "KMS_OIDC_AUDIENCE" in result.stderr and "Traceback" not in result.stderr
