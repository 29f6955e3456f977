"""One network for the whole run: HQ and two missions as real `kms serve` processes on loopback.

Each node has its own data dir; certificates come from `kms network init-ca` / `issue-cert`; each
mission reaches HQ's replication port through its own `LinkProxy`. Missions sync when a test
asks (`KMS_SYNC_INTERVAL_S` is long), so every scenario controls its timing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from network_helpers import LinkProxy, Node, expected_at, free_port, network_config, own_documents

from kms.config import Settings
from kms.network import pki

TOKYO, PARIS, HQ = "mission/jp-tokyo", "mission/fr-paris", "hq"
NODES_YAML: dict[str, Any] = {
    "hq": HQ,
    "nodes": [
        {"id": TOKYO, "units": [TOKYO], "ceiling": "confidential", "groups": ["asean-desk"]},
        {"id": PARIS, "units": [PARIS], "ceiling": "internal"},
    ],
}


@dataclass
class Cluster:
    root: Path
    config_dir: Path
    hq: Node
    missions: dict[str, Node]
    links: dict[str, LinkProxy]
    keys: dict[str, str] = field(default_factory=dict)
    convergence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokyo(self) -> Node:
        return self.missions[TOKYO]

    @property
    def paris(self) -> Node:
        return self.missions[PARIS]

    def write_nodes(self, nodes: dict[str, Any]) -> None:
        path = self.config_dir / "nodes.yaml"
        path.write_text(yaml.safe_dump(nodes), encoding="utf-8")
        stamp = time.time() + 1  # a new mtime even within the file system's time resolution
        os.utime(path, (stamp, stamp))

    def check_converged(self, scenario: str, node_id: str) -> dict[str, Any]:
        """Documents expected vs present at `node_id` (HQ's copies of what it may hold, same versions),
        and no chunk duplicated or left over in its index. Recorded for the closing note."""
        node = self.missions[node_id]
        expected = expected_at(self.hq, network_config(self.config_dir), node_id, self.config_dir)
        present = {k: v for k, v in node.indexed().items() if v["origin"] != node_id}
        own = own_documents(node, node_id)
        stats = node.stats()
        row = {
            "scenario": scenario,
            "node": node_id,
            "expected": len(expected),
            "present": len(present),
            "missing": sorted(set(expected) - set(present)),
            "unexpected": sorted(set(present) - set(expected)),
            "stale": sorted(
                d for d in expected if d in present and present[d]["version"] != expected[d]["version"]
            ),
            "chunks_registry": sum(v["chunks"] for v in node.indexed().values()),
            "chunks_index": stats["chunks"],
            "own_documents": len(own),
        }
        self.convergence.append(row)
        assert not row["missing"] and not row["unexpected"] and not row["stale"], row
        for doc_id, doc in expected.items():
            assert present[doc_id]["classification"] == doc["classification"], doc_id
            assert present[doc_id]["allow"] == doc["allow"], doc_id
            assert present[doc_id]["chunks"] == doc["chunks"], doc_id
        assert row["chunks_index"] == row["chunks_registry"], row  # nothing duplicated, nothing left over
        return row

    def check_hq_has(self, scenario: str, node_id: str) -> dict[str, Any]:
        """Every document the mission authored is at HQ, same version (store-and-forward delivered)."""
        own = own_documents(self.missions[node_id], node_id)
        at_hq = {k: v for k, v in self.hq.indexed().items() if v["origin"] == node_id}
        row = {
            "scenario": scenario,
            "node": f"{HQ} <- {node_id}",
            "expected": len(own),
            "present": len(at_hq),
            "missing": sorted(set(own) - set(at_hq)),
            "unexpected": sorted(set(at_hq) - set(own)),
            "stale": sorted(d for d in own if d in at_hq and at_hq[d]["version"] != own[d]["version"]),
        }
        self.convergence.append(row)
        assert not row["missing"] and not row["unexpected"] and not row["stale"], row
        return row


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("network")
    config_dir = root / "config"
    shutil.copytree(Settings().index_config_dir, config_dir, ignore=shutil.ignore_patterns("__*"))
    (config_dir / "nodes.yaml").write_text(yaml.safe_dump(NODES_YAML), encoding="utf-8")
    base = {
        **os.environ,
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "KMS_CONFIG_DIR": str(config_dir),
        "KMS_SYNC_INTERVAL_S": "3600",
        "KMS_FEDERATION_TIMEOUT_S": "2.0",
        "KMS_FEDERATION_RETRY_S": "60",
    }
    for name in [
        k
        for k in base
        if k.startswith("KMS_")
        and k
        not in {"KMS_CONFIG_DIR", "KMS_SYNC_INTERVAL_S", "KMS_FEDERATION_TIMEOUT_S", "KMS_FEDERATION_RETRY_S"}
    ]:
        del base[name]  # a developer's own KMS_* settings must not leak into the nodes
    replication_port = free_port()
    hq_dir = root / "hq"
    hq_env = {**base, "KMS_DATA_DIR": str(hq_dir), "KMS_NODE_ROLE": "hq", "KMS_NODE_ID": HQ}
    hq_env["KMS_REPLICATION_PORT"] = str(replication_port)
    hq = Node(HQ, hq_dir, hq_env, free_port(), root / "hq.log")
    hq_net = pki.NodePaths(hq_dir / "network")  # `kms network init-ca` / `issue-cert`, in-process (faster)
    pki.init_ca(hq_net)
    pki.issue_node_cert(hq_net, HQ, hq_net.node_dir)
    missions: dict[str, Node] = {}
    links: dict[str, LinkProxy] = {}
    for node_id in (TOKYO, PARIS):
        slug = node_id.split("/")[1]
        data_dir = root / slug
        pki.issue_node_cert(hq_net, node_id, data_dir / "network" / "node")
        link = LinkProxy(replication_port).start()
        env = {
            **base,
            "KMS_DATA_DIR": str(data_dir),
            "KMS_NODE_ROLE": "mission",
            "KMS_NODE_ID": node_id,
            "KMS_HQ_URL": f"https://127.0.0.1:{link.port}",
        }
        missions[node_id] = Node(node_id, data_dir, env, free_port(), root / f"{slug}.log")
        links[node_id] = link
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: n.start(), [hq, *missions.values()]))
    cluster = Cluster(root, config_dir, hq, missions, links)
    try:
        cluster.keys["alice@hq"] = hq.add_user("alice", "secret", TOKYO, ["asean-desk"])
        hq.add_user("bob", "internal", PARIS)
        hq.add_user("carol", "top_secret", "hq/policy")
        cluster.keys["alice@tokyo"] = cluster.tokyo.add_user("alice", "secret", TOKYO, ["asean-desk"])
        cluster.keys["mallory@tokyo"] = cluster.tokyo.add_user("mallory", "top_secret", "hq/policy")
        yield cluster
    finally:
        report = os.environ.get("KMS_CONVERGENCE_REPORT")
        if report:
            Path(report).write_text(json.dumps(cluster.convergence, indent=1), encoding="utf-8")
        for node in [*missions.values(), hq]:
            node.stop()
        for link in links.values():
            link.close()
