"""HQ and two missions as real `kms serve` processes: the scenarios of issue #8, in order.

Tokyo may hold up to confidential (unit mission/jp-tokyo, group asean-desk); Paris up to internal.
Each scenario ends with `check_converged`: the documents a mission should hold (computed from HQ's
registry with the node policy) are exactly the ones it holds, at HQ's versions, and its index has
exactly the chunks its registry names (nothing lost, nothing duplicated).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HQ, NODES_YAML, PARIS, TOKYO, Cluster
from network_helpers import run_cli, wait_until, write_docs

from kms.network import pki

MARKER = "Zqxv7741"  # only in the secret document: must never be on a mission's disk
THEME = "Báo cáo về hợp tác kinh tế, đầu tư và xuất khẩu nông sản"


def text(doc_id: str, extra: str = "") -> str:
    return (
        f"{THEME} ({doc_id}). {extra}\n\nĐiều 1. Nội dung chính của {doc_id}: thương mại điện tử, logistics."
    )


INITIAL: dict[str, tuple[str, list[str], str]] = {
    "a-pub": ("public", ["all-staff"], text("a-pub", "Kyushu")),
    "a-int": ("internal", ["all-staff"], text("a-int")),
    "a-conf-tok": ("confidential", [f"unit:{TOKYO}"], text("a-conf-tok", "Kyushu")),
    "a-conf-all": ("confidential", ["all-staff"], text("a-conf-all")),
    "a-int-asean": ("internal", ["group:asean-desk"], text("a-int-asean")),
    "a-int-missions": ("internal", ["unit:mission"], text("a-int-missions")),
    "a-int-hqpolicy": ("internal", ["unit:hq/policy"], text("a-int-hqpolicy")),
    "a-secret": ("secret", ["all-staff"], text("a-secret", f"{MARKER} Kyushu")),
    "a-topsecret": ("top_secret", [f"unit:{TOKYO}"], text("a-topsecret", "Kyushu")),
    "a-user-alice": ("confidential", ["user:alice"], text("a-user-alice", "Kyushu")),
    "a-noallow": ("internal", [], text("a-noallow")),
}


def replication_client(cluster: Cluster, paths: pki.NodePaths) -> httpx.Client:
    port = cluster.hq.env["KMS_REPLICATION_PORT"]
    return httpx.Client(
        base_url=f"https://127.0.0.1:{port}", verify=pki.client_context(paths), trust_env=False, timeout=30
    )


def node_paths(data_dir: Path) -> pki.NodePaths:
    return pki.NodePaths(data_dir / "network")


SNI = {"sni_hostname": pki.dns_name(HQ)}


def _get(url: str, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, trust_env=False, timeout=10) as client:
        return client.get(url, extensions=SNI)


# ---- 1. identity comes from the verified certificate only ---------------------------------------
def test_listener_takes_identity_from_the_certificate_only(cluster: Cluster, tmp_path: Path) -> None:
    with replication_client(cluster, node_paths(cluster.tokyo.data_dir)) as client:
        claims = {
            "x-kms-node": HQ,
            "x-forwarded-client-cert": f"CN={PARIS}",
            "x-ssl-client-s-dn": f"CN={PARIS}",
        }
        answer = client.get("/replication/v1/whoami", headers=claims, extensions=SNI)
        assert answer.status_code == 200 and answer.json() == {"node": TOKYO, "server": HQ}

    # a certificate for the same node id from another CA: the handshake fails
    other = pki.NodePaths(tmp_path / "other")
    pki.init_ca(other)
    pki.issue_node_cert(other, TOKYO, other.node_dir)
    with pytest.raises(httpx.HTTPError):
        other_ctx = pki.client_context(other)
        other_ctx.load_verify_locations(cafile=node_paths(cluster.hq.data_dir).trust)  # it does trust HQ
        port = cluster.hq.env["KMS_REPLICATION_PORT"]
        _get(f"https://127.0.0.1:{port}/replication/v1/whoami", other_ctx)

    # no client certificate at all: the handshake fails
    bare = ssl.create_default_context(cafile=str(node_paths(cluster.hq.data_dir).trust))
    port = cluster.hq.env["KMS_REPLICATION_PORT"]
    with pytest.raises(httpx.HTTPError):
        _get(f"https://127.0.0.1:{port}/replication/v1/whoami", bare)

    # a genuine certificate of the network CA for a node nodes.yaml does not list: refused
    rogue = tmp_path / "rogue"
    run_cli(cluster.hq.env, "network", "issue-cert", "mission/xx-rogue", "--out", str(rogue / "node"))
    with replication_client(cluster, pki.NodePaths(rogue)) as client:
        assert client.get("/replication/v1/whoami", extensions=SNI).status_code == 403

    # a server holding another node's certificate cannot pass for HQ (the SNI name is HQ's)
    paris_ctx = pki.server_context(node_paths(cluster.paris.data_dir))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        fake_port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                paris_ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        tokyo_ctx = pki.client_context(node_paths(cluster.tokyo.data_dir))
        with pytest.raises(httpx.ConnectError, match="Hostname mismatch"):
            _get(f"https://127.0.0.1:{fake_port}/replication/v1/whoami", tokyo_ctx)


# ---- 2. initial sync --------------------------------------------------------------------------------
def test_initial_sync_sends_each_mission_exactly_what_it_may_hold(cluster: Cluster, tmp_path: Path) -> None:
    cluster.hq.ingest(write_docs(tmp_path / "initial", INITIAL))
    for mission in (TOKYO, PARIS):
        report = cluster.missions[mission].sync()
        assert report["error"] is None, report
    tokyo = cluster.check_converged("initial sync", TOKYO)
    paris = cluster.check_converged("initial sync", PARIS)
    assert set(cluster.tokyo.indexed()) == {
        "a-pub",
        "a-int",
        "a-conf-tok",
        "a-conf-all",
        "a-int-asean",
        "a-int-missions",
    }
    assert set(cluster.paris.indexed()) == {"a-pub", "a-int", "a-int-missions"}
    assert tokyo["expected"] == 6 and paris["expected"] == 3
    # Vectors travelled with the chunks: the mission embedded nothing, yet finds by meaning.
    assert cluster.tokyo.indexed()["a-conf-tok"]["chunks"] == cluster.hq.indexed()["a-conf-tok"]["chunks"]


def test_a_document_above_the_ceiling_never_reaches_a_mission(cluster: Cluster) -> None:
    assert cluster.hq.files_containing(MARKER.encode()), "the marker check must be able to see the text"
    for mission in cluster.missions.values():
        assert mission.files_containing(MARKER.encode()) == [], mission.name  # no file, no row, no chunk
        assert mission.files_containing(b"a-secret") == [], mission.name  # not even its id
        assert mission.files_containing(b"a-topsecret") == [], mission.name
        assert mission.api("GET", "/api/v1/documents/a-secret").status_code == 404
        found = mission.api("POST", "/api/v1/search", json={"query": MARKER, "mode": "sparse"}).json()
        assert found["results"] == [] and found["total"] == 0
        originals = {p.name for p in (mission.data_dir / "originals").rglob("*") if p.is_file()}
        assert cluster.hq.documents()["a-secret"]["original"] not in originals


# ---- 3. mission -> HQ -> other missions ------------------------------------------------------------
def test_mission_reports_reach_hq_and_then_the_missions_allowed_to_hold_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    reports = {
        "t-rep-int": ("internal", ["all-staff"], text("t-rep-int", "Hội nghị ASEAN tại Tokyo")),
        "t-rep-conf": ("confidential", [f"unit:{TOKYO}"], text("t-rep-conf", "Điện mật gửi Bộ")),
    }
    cluster.tokyo.ingest(write_docs(tmp_path / "reports", reports))
    assert not set(reports) & set(cluster.hq.indexed())
    report = cluster.tokyo.sync()
    assert report["error"] is None and report["pushed"] == 2, report
    cluster.check_hq_has("mission report push", TOKYO)
    assert cluster.hq.indexed()["t-rep-conf"]["origin"] == TOKYO
    assert cluster.paris.sync()["error"] is None
    assert "t-rep-int" in cluster.paris.indexed() and "t-rep-conf" not in cluster.paris.indexed()
    cluster.check_converged("mission report fan-out", PARIS)
    again = cluster.tokyo.sync()  # HQ never sends Tokyo its own reports back
    assert again["pulled"] == 0 and again["error"] is None, again
    cluster.check_converged("mission report fan-out", TOKYO)

    cluster.tokyo.delete("t-rep-int")  # the author withdraws it: HQ, then Paris, follow
    assert cluster.tokyo.sync()["pushed"] == 1
    assert "t-rep-int" not in cluster.hq.indexed()
    assert cluster.paris.sync()["deleted"] == 1
    assert "t-rep-int" not in cluster.paris.documents()
    cluster.check_converged("mission withdraws its report", PARIS)


# ---- 4. withdrawals and re-classifications ---------------------------------------------------------
def test_withdrawn_and_reclassified_documents_disappear_from_missions(cluster: Cluster) -> None:
    before = cluster.tokyo.documents()
    cluster.hq.delete("a-pub")
    cluster.hq.set_access("a-conf-all", "secret", ["all-staff"])  # above every mission's ceiling
    cluster.hq.set_access("a-int", "internal", ["unit:hq/policy"])  # nobody at a mission may read it
    cluster.hq.set_access("a-int-hqpolicy", "internal", [f"unit:{PARIS}"])  # now Paris's, not Tokyo's
    cluster.hq.set_access("a-conf-tok", "internal", [f"unit:{TOKYO}", "group:asean-desk"])  # stays, looser
    for mission in (TOKYO, PARIS):
        assert cluster.missions[mission].sync()["error"] is None
    tokyo = cluster.tokyo.documents()
    for gone in ("a-pub", "a-conf-all", "a-int"):
        assert gone not in tokyo  # the registry row is erased, not tombstoned
        originals = {p.name for p in (cluster.tokyo.data_dir / "originals").rglob("*") if p.is_file()}
        assert before[gone]["original"] not in originals
        assert cluster.tokyo.api("GET", f"/api/v1/documents/{gone}").status_code == 404
    assert tokyo["a-conf-tok"]["classification"] == "internal"  # an access change, applied in place
    assert tokyo["a-conf-tok"]["version"] == before["a-conf-tok"]["version"]
    assert "a-int-hqpolicy" in cluster.paris.indexed()
    assert not {"a-pub", "a-int"} & set(cluster.paris.documents())
    found = cluster.tokyo.api("POST", "/api/v1/search", json={"query": "a-conf-all", "mode": "sparse"}).json()
    assert "a-conf-all" not in {hit["doc_id"] for hit in found["results"]}
    cluster.check_converged("withdrawal and re-classification", TOKYO)
    cluster.check_converged("withdrawal and re-classification", PARIS)


# ---- 5. the link drops mid-transfer -------------------------------------------------------------------
def _applied_once(node: Any, prefix: str) -> None:
    """Every document of the batch was written exactly once at the mission (never duplicated)."""
    written = [
        t
        for t, d in node.audit_actions("replication.apply")
        if t and t.startswith(prefix) and d.get("status") in ("added", "replaced")
    ]
    assert len(written) == len(set(written)), sorted(written)


def _sync_in_background(node: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = node.sync()
        except Exception as exc:  # an HTTP error from a killed peer is an outcome too
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _batch(prefix: str, count: int) -> dict[str, tuple[str, list[str], str]]:
    """Short one-chunk documents (the model embeds ~10 passages/s on a shared 2-core machine)."""
    return {
        f"{prefix}{i:02d}": ("internal", ["all-staff"], f"{THEME} ({prefix}{i:02d}).") for i in range(count)
    }


def test_link_cut_mid_transfer_resumes_with_nothing_lost_or_duplicated(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.hq.ingest(write_docs(tmp_path / "cut", _batch("c-", 32)))
    link = cluster.links[TOKYO]
    link.restore(rate=25_000)  # a slow link: about 25 kB/s towards the mission
    thread, outcome = _sync_in_background(cluster.tokyo)
    assert wait_until(lambda: any(d.startswith("c-") for d in cluster.tokyo.indexed()), timeout=120)
    link.cut()  # drop the connection mid-transfer and refuse new ones
    thread.join(timeout=120)
    report = outcome.get("report") or {}
    assert report.get("error"), report
    partial = {d for d in cluster.tokyo.indexed() if d.startswith("c-")}
    assert 0 < len(partial) < 32, len(partial)
    cluster.convergence.append(
        {
            "scenario": "link cut mid-transfer (before resume)",
            "node": TOKYO,
            "expected": 32,
            "present": len(partial),
        }
    )
    status = cluster.tokyo.api("GET", "/api/v1/network/status").json()["peers"][0]
    assert status["last_error"] and status["feed"]["lag_changes"] > 0
    link.restore()
    assert cluster.tokyo.sync()["error"] is None
    cluster.check_converged("link cut mid-transfer", TOKYO)
    _applied_once(cluster.tokyo, "c-")


def test_hq_killed_mid_transfer_then_both_resume(cluster: Cluster, tmp_path: Path) -> None:
    cluster.hq.ingest(write_docs(tmp_path / "kill", _batch("k-", 32)))
    link = cluster.links[TOKYO]
    link.restore(rate=25_000)
    thread, outcome = _sync_in_background(cluster.tokyo)
    assert wait_until(lambda: any(d.startswith("k-") for d in cluster.tokyo.indexed()), timeout=120)
    cluster.hq.kill()
    thread.join(timeout=120)
    assert (outcome.get("report") or {}).get("error"), outcome
    partial = {d for d in cluster.tokyo.indexed() if d.startswith("k-")}
    assert 0 < len(partial) < 32, len(partial)
    row = {
        "scenario": "HQ killed mid-transfer (before resume)",
        "node": TOKYO,
        "expected": 32,
        "present": len(partial),
    }
    cluster.convergence.append(row)
    cluster.hq.start()
    link.restore()
    for mission in (TOKYO, PARIS):
        assert cluster.missions[mission].sync()["error"] is None
        cluster.check_converged("HQ killed mid-transfer", mission)
    _applied_once(cluster.tokyo, "k-")


# ---- 6. a mission offline for many changes -------------------------------------------------------
def test_offline_mission_catches_up_in_both_directions(cluster: Cluster, tmp_path: Path) -> None:
    link = cluster.links[PARIS]
    link.cut()
    docs = _batch("o-", 24)
    for i in range(0, 24, 3):  # a third of them confidential: not for Paris
        docs[f"o-{i:02d}"] = ("confidential", ["all-staff"], docs[f"o-{i:02d}"][2])
    folder = write_docs(tmp_path / "offline", docs)
    cluster.hq.ingest(folder)
    for i in range(1, 6):  # new versions of five
        (folder / f"o-{i:02d}.txt").write_text(text(f"o-{i:02d}", "phiên bản mới, sửa đổi"), encoding="utf-8")
    cluster.hq.ingest(folder)
    for i in range(6, 11):
        cluster.hq.delete(f"o-{i:02d}")
    for i in range(11, 16):
        cluster.hq.set_access(f"o-{i:02d}", "public", ["all-staff"])
    cluster.hq.set_access("o-16", "internal", ["unit:hq/policy"])
    cluster.paris.ingest(
        write_docs(
            tmp_path / "paris-reports",
            {
                f"p-rep-{i}": ("internal", ["all-staff"], text(f"p-rep-{i}", "Báo cáo từ Paris"))
                for i in range(3)
            },
        )
    )
    failed = cluster.paris.sync()
    assert failed["error"], failed
    status = cluster.paris.api("GET", "/api/v1/network/status").json()["peers"][0]
    assert status["push"]["queue_depth"] == 3 and status["last_error"], status  # queued durably
    cluster.convergence.append(
        {
            "scenario": "offline mission (while offline)",
            "node": f"{HQ} <- {PARIS}",
            "expected": 3,
            "present": 0,
        }
    )
    link.restore()
    report = cluster.paris.sync()
    assert report["error"] is None and report["pushed"] == 3, report
    cluster.check_converged("offline mission catches up", PARIS)
    cluster.check_hq_has("offline mission catches up", PARIS)
    status = cluster.paris.api("GET", "/api/v1/network/status").json()["peers"][0]
    assert status["push"]["queue_depth"] == 0 and status["feed"]["lag_changes"] == 0, status
    assert status["last_error"] is None
    assert cluster.tokyo.sync()["error"] is None  # Tokyo gets the Paris reports it may hold
    cluster.check_converged("offline mission catches up", TOKYO)


# ---- 7. forged and replayed changes --------------------------------------------------------------
def test_forged_replayed_and_misaddressed_pushes_are_rejected_by_hq(cluster: Cluster) -> None:
    from kms.network import wire
    from kms.network.envelope import Change

    tokyo_net = node_paths(cluster.tokyo.data_dir)
    key = pki.load_private_key(tokyo_net.node_key)
    with cluster.tokyo.db() as db:
        log_id, acked = db.execute("SELECT p.push_log, p.push_seq FROM replication_peers p").fetchone()
    assert acked > 0
    base = Change(
        origin=TOKYO, target=HQ, log=log_id, epoch=0, seq=acked, kind="delete", doc_id="t-rep-conf", version=1
    )
    with replication_client(cluster, tokyo_net) as client:

        def push(sealed: dict[str, str]) -> httpx.Response:
            body = wire.pack({"changes": [sealed], "bundles": []}, [])
            return client.post("/replication/v1/push", content=body, extensions=SNI)

        # replayed: a genuine, correctly signed change at an already-applied position
        replay = push(base.seal(key))
        assert replay.status_code == 200 and replay.json()["results"][0]["status"] == "duplicate"
        # forged: the envelope altered after signing
        sealed = replace(base, seq=acked + 1).seal(key)
        tampered = dict(sealed, envelope=sealed["envelope"].replace('"t-rep-conf"', '"a-int-missions"'))
        assert push(tampered).status_code == 400
        # signed by another node's key, sent over Tokyo's connection
        paris_key = pki.load_private_key(node_paths(cluster.paris.data_dir).node_key)
        assert push(replace(base, seq=acked + 1).seal(paris_key)).status_code == 400
        # Tokyo's key, claiming to be Paris / addressed to another node
        assert push(replace(base, seq=acked + 1, origin=PARIS).seal(key)).status_code == 400
        assert push(replace(base, seq=acked + 1, target=PARIS).seal(key)).status_code == 400
    assert "t-rep-conf" in cluster.hq.indexed()  # nothing above took effect
    assert "a-int-missions" in cluster.hq.indexed()
    rejected = [d["reason"] for _t, d in cluster.hq.audit_actions("replication.reject")]
    assert {"forged", "origin", "target"} <= set(rejected), rejected


def test_forged_and_replayed_feed_changes_are_rejected_by_the_mission(cluster: Cluster) -> None:
    """A fake HQ (with HQ's real key, so TLS passes) replays, forges and misaddresses changes."""
    import uvicorn
    from fastapi import FastAPI

    from kms.network.envelope import Change

    assert cluster.tokyo.sync()["error"] is None
    hq_net = node_paths(cluster.hq.data_dir)
    hq_key = pki.load_private_key(hq_net.node_key)
    hq_cert = hq_net.node_cert.read_text()
    with replication_client(cluster, node_paths(cluster.tokyo.data_dir)) as client:  # a real page, as Tokyo
        model = cluster.tokyo.stats()
        real = client.post(
            "/replication/v1/feed",
            json={
                "log": "",
                "epoch": 0,
                "seq": 0,
                "limit": 50,
                "model": model["embedder"],
                "dim": model["dim"],
            },
            extensions=SNI,
        ).json()
    with cluster.tokyo.db() as db:
        log_id, epoch, seq = db.execute(
            "SELECT pull_log, pull_epoch, pull_seq FROM replication_peers"
        ).fetchone()
    assert real["log"] == log_id and real["epoch"] == epoch and real["changes"]
    first = json.loads(real["changes"][0]["envelope"])
    first.pop("v")
    fresh = replace(Change(**first), seq=seq + 1)  # a position the mission has not reached
    forged = fresh.seal(hq_key)
    forged["envelope"] = forged["envelope"].replace(
        f'"seq":{seq + 1}', f'"seq":{seq + 2}'
    )  # altered after signing
    paris_cert = node_paths(cluster.paris.data_dir).node_cert.read_text()
    paris_key = pki.load_private_key(node_paths(cluster.paris.data_dir).node_key)
    cases = {
        "replay": ({"changes": [real["changes"][0]]}, hq_cert),  # genuine, already applied
        "forged": ({"changes": [forged]}, hq_cert),
        "target": ({"changes": [replace(fresh, target=PARIS).seal(hq_key)]}, hq_cert),
        "signer": ({"changes": [fresh.seal(paris_key)]}, paris_cert),  # another node posing as HQ
    }
    page: dict[str, Any] = {}
    app = FastAPI()

    @app.post("/replication/v1/feed")
    def feed() -> dict[str, Any]:
        return page

    @app.post("/replication/v1/ack")
    def ack() -> dict[str, Any]:
        return {}

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            ssl_context_factory=lambda _c, _d: pki.server_context(hq_net),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, timeout=30)
    fake_port = server.servers[0].sockets[0].getsockname()[1]
    link = cluster.links[TOKYO]
    before = cluster.tokyo.documents()
    try:
        link.target_port = fake_port
        link.restore()
        for reason, (changes, signer) in cases.items():
            page.clear()
            page.update(
                {
                    "log": log_id,
                    "epoch": epoch,
                    "next_seq": seq + 5,
                    "more": False,
                    "head": seq + 5,
                    "pending": 0,
                    "oldest_pending_ts": None,
                    "signer_cert": signer,
                    "error": None,
                    **changes,
                }
            )
            report = cluster.tokyo.sync()
            assert report["error"], (reason, report)
            assert cluster.tokyo.documents() == before, reason  # nothing applied, position unchanged
            with cluster.tokyo.db() as db:
                assert db.execute("SELECT pull_seq FROM replication_peers").fetchone()[0] == seq, reason
    finally:
        link.target_port = int(cluster.hq.env["KMS_REPLICATION_PORT"])
        link.restore()
        server.should_exit = True
        thread.join(timeout=15)
    reasons = [d["reason"] for _t, d in cluster.tokyo.audit_actions("replication.reject")]
    assert {"replay", "forged", "target"} <= set(reasons), reasons
    assert cluster.tokyo.sync()["error"] is None  # the real HQ again: all good
    cluster.check_converged("after forged and replayed changes", TOKYO)


