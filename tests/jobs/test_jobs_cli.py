"""`kms ingest --queue`, and `kms ingest` while a `kms worker` owns the embedded index (queued, then
waited for with the worker doing the work)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

KMS = [sys.executable, "-m", "kms.cli.main"]
TEXT = "Số: 31/HD-BNG\nHướng dẫn về thủ tục hợp pháp hóa lãnh sự.\n\nĐiều 1. Phạm vi\nÁp dụng cho cơ quan đại diện."


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hd31.txt").write_text(TEXT, encoding="utf-8")
    (docs / "hd31.txt.meta.yaml").write_text("doc_id: hd-31\nclassification: public\nallow: [all-staff]\n")
    (docs / "broken.docx").write_bytes(b"not a zip")
    return docs


def test_ingest_queue_only_queues(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kms.cli.main import app

    monkeypatch.setenv("KMS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def kms(*args: str) -> Any:
        return runner.invoke(app, list(args))

    queued = kms("ingest", str(folder), "--queue")
    assert queued.exit_code == 0, queued.output  # the broken DOCX is only found out by the worker
    job_id = json.loads(queued.stdout)["job_id"]
    assert json.loads(kms("jobs", "show", str(job_id), "--json").stdout)["state"] == "queued"
    assert kms("worker", "--drain").exit_code == 0
    shown = json.loads(kms("jobs", "show", str(job_id), "--json").stdout)
    assert shown["state"] == "failed" and shown["error"] == "1 of 2 files failed"
    assert {f["name"]: f["status"] for f in shown["files"]} == {"broken.docx": "failed", "hd31.txt": "added"}
    refused = kms("ingest", str(folder / "missing.txt"), "--queue")
    assert refused.exit_code == 1 and "no such file" in refused.output


def test_ingest_waits_for_the_worker_that_owns_the_index(tmp_path: Path, folder: Path) -> None:
    env = {**os.environ, "KMS_DATA_DIR": str(tmp_path / "data"), "KMS_WORKER_POLL_S": "0.2"}
    env.pop("KMS_QDRANT_URL", None)
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen([*KMS, "worker"], env=env, stdout=handle, stderr=handle, cwd="/")
    try:
        deadline = time.monotonic() + 180
        while '"msg": "worker ' not in log.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)
        result = subprocess.run(
            [*KMS, "ingest", str(folder), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd="/",
        )
        assert result.returncode == 1, result.stderr  # the broken DOCX failed
        lines = {
            json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line)
            for line in result.stdout.splitlines()
        }
        assert lines["hd31.txt"]["status"] == "added" and lines["broken.docx"]["status"] == "failed"
        assert "waiting for the worker" in result.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    assert '"msg": "job 1 failed"' in log.read_text() or '"state": "failed"' in log.read_text()
