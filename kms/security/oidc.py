"""OIDC / JWT bearer tokens: verify against a JWKS (file or https URL), then map claims to a principal.

Only the asymmetric algorithms in `KMS_OIDC_ALGORITHMS` are accepted (never `none`, never HMAC);
issuer, audience, expiry and subject are required. `index_config/oidc.yaml` maps claims to the
principal's user id, clearance, unit, groups and roles.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml

from kms.config import OIDC_ALGORITHMS, Classification, Settings
from kms.domain import ROLES, Principal
from kms.errors import ConfigError
from kms.security.access import is_valid_unit
from kms.security.users import GROUP, USER_ID

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class OidcError(Exception):
    """A token that must be refused; the message is for the audit log, never for the caller."""


@dataclass(frozen=True)
class ClaimMapping:
    user_id: str = "preferred_username"
    clearance: str = "kms_clearance"
    unit: str = "kms_unit"
    groups: str = "groups"
    roles: str = "kms_roles"
    default_roles: tuple[str, ...] = ("reader",)
    grantable_roles: tuple[str, ...] = ("reader", "ingestor", "auditor")
    clearance_map: dict[str, str] = field(default_factory=dict)
    unit_map: dict[str, str] = field(default_factory=dict)
    group_map: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ClaimMapping:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the OIDC claim mapping {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping")
        claims = data.get("claims") or {}
        roles = [str(r) for r in data.get("grantable_roles", cls.grantable_roles)]
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ConfigError(f"{path}: unknown roles {unknown} in grantable_roles")
        defaults = cls()
        return cls(
            user_id=str(claims.get("user_id", defaults.user_id)),
            clearance=str(claims.get("clearance", defaults.clearance)),
            unit=str(claims.get("unit", defaults.unit)),
            groups=str(claims.get("groups", defaults.groups)),
            roles=str(claims.get("roles", defaults.roles)),
            default_roles=tuple(str(r) for r in data.get("default_roles", defaults.default_roles)),
            grantable_roles=tuple(roles),
            clearance_map={str(k): str(v) for k, v in (data.get("clearance_map") or {}).items()},
            unit_map={str(k): str(v) for k, v in (data.get("unit_map") or {}).items()},
            group_map={str(k): str(v) for k, v in (data.get("group_map") or {}).items()},
        )

    def principal(self, claims: dict[str, Any], classification: Classification) -> Principal:
        user_id = _claim(claims, self.user_id) or claims.get("sub")
        if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
            raise OidcError("token has no usable user id")
        raw_clearance = _claim(claims, self.clearance)
        if not isinstance(raw_clearance, str):
            raise OidcError("token has no clearance claim")
        try:
            clearance = classification.parse(self.clearance_map.get(raw_clearance, raw_clearance))
        except ConfigError as exc:
            raise OidcError("token has an unknown clearance") from exc
        raw_unit = _claim(claims, self.unit)
        unit = self.unit_map.get(raw_unit, raw_unit) if isinstance(raw_unit, str) else None
        if not is_valid_unit(unit):
            raise OidcError("token has no valid unit claim")
        groups = [self.group_map.get(g, g) for g in _strings(_claim(claims, self.groups))]
        raw_roles = _claim(claims, self.roles)
        roles = _strings(raw_roles) if raw_roles is not None else list(self.default_roles)
        return Principal(
            user_id=user_id,
            clearance=clearance,
            unit=str(unit),
            groups=tuple(dict.fromkeys(g for g in groups if GROUP.fullmatch(g))),
            roles=tuple(dict.fromkeys(r for r in roles if r in self.grantable_roles)),
        )


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [unicodedata.normalize("NFC", v) if isinstance(v, str) else v for v in value]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class _JwksFile:
    """A JWKS file, re-read when it changes (key rotation without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[jwt.PyJWK] = []
        self.signing_keys()  # a missing or broken file stops start-up

    def signing_keys(self) -> list[jwt.PyJWK]:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    self._keys = list(jwt.PyJWKSet.from_dict(data).keys)
                    self._stamp = stamp
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                if self._stamp is None:
                    raise ConfigError(f"cannot load the JWKS in KMS_OIDC_JWKS={self.path}: {exc}") from exc
            return list(self._keys)


class _JwksUrl:
    def __init__(self, url: str) -> None:
        self.client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=300, timeout=10)

    def signing_keys(self) -> list[jwt.PyJWK]:
        try:
            return list(self.client.get_jwk_set().keys)
        except jwt.PyJWTError as exc:
            raise OidcError(f"cannot fetch the JWKS: {exc}") from exc


class OidcVerifier:
    def __init__(self, settings: Settings, classification: Classification) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.algorithms = [a for a in settings.oidc_algorithms if a in OIDC_ALGORITHMS]
        self.leeway = settings.oidc_leeway_s
        self.classification = classification
        self.mapping = ClaimMapping.load(settings.oidc_claims or settings.index_config_dir / "oidc.yaml")
        source = settings.oidc_jwks
        self.jwks: _JwksFile | _JwksUrl = (
            _JwksUrl(source) if source.startswith("https://") else _JwksFile(Path(source).expanduser())
        )

    @classmethod
    def from_settings(cls, settings: Settings, classification: Classification) -> OidcVerifier | None:
        return cls(settings, classification) if settings.oidc_issuer else None

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError("malformed token") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise OidcError(f"algorithm {str(algorithm)[:20]!r} is not allowed")
        kid = header.get("kid")
        key_type = _KEY_TYPES.get(algorithm[:2])
        candidates = [
            k
            for k in self.jwks.signing_keys()
            if k.key_type == key_type
            and k.public_key_use in (None, "sig")
            and (kid is None or k.key_id == kid)
        ]
        if not candidates:
            raise OidcError("no key in the JWKS matches the token")
        last: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.ExpiredSignatureError as exc:
                raise OidcError("expired token") from exc
            except jwt.InvalidAudienceError as exc:
                raise OidcError("wrong audience") from exc
            except jwt.InvalidIssuerError as exc:
                raise OidcError("wrong issuer") from exc
            except jwt.PyJWTError as exc:
                raise OidcError(f"invalid token: {type(exc).__name__}") from exc
            return self.mapping.principal(claims, self.classification)
        raise OidcError("bad signature") from last
