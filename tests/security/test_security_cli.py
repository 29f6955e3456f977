"""`kms users`, `kms keys`, `kms search/show --as`, and the demo principals."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ingest.pipeline import build_pipeline, run_pipeline
from kms.cli.main import app
from kms.config import Settings
from kms.db.session import engine_of, make_engine, make_session_factory
from kms.demo import DEMO_USERS, create_demo_users
from kms.security import audit, users
from kms.security.authn import operator_name
from kms.services import Services

DOCS = {
    "c-public": {"classification": "public", "allow": ["all-staff"]},
    "c-consular": {"classification": "secret", "allow": ["unit:hq/consular"]},
    "c-tokyo": {"classification": "internal", "allow": ["unit:mission/jp-tokyo"]},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small index (closed again, so the CLI can open it), with alice and bob."""
    root = tmp_path_factory.mktemp("cli-security")
    services = Services.open(Settings(data_dir=root / "data"))
    sources, metas = [], []
    for doc_id, access in DOCS.items():
        path = root / f"{doc_id}.txt"
        path.write_text(f"Hồ sơ {doc_id} về bảo hộ công dân.", encoding="utf-8")
        sources.append(str(path))
        metas.append({"doc_id": doc_id, "owner_unit": "hq", **access})
    assert len(run_pipeline(build_pipeline(services), sources, metas)["written"]) == len(DOCS)
    services.close()
    assert (
        kms(root / "data", "users", "add", "alice", "--clearance", "secret", "--unit", "hq/consular")[0] == 0
    )
    assert (
        kms(root / "data", "users", "add", "bob", "--clearance", "Nội bộ", "--unit", "mission/jp-tokyo")[0]
        == 0
    )
    return root / "data"


def kms(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"KMS_DATA_DIR": str(data_dir)})
    return result.exit_code, result.stdout, result.stderr


def sessions_for(data_dir: Path):  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(Settings(data_dir=data_dir).sqlalchemy_url))


def test_users_add_list_disable(data_dir: Path) -> None:
    code, _out, err = kms(
        data_dir,
        "users",
        "add",
        "carol",
        "--clearance",
        "Mật",
        "--unit",
        "hq",
        "--group",
        "g1",
        "--role",
        "ingestor",
        "--role",
        "reader",
    )
    assert code == 0 and "added carol (confidential, hq, roles ingestor,reader)" in err
    code, _out, err = kms(data_dir, "users", "add", "carol", "--clearance", "public", "--unit", "hq")
    assert code == 1 and "already exists" in err
    assert kms(data_dir, "users", "add", "dave", "--clearance", "cosmic", "--unit", "hq")[0] == 2
    assert kms(data_dir, "users", "add", "dave", "--clearance", "public", "--unit", "hq//x")[0] == 2
    assert (
        kms(data_dir, "users", "add", "dave", "--clearance", "public", "--unit", "hq", "--role", "root")[0]
        == 2
    )
    code, out, _err = kms(data_dir, "users", "list", "--json")
    listed = {u["user_id"]: u for u in map(json.loads, out.splitlines())}
    assert listed["alice"]["roles"] == ["reader"] and listed["bob"]["clearance"] == "internal"
    assert listed["carol"]["groups"] == ["g1"] and "dave" not in listed
    assert kms(data_dir, "users", "disable", "carol")[0] == 0
    assert kms(data_dir, "users", "disable", "nobody")[0] == 4
    code, out, _err = kms(data_dir, "users", "list", "--json")
    assert {u["user_id"]: u["disabled"] for u in map(json.loads, out.splitlines())}["carol"] is True


def test_keys_create_prints_only_the_key_and_revoke_works(data_dir: Path) -> None:
    code, out, err = kms(data_dir, "keys", "create", "alice")
    assert code == 0 and re.fullmatch(r"kms_[0-9a-f]{16}_[A-Za-z0-9_-]+\n", out)
    key, key_id = out.strip(), err.split("key id: ")[1].strip()
    assert key.startswith(f"kms_{key_id}_")
    sessions = sessions_for(data_dir)
    engine = engine_of(sessions)
    assert users.check_api_key(engine, key).principal is not None
    code, out, _err = kms(data_dir, "keys", "list", "--user", "alice", "--json")
    assert key_id in out and key not in out
    assert kms(data_dir, "keys", "create", "nobody")[0] == 4
    assert kms(data_dir, "keys", "revoke", key_id)[0] == 0
    assert kms(data_dir, "keys", "revoke", "0" * 16)[0] == 4
    assert users.check_api_key(engine, key).failure == "revoked key"
    with sessions() as session:
        actions = [(r.action, r.target) for r in audit.records(session, actor=operator_name())]
    assert (
        ("key.create", key_id) in actions
        and ("key.revoke", key_id) in actions
        and ("user.create", "alice") in actions
    )