# ---- 8. federated search -----------------------------------------------------------------------------
def _search(cluster: Cluster, key: str, query: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = cluster.tokyo.api("POST", "/api/v1/search", key=key, json={"query": query, "k": 20})
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def test_federated_search_merges_hq_and_marks_origins(cluster: Cluster, tmp_path: Path) -> None:
    cluster.hq.ingest(
        write_docs(
            tmp_path / "fresh",
            {
                "f-fresh": ("internal", ["all-staff"], text("f-fresh", "Kyushu cảng biển")),
            },
        )
    )  # not synced yet: only HQ has it
    body, _elapsed = _search(cluster, cluster.keys["alice@tokyo"], "Kyushu")
    origins = {hit["doc_id"]: hit["origin"] for hit in body["results"]}
    assert body["hq_reachable"] is True
    assert origins.get("a-conf-tok") == TOKYO  # the local replica answers what it holds
    assert origins.get("a-user-alice") == HQ  # readable by alice at HQ, not stored at Tokyo
    assert origins.get("f-fresh") == HQ  # not replicated yet
    assert "a-secret" not in origins and "a-topsecret" not in origins  # capped at Tokyo's ceiling
    # A user the mission made up (top_secret, an HQ unit) is nobody at HQ: local answers only.
    body, _elapsed = _search(cluster, cluster.keys["mallory@tokyo"], "Kyushu")
    assert body["hq_reachable"] is True and all(hit["origin"] == TOKYO for hit in body["results"])
    searches = [d for t, d in cluster.hq.audit_actions("search") if d.get("node") == TOKYO]
    assert searches and searches[-1]["clearance_capped_to"] == "confidential"


def test_federated_search_with_hq_unreachable_answers_locally_and_fast(cluster: Cluster) -> None:
    link = cluster.links[TOKYO]
    key = cluster.keys["alice@tokyo"]
    _search(cluster, key, "Kyushu")  # warm
    _body, baseline = _search(cluster, key, "hợp tác kinh tế")
    link.cut("blackhole")  # packets vanish: the worst case, a timeout rather than a refusal
    try:
        body, first = _search(cluster, key, "Kyushu")
        assert body["hq_reachable"] is False
        assert body["results"] and all(hit["origin"] == TOKYO for hit in body["results"])
        assert first < 2.0 + baseline + 1.0, first  # at most the federation timeout over a local search
        body, second = _search(cluster, key, "xuất khẩu nông sản")
        assert body["hq_reachable"] is False
        assert second < baseline + 1.0, (second, baseline)  # HQ is not asked again while it is down
        cluster.convergence.append(
            {
                "scenario": "federated search, HQ unreachable",
                "node": TOKYO,
                "first_s": round(first, 3),
                "next_s": round(second, 3),
                "local_baseline_s": round(baseline, 3),
            }
        )
    finally:
        link.restore()
    assert cluster.tokyo.sync()["error"] is None  # a successful sync reopens federation at once
    body, _elapsed = _search(cluster, key, "Kyushu")
    assert body["hq_reachable"] is True


# ---- 9. lowering a node's rights in nodes.yaml -------------------------------------------------------
def test_lowering_a_ceiling_in_nodes_yaml_removes_what_the_node_may_no_longer_hold(cluster: Cluster) -> None:
    lowered = json.loads(json.dumps(NODES_YAML))
    lowered["nodes"][1]["ceiling"] = "public"
    cluster.write_nodes(lowered)
    try:
        assert cluster.paris.sync()["error"] is None
        held = cluster.paris.indexed()
        assert held and all(d["classification"] == "public" for k, d in held.items() if d["origin"] != PARIS)
        cluster.check_converged("ceiling lowered to public", PARIS)
    finally:
        cluster.write_nodes(NODES_YAML)
    assert cluster.paris.sync()["error"] is None
    cluster.check_converged("ceiling restored to internal", PARIS)


# ---- 10. operations ------------------------------------------------------------------------------------
def test_status_metrics_and_audit(cluster: Cluster) -> None:
    for mission in (TOKYO, PARIS):
        assert cluster.missions[mission].sync()["error"] is None
    status = json.loads(run_cli(cluster.tokyo.env, "network", "status", "--json").stdout)
    peer = status["peers"][0]
    assert status["node"] == TOKYO and status["role"] == "mission" and peer["peer"] == HQ
    assert (
        peer["feed"]["lag_changes"] == 0 and peer["push"]["queue_depth"] == 0 and peer["last_error"] is None
    )
    assert peer["counters"]["changes_in"] > 0 and peer["counters"]["bytes_in"] > 0
    assert status["identity"]["node"] == TOKYO
    hq_status = cluster.hq.api("GET", "/api/v1/network/status").json()
    by_peer = {p["peer"]: p for p in hq_status["peers"]}
    for mission in (TOKYO, PARIS):
        assert by_peer[mission]["feed"]["lag_changes"] == 0, by_peer[mission]
        assert by_peer[mission]["last_seen_s_ago"] is not None
    metrics = cluster.hq.api("GET", "/api/v1/network/metrics").text
    assert f'kms_replication_changes_total{{peer="{TOKYO}",direction="out"}}' in metrics
    assert f'kms_replication_lag_changes{{peer="{PARIS}"}} 0' in metrics
    assert cluster.tokyo.audit_actions("replication.apply")
    assert cluster.hq.audit_actions("replication.serve") and cluster.hq.audit_actions("replication.apply")
    for node in (cluster.hq, cluster.tokyo):
        assert node.api("GET", "/api/v1/audit/verify").json()["ok"] is True
    sync = run_cli(cluster.hq.env, "network", "sync", check=False)
    assert sync.returncode == 2 and "HQ does not initiate" in sync.stderr
