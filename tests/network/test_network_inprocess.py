"""HQ's listener and a mission in one process: exact vectors, idempotence, model checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from network_helpers import free_port, write_docs
from qdrant_client import models

from ingest.runner import ingest_paths
from kms.config import Settings
from kms.index.base import doc_condition
from kms.network import pki
from kms.network.client import HqClient, SyncFailed, sync_once
from kms.network.node import NodeContext
from kms.network.runtime import NetworkRuntime
from kms.services import Services

TOKYO = "mission/jp-tokyo"


@dataclass
class Pair:
    hq: Services
    mission: Services
    runtime: NetworkRuntime
    node: NodeContext


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("pair")
    hq_net = pki.NodePaths(root / "hq" / "network")
    pki.init_ca(hq_net)
    pki.issue_node_cert(hq_net, "hq", hq_net.node_dir)
    pki.issue_node_cert(hq_net, TOKYO, root / "tokyo" / "network" / "node")
    port = free_port()
    hq = Services.open(Settings(data_dir=root / "hq", replication_port=port))  # type: ignore[call-arg]
    runtime = NetworkRuntime(hq)
    runtime.start()
    mission = Services.open(
        Settings(  # type: ignore[call-arg]
            data_dir=root / "tokyo", node_role="mission", node_id=TOKYO, hq_url=f"https://127.0.0.1:{port}"
        )
    )
    docs = {
        "p-1": (
            "internal",
            ["all-staff"],
            "Nghị quyết về hợp tác kinh tế số với Nhật Bản.\n\nĐiều 1. Thương mại.",
        ),
        "p-2": ("confidential", ["unit:mission/jp-tokyo"], "Điện mật về đàm phán đầu tư, cảng biển Kyushu."),
    }
    assert all(r.status == "added" for r in ingest_paths(hq, [write_docs(root / "docs", docs)]))
    try:
        yield Pair(hq, mission, runtime, NodeContext(mission))
    finally:
        runtime.stop()
        mission.close()
        hq.close()


def _points(services: Services, doc_id: str) -> dict[str, tuple[object, dict[str, object]]]:
    records = services.store.scroll(models.Filter(must=[doc_condition(doc_id)]), with_vectors=True)
    return {str(r.id): (r.vector, r.payload or {}) for r in records}


def test_chunks_arrive_with_the_exact_vectors_ids_and_payloads(pair: Pair) -> None:
    report = sync_once(pair.node)
    assert report.error is None and report.pulled == 2, report
    for doc_id in ("p-1", "p-2"):
        at_hq, at_mission = _points(pair.hq, doc_id), _points(pair.mission, doc_id)
        assert at_hq and set(at_hq) == set(at_mission)  # deterministic point ids
        for point_id, (vector, payload) in at_hq.items():
            assert at_mission[point_id][0] == vector  # float32 for float32: nothing re-embedded
            assert at_mission[point_id][1] == payload  # same payload, rebuilt from the signed change
    with pair.mission.sessions() as session:
        from kms.db.models import DocumentRow

        row = session.get(DocumentRow, "p-1")
        assert row is not None and row.origin_node == "hq" and row.source_path is None
        assert pair.mission.originals.exists(str(row.original_sha256))


def test_syncing_again_changes_nothing(pair: Pair) -> None:
    before = {d: _points(pair.mission, d) for d in ("p-1", "p-2")}
    report = sync_once(pair.node)
    assert report.error is None and report.pulled == 0 and report.deleted == 0
    assert {d: _points(pair.mission, d) for d in ("p-1", "p-2")} == before


def test_a_mission_with_another_embedding_model_is_refused_with_a_clear_message(pair: Pair) -> None:
    client = HqClient(pair.node)
    try:
        with pytest.raises(SyncFailed, match="KMS_EMBEDDER"):
            client.post(
                "/replication/v1/feed", {"log": "", "epoch": 0, "seq": 0, "model": "other-model", "dim": 768}
            )
    finally:
        client.close()


def test_the_feed_never_names_documents_the_node_may_not_hold(pair: Pair, tmp_path: Path) -> None:
    docs = {"p-secret": ("secret", ["all-staff"], "Tuyệt mật: kế hoạch đàm phán.")}
    assert ingest_paths(pair.hq, [write_docs(tmp_path / "s", docs)])[0].status == "added"
    client = HqClient(pair.node)
    try:
        model, dim = pair.node.model()
        page = client.post(
            "/replication/v1/feed", {"log": "", "epoch": 0, "seq": 0, "model": model, "dim": dim}
        )
    finally:
        client.close()
    assert "p-secret" not in json.dumps(page)
    assert {json.loads(c["envelope"])["doc_id"] for c in page["changes"]} == {"p-1", "p-2"}
