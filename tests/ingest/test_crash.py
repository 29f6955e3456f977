"""Crash safety: SIGKILL a real `kms worker` at random moments, restart it, and check that every
submitted document ends up indexed exactly once (see crash_loop.py for what is checked)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from crash_loop import KMS, KillLoop

KILLS = int(os.environ.get("KMS_CRASH_KILLS", "20"))
SEED = int(os.environ.get("KMS_CRASH_SEED", "6"))


@pytest.mark.slow
def test_kill_loop_leaves_every_document_indexed_exactly_once(tmp_path: Path) -> None:
    loop = KillLoop(tmp_path, seed=SEED, max_delay_s=2.5, log=lambda m: sys.stderr.write(m + "\n"))
    result = loop.run(KILLS)
    summary = json.dumps(result.as_dict(), ensure_ascii=False)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "kill-loop.json").write_text(summary + "\n", encoding="utf-8")
    sys.stderr.write(f"kill loop: {summary}\n")
    assert result.kills >= KILLS
    assert result.kills_during_a_job >= KILLS // 4, summary  # the kills did land while working
    assert (result.lost, result.duplicated, result.stale) == (0, 0, 0), summary
    assert result.check_clean, summary
    assert result.documents > 50 and result.deleted > 0, summary


def test_a_killed_worker_leaves_a_lock_file_that_a_restart_reopens(tmp_path: Path) -> None:
    env = {**os.environ, "KMS_DATA_DIR": str(tmp_path / "data"), "KMS_LOG_FORMAT": "json"}
    env.pop("KMS_QDRANT_URL", None)
    log = tmp_path / "worker.log"
    for attempt in range(2):
        with log.open("wb") as handle:
            process = subprocess.Popen([*KMS, "worker"], env=env, stdout=handle, stderr=handle, cwd="/")
        try:
            KillLoop._wait_for(log, process, '"msg": "worker ')
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        locks = [p for p in (tmp_path / "data").rglob(".lock")]
        assert locks, f"attempt {attempt}: no lock file under the data dir"


def test_a_second_worker_on_the_embedded_store_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "KMS_DATA_DIR": str(tmp_path / "data"), "KMS_LOG_FORMAT": "json"}
    env.pop("KMS_QDRANT_URL", None)
    log = tmp_path / "first.log"
    with log.open("wb") as handle:
        first = subprocess.Popen([*KMS, "worker"], env=env, stdout=handle, stderr=handle, cwd="/")
    try:
        KillLoop._wait_for(log, first, '"msg": "worker ')
        second = subprocess.run(
            [*KMS, "worker"], env=env, capture_output=True, text=True, timeout=120, cwd="/"
        )
        assert second.returncode == 1
        assert "only one worker" in second.stderr and "KMS_QDRANT_URL" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)  # a graceful stop
        assert first.wait(timeout=60) == 0
    assert '"msg": "worker ' in log.read_text() and "stopped after 0 job(s)" in log.read_text()
