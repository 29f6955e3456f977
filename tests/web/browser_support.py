"""A real `kms serve` with a small real index, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kms.demo import samples_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# A mission reader's view: public guidance, Tokyo's own reports, and a secret cable of Seoul that
# Tokyo must never see (nor its title, facet counts or similar-document entries).
DOCS = [
    "104-2018-nd-cp.md",
    "292-nq-cp.md",
    "bc-18-tko-thuc-tap-sinh-2024.md",
    "bb-05-tko-lanh-su-luu-dong-2025.md",
    "dien-45-tko-tai-nan-lao-dong.txt",
    "dien-31-sel-phuong-an-so-tan.md",
    "hd-88-ls-bao-ho-khan-cap.md",
]
SEOUL_SECRET = "dien-sel-31-2025"
SHARE = "hq-lanh-su"
SHARE_TEXT = (
    "Công văn 12/LS về thị thực điện tử: từ tháng 9 năm 2025 các cơ quan đại diện "
    "tiếp nhận hồ sơ đề nghị cấp thị thực điện tử cho người nước ngoài qua cổng dịch vụ công."
)


@dataclass
class Server:
    url: str
    data_dir: Path
    keys: dict[str, str]


def _kms(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    result = subprocess.run(
        [sys.executable, "-m", "kms.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it via scripts/system-deps.sh)")
    root = tmp_path_factory.mktemp("web")
    corpus, data_dir = root / "corpus", root / "data"
    corpus.mkdir()
    for name in DOCS:
        for source in samples_dir().glob(name + "*"):
            shutil.copy(source, corpus / source.name)
    _kms(data_dir, "ingest", str(corpus))
    users = {
        "tokyo": ("tokyo.reader", "secret", "mission/jp-tokyo", ["reader"]),
        "admin": ("hq.admin", "top_secret", "hq/digital", ["reader", "ingestor", "admin", "auditor"]),
    }
    keys = {}
    for name, (user_id, clearance, unit, roles) in users.items():
        _kms(
            data_dir,
            "users",
            "add",
            user_id,
            "--clearance",
            clearance,
            "--unit",
            unit,
            *[arg for role in roles for arg in ("--role", role)],
        )
        keys[name] = _kms(data_dir, "keys", "create", user_id)
    # An HQ department share that the admin syncs from the sources page (nothing ingested yet).
    share = root / "share"
    share.mkdir()
    (share / "cv-12-ls-visa-dien-tu.txt").write_text(SHARE_TEXT, encoding="utf-8")
    _kms(
        data_dir, "sources", "add", SHARE, str(share), "--classification", "internal", "--allow", "all-staff"
    )
    port = _free_port()
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kms.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd="/",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail((root / "serve.log").read_text()[-3000:])
        yield Server(url=url, data_dir=data_dir, keys=keys)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield instance
        instance.close()


def screenshot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
