"""Helpers shared by the benchmarks: corpora, timing, JSON output, users and a running `kms serve`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from kms.index.preload import MemoryCgroup, memory_cgroup

if TYPE_CHECKING:
    from kms.services import Services

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def median_ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of p50(numerators) / p50(denominators), where the i-th
    numerator and denominator time the same request (the client's latency, the server's own time):
    pairs are resampled together, so what the host's pace does to both cancels out. The p50 is the
    one `percentiles` reports (the upper middle value), so the interval is about the reported ratio.
    It says how much of a ratio's wobble the run's own requests explain; the host's pace from one run
    to the next is not in it."""
    pairs = np.asarray([numerators, denominators], dtype=float)
    if pairs.ndim != 2 or pairs.shape[1] < 2:
        raise ValueError("need at least two pairs of the same length")
    count = pairs.shape[1]
    picks = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    middle = count // 2  # `percentiles`' p50: ordered[int(0.5 * n)]
    medians = [np.partition(column[picks], middle, axis=1)[:, middle] for column in pairs]
    low, high = np.quantile(medians[0] / medians[1], [(1 - level) / 2, (1 + level) / 2])
    return round(float(low), 3), round(float(high), 3)


def beir_documents(dataset: str) -> Iterator[tuple[str, str, str]]:
    """(id, title, text) from a BEIR corpus in ../shared/eval, if present."""
    path = SHARED_EVAL / dataset / "corpus.jsonl"
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            yield str(record["_id"]), str(record.get("title") or ""), str(record["text"])


def write_corpus(folder: Path, documents: list[tuple[str, str, str]]) -> list[Path]:
    """Write documents as .txt files with public/all-staff sidecars; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (_doc_id, title, text) in enumerate(documents):
        path = folder / f"doc-{number:06d}.txt"
        path.write_text(f"{title}\n\n{text}" if title else text, encoding="utf-8")
        path.with_name(path.name + ".meta.json").write_text(
            json.dumps({"doc_id": f"bench-{number:06d}", "classification": "public", "allow": ["all-staff"]}),
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def create_users_with_keys(
    services: Services, users: Sequence[tuple[str, str, str, tuple[str, ...]]]
) -> dict[str, str]:
    """(user, clearance, unit, groups) -> an API key each, committed together."""
    from kms.security.users import create_key, create_user

    keys = {}
    with services.sessions() as session:
        for user, clearance, unit, groups in users:
            create_user(
                session,
                user_id=user,
                clearance=clearance,
                unit=unit,
                groups=groups,
                classification=services.classification,
            )
            keys[user] = create_key(session, user_id=user)[1]
        session.commit()
    return keys


class LoopbackClient:
    """A minimal HTTP/1.1 client with keep-alive, one connection per calling thread, for timing a
    server over loopback.

    A client's own work lands in every latency sample, and on 2 cores it competes with the server.
    Measured side by side on the same `kms serve` and requests: httpx added ~1 ms per request and
    `http.client` (which parses headers with the email package) ~0.4 ms over this. It speaks only
    what the benchmarks need: JSON POSTs, responses framed by Content-Length.
    """

    def __init__(self, base: str, timeout: float = 120) -> None:
        url = urlsplit(base)
        self.host, self.port, self.timeout = url.hostname or "127.0.0.1", url.port or 80, timeout
        self._local = threading.local()

    def post_json(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body). An idle connection the server closed is reopened."""
        data = json.dumps(body).encode()
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}", "content-type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join([*lines, f"content-length: {len(data)}", "", ""])).encode("latin-1") + data
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.sendall(request)
                return self._response(connection)
            except (ConnectionError, _Closed):  # the server closes idle keep-alive connections
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> socket.socket:
        connection: socket.socket | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = socket.create_connection((self.host, self.port), timeout=self.timeout)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection, self._local.pending = connection, b""
        return connection

    def _response(self, connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
        data: bytes = self._local.pending
        while b"\r\n\r\n" not in data:
            data += self._recv(connection)
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise SystemExit(f"LoopbackClient needs Content-Length framing, got {headers}")
        length = int(headers["content-length"])
        while len(data) < length:
            data += self._recv(connection)
        self._local.pending = data[length:]
        return int(status_line.split()[1]), headers, data[:length]

    @staticmethod
    def _recv(connection: socket.socket) -> bytes:
        chunk = connection.recv(1 << 16)
        if not chunk:
            raise _Closed
        return chunk


class _Closed(Exception):
    """The server closed the connection."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LimitedCgroup:
    """A child of this process's memory cgroup with a memory limit, for a server to run in (cgroup v1's
    memory controller or v2, as `kms.index.preload.memory_cgroup` finds it). Page cache counts
    against the limit, so what runs in it fits in that much memory, not only in that much RSS. Needs
    write access to the cgroup tree (root, or a delegated subtree)."""

    def __init__(self, parent: MemoryCgroup, limit_bytes: int) -> None:
        self.parent = parent
        self.path = parent.folder / f"kms-bench-{os.getpid()}"
        try:
            self.path.mkdir()
            (self.path / parent.limit_file).write_text(str(limit_bytes), encoding="ascii")
        except OSError as exc:
            raise SystemExit(f"cannot create a memory cgroup at {self.path}: {exc}") from exc

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this cgroup (the shell joins it, then becomes the program)."""
        procs = self.path / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def peak_mb(self) -> float:
        try:
            return round(int((self.path / self.parent.peak_file).read_text(encoding="ascii")) / 2**20, 1)
        except (OSError, ValueError):
            return -1.0


@contextmanager
def memory_limited(limit_mb: int) -> Iterator[LimitedCgroup | None]:
    """A `LimitedCgroup` of `limit_mb` (None for 0), removed on exit once its processes are gone."""
    if not limit_mb:
        yield None
        return
    parent = memory_cgroup()
    if parent is None:
        raise SystemExit("no memory cgroup controller found in /proc/self/cgroup")
    cgroup = LimitedCgroup(parent, limit_mb * 2**20)
    try:
        yield cgroup
    finally:
        with contextlib.suppress(OSError):
            cgroup.path.rmdir()


@contextmanager
def kms_server(
    data_dir: Path, env: dict[str, str | None] | None = None, *, cgroup: LimitedCgroup | None = None
) -> Iterator[tuple[str, int]]:
    """`kms serve` on a free loopback port, once `/healthz` answers: (base URL, pid); stopped on exit.
    `env` adds variables (None removes one); `cgroup`: run it in that memory cgroup."""
    port = free_port()
    environment = {**os.environ, "KMS_DATA_DIR": str(data_dir), "KMS_LOG_LEVEL": "WARNING"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    argv = [sys.executable, "-m", "kms.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        cgroup.command(argv) if cgroup is not None else argv,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"  # loopback only
    try:
        for _ in range(1200):  # a large index takes a while to open
            if server.poll() is not None:
                raise SystemExit(f"kms serve exited with status {server.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            raise SystemExit("kms serve did not answer /healthz within 5 minutes")
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)