def test_keys_create_in_a_real_process_keeps_stdout_clean(data_dir: Path) -> None:
    env = {**os.environ, "KMS_DATA_DIR": str(data_dir), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    result = subprocess.run(
        [sys.executable, "-m", "kms.cli.main", "keys", "create", "bob"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"kms_[0-9a-f]{16}_[A-Za-z0-9_-]+\n", result.stdout)
    assert result.stderr.startswith("key id: ")


def test_search_and_show_as_a_user(data_dir: Path) -> None:
    code, out, _err = kms(data_dir, "search", "hồ sơ bảo hộ", "--mode", "sparse", "--json", "--as", "alice")
    assert code == 0 and {h["doc_id"] for h in json.loads(out)["results"]} == {"c-public", "c-consular"}
    code, out, _err = kms(data_dir, "search", "hồ sơ bảo hộ", "--mode", "sparse", "--json", "--as", "bob")
    assert code == 0 and {h["doc_id"] for h in json.loads(out)["results"]} == {"c-public", "c-tokyo"}
    code, out, _err = kms(data_dir, "search", "hồ sơ bảo hộ", "--mode", "sparse", "--json")
    assert {h["doc_id"] for h in json.loads(out)["results"]} == set(DOCS)  # the operator sees everything

    code, out, _err = kms(data_dir, "show", "c-consular", "--as", "alice", "--json")
    assert code == 0 and json.loads(out)["doc_id"] == "c-consular" and "allow" not in json.loads(out)
    code, out, err = kms(data_dir, "show", "c-consular", "--as", "bob")
    assert code == 4 and out == "" and "not found" in err
    assert kms(data_dir, "show", "c-missing", "--as", "alice")[0] == 4
    assert kms(data_dir, "show", "c-consular", "--as", "nobody")[0] == 2
    assert kms(data_dir, "search", "x", "--as", "nobody")[0] == 2

    with sessions_for(data_dir)() as session:
        searches = audit.records(session, action="search")
        reads = audit.records(session, action="document.read")
    assert f"{operator_name()} as alice" in {r.actor for r in searches}
    assert (f"{operator_name()} as bob", "c-consular", "not_found") in {
        (r.actor, r.target, r.detail["outcome"]) for r in reads
    }


def test_demo_creates_principals_with_fresh_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.ensure_data_dir()
    first = create_demo_users(settings)
    second = create_demo_users(settings)
    assert [u.user_id for u, _ in first] == [u.user_id for u in DEMO_USERS]
    assert {u.clearance for u in DEMO_USERS} >= {"public", "internal", "confidential", "secret"}
    assert {u.unit.split("/")[0] for u in DEMO_USERS} == {"hq", "mission"}
    assert len({u.unit for u in DEMO_USERS if u.unit.startswith("mission/")}) == 2
    engine = make_engine(settings.sqlalchemy_url)
    for (user, old), (_, new) in zip(first, second, strict=True):
        assert users.check_api_key(engine, old).failure == "revoked key"
        principal = users.check_api_key(engine, new).principal
        assert (
            principal is not None
            and principal.user_id == user.user_id
            and principal.clearance == user.clearance
        )
    engine.dispose()


def test_through_a_running_server(data_dir: Path, tmp_path: Path) -> None:
    """Keys over real HTTP, and `--as` sent to the server (which owns the store) by the CLI."""
    served = tmp_path / "served"
    shutil.copytree(data_dir, served)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "KMS_DATA_DIR": str(served), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "kms.cli.main", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail((tmp_path / "serve.log").read_text()[-2000:])

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "kms.cli.main", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )

        key = run("keys", "create", "alice").stdout.strip()  # the registry is shared with the server
        body = {"query": "hồ sơ bảo hộ", "mode": "sparse"}
        assert httpx.post(f"{base}/api/v1/search", json=body).status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401
        found = httpx.post(f"{base}/api/v1/search", json=body, headers={"authorization": f"Bearer {key}"})
        assert {h["doc_id"] for h in found.json()["results"]} == {"c-public", "c-consular"}
        assert found.headers["cache-control"] == "no-store"

        result = run("search", "hồ sơ bảo hộ", "--mode", "sparse", "--json", "--as", "bob")
        assert result.returncode == 0, result.stderr
        assert {h["doc_id"] for h in json.loads(result.stdout)["results"]} == {"c-public", "c-tokyo"}
        assert run("show", "c-consular", "--as", "bob").returncode == 4
        assert run("show", "c-consular", "--as", "alice").returncode == 0
        assert run("show", "c-consular", "--as", "nobody").returncode == 2
        with httpx.Client(
            base_url=base, headers={"authorization": f"Bearer {key}", "x-kms-as": "bob"}
        ) as client:
            assert client.get("/api/v1/me").status_code == 403  # only the operator may act as someone
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    with sessions_for(served)() as session:
        actors = {r.actor for r in audit.records(session, action="search")}
    assert "alice" in actors and f"{operator_name()} as bob" in actors
