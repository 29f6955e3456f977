"""Signed changes and user assertions: forgery, replay and cross-node replay are refused."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from kms.network import pki
from kms.network.envelope import (
    Change,
    ChangeRejected,
    Position,
    advance,
    check_change,
    seal_assertion,
    unseal,
    unseal_assertion,
)

TOKYO, PARIS = "mission/jp-tokyo", "mission/fr-paris"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pki.NodePaths]:
    root: Path = tmp_path_factory.mktemp("keys")
    ca = pki.NodePaths(root / "hq")
    pki.init_ca(ca)
    out = {}
    for node in ("hq", TOKYO, PARIS):
        out[node] = pki.NodePaths(root / node.replace("/", "_"))
        pki.issue_node_cert(ca, node, out[node].node_dir)
    return out


def key(keys: dict[str, pki.NodePaths], node: str) -> object:
    return pki.load_private_key(keys[node].node_key)


def cert(keys: dict[str, pki.NodePaths], node: str) -> object:
    return pki.load_cert(keys[node].node_cert)


CHANGE = Change(
    origin="hq",
    target=TOKYO,
    log="log1",
    epoch=1,
    seq=42,
    kind="upsert",
    doc_id="nq-12",
    version=3,
    classification="internal",
    allow=["all-staff"],
    content_sha256="ab" * 32,
    content_bytes=100,
    model="m",
    dim=384,
)


def test_a_sealed_change_round_trips(keys: dict[str, pki.NodePaths]) -> None:
    sealed = CHANGE.seal(key(keys, "hq"))  # type: ignore[arg-type]
    assert unseal(sealed, cert(keys, "hq")) == CHANGE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"classification":"internal"', '"classification":"public"'),
        ('"allow":["all-staff"]', '"allow":["all-staff","unit:x"]'),
        ('"seq":42', '"seq":43'),
        ('"target":"mission/jp-tokyo"', '"target":"mission/fr-paris"'),
        ('"content_sha256":"abab', '"content_sha256":"cdab'),
    ],
)
def test_any_alteration_after_signing_is_a_forgery(
    keys: dict[str, pki.NodePaths], old: str, new: str
) -> None:
    sealed = CHANGE.seal(key(keys, "hq"))  # type: ignore[arg-type]
    assert old in sealed["envelope"]
    altered = dict(sealed, envelope=sealed["envelope"].replace(old, new))
    with pytest.raises(ChangeRejected) as caught:
        unseal(altered, cert(keys, "hq"))  # type: ignore[arg-type]
    assert caught.value.reason == "forged"


def test_a_change_signed_by_another_node_is_a_forgery(keys: dict[str, pki.NodePaths]) -> None:
    sealed = CHANGE.seal(key(keys, PARIS))  # type: ignore[arg-type]
    with pytest.raises(ChangeRejected, match="signature"):
        unseal(sealed, cert(keys, "hq"))  # type: ignore[arg-type]
    with pytest.raises(ChangeRejected):
        unseal({"envelope": sealed["envelope"]}, cert(keys, "hq"))  # type: ignore[arg-type]


def test_positions_refuse_replays_and_cross_node_replays() -> None:
    here = Position(log="log1", epoch=1, seq=41, seen_logs=["log0", "log1"])
    check_change(CHANGE, origin="hq", target=TOKYO, position=here)  # the next one: fine
    cases = {
        "replay": dataclasses.replace(CHANGE, seq=41),
        "target": dataclasses.replace(CHANGE, target=PARIS),
        "origin": dataclasses.replace(CHANGE, origin=PARIS),
    }
    for reason, change in cases.items():
        with pytest.raises(ChangeRejected) as caught:
            check_change(change, origin="hq", target=TOKYO, position=here)
        assert caught.value.reason == reason
    with pytest.raises(ChangeRejected, match="earlier log"):
        check_change(
            dataclasses.replace(CHANGE, log="log0", seq=99), origin="hq", target=TOKYO, position=here
        )
    with pytest.raises(ChangeRejected):  # an older epoch of the same log, whatever its seq
        check_change(
            dataclasses.replace(CHANGE, epoch=0, seq=10_000), origin="hq", target=TOKYO, position=here
        )
    # A new epoch (HQ restarted this node's feed) or a brand-new log starts over from its beginning.
    check_change(dataclasses.replace(CHANGE, epoch=2, seq=1), origin="hq", target=TOKYO, position=here)
    check_change(dataclasses.replace(CHANGE, log="log2", seq=1), origin="hq", target=TOKYO, position=here)
    assert advance(here, "log2", 1, 1).seen_logs == ["log0", "log1", "log2"]


def test_user_assertions_are_bound_to_the_node_pair_and_fresh(keys: dict[str, pki.NodePaths]) -> None:
    claims = {"node": TOKYO, "target": "hq", "user_id": "alice", "iat": int(time.time()), "nonce": "n1"}
    sealed = seal_assertion(key(keys, TOKYO), claims)  # type: ignore[arg-type]
    assert unseal_assertion(sealed, cert(keys, TOKYO), node=TOKYO, target="hq")["user_id"] == "alice"  # type: ignore[arg-type]
    with pytest.raises(ChangeRejected):  # Paris cannot replay Tokyo's statement as its own
        unseal_assertion(sealed, cert(keys, PARIS), node=PARIS, target="hq")  # type: ignore[arg-type]
    with pytest.raises(ChangeRejected):
        unseal_assertion(sealed, cert(keys, TOKYO), node=TOKYO, target="hq", now=time.time() + 600)  # type: ignore[arg-type]
    raised = dict(sealed, assertion=sealed["assertion"].replace('"alice"', '"carol"'))
    with pytest.raises(ChangeRejected, match="signature"):
        unseal_assertion(raised, cert(keys, TOKYO), node=TOKYO, target="hq")  # type: ignore[arg-type]
    # A change signature is not an assertion signature (domain separation) and vice versa.
    change = CHANGE.seal(key(keys, TOKYO))  # type: ignore[arg-type]
    with pytest.raises(ChangeRejected):
        unseal_assertion(
            {"assertion": change["envelope"], "sig": change["sig"]},
            cert(keys, TOKYO),
            node=TOKYO,
            target="hq",
        )  # type: ignore[arg-type]
