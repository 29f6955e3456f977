"""Real nodes for the network tests: `kms serve` processes on loopback, and a link we can cut.

`Node` runs one `kms serve` with its own data dir; `LinkProxy` sits between a mission and HQ's
replication port (loopback only) and can throttle, cut (drop every connection and refuse new
ones), black-hole (accept and never answer) or point elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kms.config import load_classification
from kms.network.nodes import NetworkConfig, load_network, node_may_hold

KMS = [sys.executable, "-m", "kms.cli.main"]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*KMS, *args], capture_output=True, text=True, env=env, timeout=300, cwd="/")
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


@dataclass
class Node:
    name: str
    data_dir: Path
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    # ---- process --------------------------------------------------------------------------------
    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*KMS, "serve", "--port", str(self.port)], env=self.env, stdout=log, stderr=log, cwd="/"
        )
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://{LOOPBACK}:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a power cut."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    # ---- API ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def token(self) -> str:
        return (self.data_dir / "serve.token").read_text(encoding="utf-8").strip()

    def api(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.token()}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)

    def ingest(self, folder: Path) -> list[dict[str, Any]]:
        response = self.api("POST", "/api/v1/local/ingest", json={"paths": [str(folder)]})
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        assert all(r["status"] != "failed" for r in results), results
        return results

    def delete(self, doc_id: str) -> None:
        assert self.api("DELETE", f"/api/v1/documents/{doc_id}").status_code == 204

    def set_access(self, doc_id: str, classification: str, allow: list[str]) -> None:
        body = {"classification": classification, "allow": allow}
        response = self.api("PUT", f"/api/v1/admin/documents/{doc_id}/access", json=body)
        assert response.status_code == 200, response.text

    def sync(self, *, reconcile: bool = False, timeout: float = 300) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/api/v1/local/network/sync",
            params={"reconcile": reconcile},
            headers={"authorization": f"Bearer {self.token()}"},
            timeout=timeout,
        )
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        return report

    def stats(self) -> dict[str, Any]:
        response = self.api("GET", "/api/v1/local/stats")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def add_user(self, user_id: str, clearance: str, unit: str, groups: list[str] | None = None) -> str:
        body = {
            "user_id": user_id,
            "clearance": clearance,
            "unit": unit,
            "groups": groups or [],
            "roles": ["reader"],
        }
        assert self.api("POST", "/api/v1/admin/users", json=body).status_code == 201
        response = self.api("POST", f"/api/v1/admin/users/{user_id}/keys")
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    # ---- what is on disk ------------------------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data_dir / 'kms.sqlite3'}?mode=ro", uri=True, timeout=30)

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every registry row: doc_id -> {status, version, classification, allow, origin, chunks, sha}."""
        with self.db() as db:
            rows = db.execute(
                "SELECT doc_id, status, version, classification, allow, origin_node, chunk_count, "
                "original_sha256 FROM documents"
            ).fetchall()
        return {
            r[0]: {
                "status": r[1],
                "version": r[2],
                "classification": r[3],
                "allow": json.loads(r[4] or "[]"),
                "origin": r[5],
                "chunks": r[6],
                "original": r[7],
            }
            for r in rows
        }

    def indexed(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.documents().items() if v["status"] == "indexed"}

    def audit_actions(self, action: str) -> list[tuple[str | None, dict[str, Any]]]:
        with self.db() as db:
            rows = db.execute("SELECT target, detail FROM audit_log WHERE action = ? ORDER BY id", (action,))
            return [(r[0], json.loads(r[1])) for r in rows.fetchall()]

    def files_containing(self, marker: bytes) -> list[str]:
        """Every file under the data dir whose raw bytes contain `marker`."""
        found = []
        for path in self.data_dir.rglob("*"):
            if path.is_file():
                try:
                    if marker in path.read_bytes():
                        found.append(str(path.relative_to(self.data_dir)))
                except OSError:
                    continue
        return found


# ---- the link ----------------------------------------------------------------------------------
@dataclass
class LinkProxy:
    """A TCP relay on loopback: `mode` up | down (refuse) | blackhole; `rate` caps bytes/s to the mission."""

    target_port: int
    port: int = 0
    mode: str = "up"
    rate: float | None = None
    forwarded: int = 0  # bytes sent back to the mission since the last reset
    _server: socket.socket | None = None
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def start(self) -> LinkProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, 0))
        server.listen(64)
        self.port = int(server.getsockname()[1])
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            if self.mode == "blackhole":
                self._track(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            self._track(client)
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.append(sock)

    def _swallow(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = source.recv(4096 if self.rate else 65536)
                if not data or self.mode != "up":
                    break
                if downstream and self.rate:
                    time.sleep(len(data) / self.rate)
                    if self.mode != "up":
                        break
                sink.sendall(data)
                if downstream:
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self, mode: str = "down") -> None:
        """Drop every connection now and refuse (or black-hole) new ones."""
        self.mode = mode
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self, *, rate: float | None = None) -> None:
        self.cut("up")
        self.rate = rate
        self.forwarded = 0

    def close(self) -> None:
        self._closed = True
        self.cut()
        if self._server is not None:
            self._server.close()


# ---- expectations ------------------------------------------------------------------------------
def expected_at(
    hq: Node, network: NetworkConfig, node_id: str, config_dir: Path
) -> dict[str, dict[str, Any]]:
    """What `node_id` should hold: HQ's indexed documents it may hold that it did not author."""
    classification = load_classification(config_dir)
    spec = network.nodes[node_id]
    return {
        doc_id: doc
        for doc_id, doc in hq.indexed().items()
        if doc["origin"] != node_id
        and node_may_hold(spec, classification, doc["classification"], doc["allow"])
    }


def own_documents(node: Node, node_id: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in node.indexed().items() if v["origin"] == node_id}


def network_config(config_dir: Path) -> NetworkConfig:
    return load_network(config_dir, load_classification(config_dir))


def write_docs(folder: Path, docs: dict[str, tuple[str, list[str], str]]) -> Path:
    """doc_id -> (classification, allow, text): a .txt and a sidecar each."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, (level, allow, text) in docs.items():
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        meta = {"doc_id": doc_id, "classification": level, "allow": allow, "title": f"Tài liệu {doc_id}"}
        (folder / f"{doc_id}.txt.meta.json").write_text(
            json.dumps(meta, ensure_ascii=False), encoding="utf-8"
        )
    return folder


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
