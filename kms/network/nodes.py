"""The knowledge network's nodes (`index_config/nodes.yaml`) and what each node may hold.

A node may hold a document iff
    rank(document.classification) <= rank(node.ceiling)
    AND some allow token could match someone at the node:
        all-staff; unit:U with U equal to, above or below one of the node's units;
        group:G with G among the node's groups; user:X with X among the node's users.
A missing or unknown classification, or an empty/malformed allow list, is held by no node (fail
closed), exactly as `kms.security.access.can_read` shows it to nobody. This is the replication
policy: a principal filter is never built here, only the access module's primitives are reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kms.config import Classification
from kms.domain import Principal
from kms.errors import ConfigError
from kms.security.access import ALL_STAFF, allow_tokens, document_rank, is_valid_unit

NODES_FILE = "nodes.yaml"


def check_node_id(node_id: str) -> str:
    """Node ids use the unit path syntax: `hq`, `mission/jp-tokyo`."""
    if not is_valid_unit(node_id):
        raise ConfigError(f"invalid node id {node_id!r}: use a path like hq or mission/jp-tokyo")
    return node_id


@dataclass(frozen=True)
class NodeSpec:
    """One mission (or other non-HQ node) as HQ's nodes.yaml describes it."""

    id: str
    ceiling: str
    units: tuple[str, ...]
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    enabled: bool = True
    cert_sha256: str | None = None  # pin: only this certificate may act as the node

    def config_hash(self) -> str:
        """Changes whenever what the node may hold changes (a new hash restarts its feed)."""
        body = {"ceiling": self.ceiling, "units": sorted(self.units), "groups": sorted(self.groups)}
        body["users"] = sorted(self.users)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class NetworkConfig:
    hq: str = "hq"
    nodes: Mapping[str, NodeSpec] = field(default_factory=dict)

    def node(self, node_id: str) -> NodeSpec | None:
        spec = self.nodes.get(node_id)
        return spec if spec is not None and spec.enabled else None


def parse_network(data: Mapping[str, Any], classification: Classification, source: str) -> NetworkConfig:
    hq = check_node_id(str(data.get("hq") or "hq"))
    nodes: dict[str, NodeSpec] = {}
    for item in data.get("nodes") or []:
        if not isinstance(item, dict) or "id" not in item:
            raise ConfigError(f"{source}: every node needs an id")
        node_id = check_node_id(str(item["id"]))
        if node_id == hq or node_id in nodes:
            raise ConfigError(f"{source}: node {node_id!r} is listed twice (or is HQ)")
        ceiling = str(item.get("ceiling") or "")
        if classification.rank(ceiling) is None:
            raise ConfigError(f"{source}: node {node_id!r} has unknown ceiling {ceiling!r}")
        units = tuple(str(u) for u in (item.get("units") or [node_id]))
        bad = [u for u in units if not is_valid_unit(u)]
        if bad:
            raise ConfigError(f"{source}: node {node_id!r} has invalid unit {bad[0]!r}")
        pin = item.get("cert_sha256")
        nodes[node_id] = NodeSpec(
            id=node_id,
            ceiling=ceiling,
            units=units,
            groups=tuple(str(g) for g in item.get("groups") or []),
            users=tuple(str(u) for u in item.get("users") or []),
            enabled=bool(item.get("enabled", True)),
            cert_sha256=str(pin).lower().replace(":", "") if pin else None,
        )
    return NetworkConfig(hq=hq, nodes=nodes)


_CACHE: dict[Path, tuple[float, NetworkConfig]] = {}
_CACHE_LOCK = threading.Lock()


def load_network(config_dir: Path, classification: Classification) -> NetworkConfig:
    """nodes.yaml from the config dir, re-read when it changes (HQ edits it without a restart)."""
    path = config_dir / NODES_FILE
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return NetworkConfig()
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    config = parse_network(data, classification, str(path))
    with _CACHE_LOCK:
        _CACHE[path] = (mtime, config)
    return config


# ---- the policy ------------------------------------------------------------------------------
def _unit_related(token_unit: str, node_unit: str) -> bool:
    """Equal, above (an ancestor of) or below (a sub-unit of) the node's unit."""
    return (
        token_unit == node_unit
        or node_unit.startswith(token_unit + "/")
        or token_unit.startswith(node_unit + "/")
    )


def could_match_at(node: NodeSpec, token: str) -> bool:
    if token == ALL_STAFF:
        return True
    kind, _, value = token.partition(":")
    if kind == "unit":
        return any(_unit_related(value, unit) for unit in node.units)
    if kind == "group":
        return value in node.groups
    if kind == "user":
        return value in node.users
    return False


def node_may_hold(node: NodeSpec, classification: Classification, level: object, allow: object) -> bool:
    """May `node` store (and show its users) a document with this classification and allow list?"""
    rank = document_rank(classification, level)
    ceiling = classification.rank(node.ceiling)
    if rank is None or ceiling is None or rank > ceiling:
        return False
    return any(could_match_at(node, token) for token in allow_tokens(allow))


def user_at_node(principal: Principal, node: NodeSpec) -> bool:
    """Is this (HQ-side) user someone who works at the node: listed, or in one of its units?"""
    if principal.user_id in node.users:
        return True
    unit = principal.unit
    return is_valid_unit(unit) and any(unit == u or unit.startswith(u + "/") for u in node.units)


def cap_to_node(principal: Principal, node: NodeSpec, classification: Classification) -> Principal:
    """The principal with clearance lowered to the node's ceiling: a node never sees above it."""
    clearance = classification.rank(principal.clearance)
    ceiling = classification.rank(node.ceiling)
    if clearance is None or ceiling is None:
        return dataclasses.replace(principal, clearance="", is_operator=False)
    if clearance > ceiling:
        return dataclasses.replace(principal, clearance=node.ceiling, is_operator=False)
    return dataclasses.replace(principal, is_operator=False)
