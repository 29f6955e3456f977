"""The `kms` command, run as a real process: directly on the store, and through a running `kms serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlite_files import audit_records_in_file_alone

KMS = [sys.executable, "-m", "kms.cli.main"]
DOC = "Số: 12/NQ-CP\nNghị quyết về hợp tác kinh tế số với Nhật Bản.\n\nĐiều 1. Mục tiêu\nThúc đẩy thương mại điện tử."
REPORT = "Báo cáo của Đại sứ quán tại Pháp về xúc tiến xuất khẩu cà phê và hạt điều."


def run(data_dir: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    result = subprocess.run([*KMS, *args], capture_output=True, text=True, env=env, timeout=300, cwd="/")
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "nq12.md").write_text(DOC, encoding="utf-8")
    (folder / "nq12.md.meta.yaml").write_text("doc_id: nq-12\nclassification: public\nallow: [all-staff]\n")
    (folder / "report.txt").write_text(REPORT, encoding="utf-8")
    (folder / "report.txt.meta.json").write_text(
        '{"doc_id": "fr-report", "classification": "Nội bộ", "allow": "all-staff"}'
    )
    return folder


def exercise(data_dir: Path, corpus: Path) -> None:
    """The same script in both modes: ingest, re-ingest, search, show, delete, exit codes."""
    first = run(data_dir, "ingest", str(corpus), "--json", check=True)
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert {(line["doc_id"], line["status"]) for line in lines} == {
        ("nq-12", "added"),
        ("fr-report", "added"),
    }
    assert all(set(line) == {"path", "doc_id", "status", "chunks", "error"} for line in lines)
    again = run(data_dir, "ingest", str(corpus), "--json", check=True)
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"unchanged"}

    found = json.loads(run(data_dir, "search", "xuat khau ca phe", "--json", check=True).stdout)
    assert found["results"][0]["doc_id"] == "fr-report"
    assert (
        json.loads(run(data_dir, "search", "12/NQ-CP", "--json", "-k", "1", check=True).stdout)["results"][0][
            "doc_id"
        ]
        == "nq-12"
    )
    shown = json.loads(run(data_dir, "show", "nq-12", "--json", check=True).stdout)
    assert shown["doc_number"] == "12/NQ-CP" and "thương mại điện tử" in shown["text"]
    assert run(data_dir, "show", "missing-doc").returncode == 4
    assert run(data_dir, "delete", "nq-12").returncode == 0
    assert run(data_dir, "show", "nq-12").returncode == 4
    stats = json.loads(run(data_dir, "stats", "--json", check=True).stdout)
    assert stats["documents"] == {"indexed": 1, "deleted": 1}


def test_cli_on_the_store_directly(tmp_path: Path, corpus: Path) -> None:
    exercise(tmp_path / "data", corpus)


def test_failed_file_exits_1_and_usage_error_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.docx"
    bad.write_bytes(b"not a zip")
    result = run(tmp_path / "data", "ingest", str(bad), "--json")
    assert result.returncode == 1
    line = json.loads(result.stdout)
    assert line["status"] == "failed" and "DOCX" in line["error"]
    assert run(tmp_path / "data", "search").returncode == 2
    assert run(tmp_path / "data", "search", "x", "--mode", "fuzzy").returncode == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[tuple[Path, int, subprocess.Popen[bytes]]]:
    """`kms serve` on a new data dir, once it answers: (data dir, port, process); SIGTERM at the end."""
    data_dir, port = tmp_path / "served", free_port()
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([*KMS, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"kms serve did not start: {(tmp_path / 'serve.log').read_text()[-2000:]}")
        yield data_dir, port, process
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    with serving(tmp_path) as (data_dir, port, _process):
        yield data_dir, port


def test_cli_through_a_running_server(server: tuple[Path, int], corpus: Path) -> None:
    data_dir, port = server
    served = json.loads((data_dir / "serve.json").read_text())
    assert served["port"] == port
    assert (data_dir / "serve.token").stat().st_mode & 0o777 == 0o600
    exercise(data_dir, corpus)  # would fail with "store busy" if the CLI opened the store itself


def test_second_server_on_same_data_dir_refuses(server: tuple[Path, int]) -> None:
    data_dir, _port = server
    result = run(data_dir, "serve", "--port", str(free_port()))
    assert result.returncode == 1 and "already running" in result.stderr


def test_sigterm_stops_the_server_and_cleans_up(tmp_path: Path) -> None:
    """systemd and the benchmarks stop `kms serve` with SIGTERM: the server shuts down, closes the
    store and removes serve.json and the operator token before the signal ends it."""
    with serving(tmp_path) as (data_dir, _port, process):
        assert (data_dir / "serve.json").exists() and (data_dir / "serve.token").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM
    log = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log
    assert not (data_dir / "serve.json").exists()
    assert not (data_dir / "serve.token").exists()
    assert run(data_dir, "stats", "--json", check=True).returncode == 0  # the store opens again


def test_the_server_checkpoints_its_log_off_the_requests(server: tuple[Path, int], tmp_path: Path) -> None:
    """Each refused credential is audited by the request; within seconds the database file alone
    (without its write-ahead log) holds those records: `kms serve` checkpoints on a thread of its
    own, where SQLite would have waited for the log to reach 1,000 pages and made a request do it."""
    data_dir, port = server
    for _ in range(30):
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"authorization": "Bearer nope"})
        assert response.status_code == 401
    deadline = time.monotonic() + 30
    while audit_records_in_file_alone(data_dir / "kms.sqlite3", tmp_path, "auth.failure") < 30:
        assert time.monotonic() < deadline, "the log was not checkpointed"
        time.sleep(0.2)
