"""The network CA, node certificates and their files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.errors import ConfigError
from kms.network import pki

TOKYO = "mission/jp-tokyo"


@pytest.fixture
def ca(tmp_path: Path) -> pki.NodePaths:
    paths = pki.NodePaths(tmp_path / "hq")
    pki.init_ca(paths)
    return paths


def test_keys_are_written_0600_and_the_ca_is_never_replaced_silently(
    ca: pki.NodePaths, tmp_path: Path
) -> None:
    assert ca.ca_key.stat().st_mode & 0o777 == 0o600
    out = pki.issue_node_cert(ca, TOKYO, tmp_path / "tokyo")
    assert (out / "node.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.crt").read_bytes() == ca.ca_cert.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        pki.init_ca(ca)


def test_a_node_certificate_names_its_node_three_ways_and_chains_to_the_ca(
    ca: pki.NodePaths, tmp_path: Path
) -> None:
    out = pki.issue_node_cert(ca, TOKYO, tmp_path / "tokyo")
    cert = pki.load_cert(out / "node.crt")
    assert pki.cert_node_id(cert) == TOKYO
    pki.verify_issued_by(cert, pki.load_cert(ca.ca_cert), node_id=TOKYO)
    with pytest.raises(pki.PeerRejected):
        pki.verify_issued_by(cert, pki.load_cert(ca.ca_cert), node_id="hq")  # not HQ's certificate
    with pytest.raises(pki.PeerRejected):  # the CA itself cannot act as a node
        pki.verify_issued_by(pki.load_cert(ca.ca_cert), pki.load_cert(ca.ca_cert), node_id="hq")


def test_a_certificate_from_another_ca_is_rejected(ca: pki.NodePaths, tmp_path: Path) -> None:
    other = pki.NodePaths(tmp_path / "other")
    pki.init_ca(other)
    out = pki.issue_node_cert(other, TOKYO, tmp_path / "tokyo")
    with pytest.raises(pki.PeerRejected, match="not issued by the network CA"):
        pki.verify_issued_by(pki.load_cert(out / "node.crt"), pki.load_cert(ca.ca_cert), node_id=TOKYO)


def test_signatures_bind_the_exact_bytes_and_the_key(ca: pki.NodePaths, tmp_path: Path) -> None:
    tokyo = pki.issue_node_cert(ca, TOKYO, tmp_path / "tokyo")
    paris = pki.issue_node_cert(ca, "mission/fr-paris", tmp_path / "paris")
    key = pki.load_private_key(tokyo / "node.key")
    signature = pki.sign(key, b"payload")
    pki.verify(pki.load_cert(tokyo / "node.crt"), b"payload", signature)
    with pytest.raises(pki.PeerRejected):
        pki.verify(pki.load_cert(tokyo / "node.crt"), b"payload!", signature)
    with pytest.raises(pki.PeerRejected):
        pki.verify(pki.load_cert(paris / "node.crt"), b"payload", signature)


def test_a_key_readable_by_others_is_refused(ca: pki.NodePaths, tmp_path: Path) -> None:
    out = pki.issue_node_cert(ca, TOKYO, tmp_path / "tokyo")
    (out / "node.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        pki.load_private_key(out / "node.key")


@pytest.mark.parametrize("bad", ["", "../etc", "mission/", "/abs", "a b", "mission/../hq"])
def test_invalid_node_ids_get_no_certificate(ca: pki.NodePaths, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid node id"):
        pki.issue_node_cert(ca, bad, tmp_path / "x")


def test_peer_identity_needs_every_name_to_agree() -> None:
    uri, dns = pki.URI_PREFIX + TOKYO, pki.dns_name(TOKYO)
    good = {"subject": ((("commonName", TOKYO),),), "subjectAltName": (("URI", uri), ("DNS", dns))}
    assert pki.peer_node_id(good) == TOKYO
    assert pki.peer_node_id(None) is None and pki.peer_node_id({}) is None
    other_cn = {**good, "subject": ((("commonName", "hq"),),)}
    assert pki.peer_node_id(other_cn) is None
    extra_name = {**good, "subjectAltName": (("URI", uri), ("DNS", dns), ("DNS", pki.dns_name("hq")))}
    assert pki.peer_node_id(extra_name) is None


def test_the_cli_creates_the_ca_and_issues_certificates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kms.cli.main import app

    runner = CliRunner()
    env = {"KMS_DATA_DIR": str(tmp_path / "hq"), "KMS_NODE_ROLE": "hq", "KMS_NODE_ID": "hq"}
    assert runner.invoke(app, ["network", "init-ca"], env=env).exit_code == 0
    assert runner.invoke(app, ["network", "init-ca"], env=env).exit_code == 1  # never silently replaced
    assert runner.invoke(app, ["network", "issue-cert", "hq"], env=env).exit_code == 0
    own = tmp_path / "hq" / "network" / "node"
    assert pki.cert_node_id(pki.load_cert(own / "node.crt")) == "hq"  # its own identity, in place
    out = tmp_path / "for-tokyo"
    assert runner.invoke(app, ["network", "issue-cert", TOKYO, "--out", str(out)], env=env).exit_code == 0
    assert (out / "node.key").stat().st_mode & 0o777 == 0o600
    assert runner.invoke(app, ["network", "issue-cert", "../x"], env=env).exit_code == 2
    status = runner.invoke(app, ["network", "status", "--json"], env=env)
    assert status.exit_code == 0 and '"role": "hq"' in status.stdout
