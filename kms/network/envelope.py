"""Signed changes and signed user assertions.

A change travels as `{"envelope": <canonical JSON text>, "sig": <base64 ECDSA P-256 / SHA-256>}`.
The signature covers a domain prefix and the exact envelope text, which names the author node
(`origin`), the one node it is for (`target`), the author's log id, the target's feed epoch, the
sequence number, the document's access fields and the sha256 of its content bundle. So:
- a change altered in any field, or whose bundle was swapped, fails verification (forgery);
- a change for another node fails the target check (cross-node replay);
- a change at or below the receiver's position, or from an old log, is refused (replay).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kms.network import pki
from kms.network.bundle import canonical

CHANGE_PREFIX = b"kms-change-v1\n"
ASSERTION_PREFIX = b"kms-assertion-v1\n"
MAX_CLOCK_SKEW_S = 120.0


class ChangeRejected(pki.PeerRejected):
    """A change failed a check; `reason` is one word for metrics (forged, replay, target, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Change:
    origin: str
    target: str
    log: str
    epoch: int
    seq: int
    kind: str  # upsert | delete
    doc_id: str
    version: int
    classification: str | None = None
    allow: list[str] = field(default_factory=list)
    content_sha256: str | None = None
    content_bytes: int = 0
    model: str | None = None
    dim: int = 0
    ts: float = 0.0

    def seal(self, key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
        text = canonical({"v": 1, **asdict(self)}).decode("utf-8")
        return {"envelope": text, "sig": pki.sign(key, CHANGE_PREFIX + text.encode("utf-8"))}


def unseal(sealed: Any, signer: x509.Certificate) -> Change:
    """Verify the signature with the author's certificate, then decode (nothing is trusted before)."""
    if not isinstance(sealed, dict) or not isinstance(sealed.get("envelope"), str):
        raise ChangeRejected("malformed", "a change must be {envelope, sig}")
    text, signature = sealed["envelope"], sealed.get("sig")
    if not isinstance(signature, str):
        raise ChangeRejected("malformed", "a change must be signed")
    try:
        pki.verify(signer, CHANGE_PREFIX + text.encode("utf-8"), signature)
    except pki.PeerRejected as exc:
        raise ChangeRejected("forged", "change signature does not verify") from exc
    try:
        data = json.loads(text)
        if data.pop("v", None) != 1:
            raise ValueError("unknown envelope version")
        change = Change(**data)
    except (TypeError, ValueError) as exc:
        raise ChangeRejected("malformed", f"malformed change: {exc}") from exc
    if change.kind not in ("upsert", "delete"):
        raise ChangeRejected("malformed", f"unknown change kind {change.kind!r}")
    return change


@dataclass
class Position:
    """Where a receiver is in an author's log: (log id, epoch, seq), plus every log id it accepted."""

    log: str = ""
    epoch: int = 0
    seq: int = 0
    seen_logs: list[str] = field(default_factory=list)


def check_change(change: Change, *, origin: str, target: str, position: Position) -> None:
    """Who wrote it, whom it is for, and that it is new; raises ChangeRejected otherwise."""
    if change.origin != origin:
        raise ChangeRejected("origin", f"change from {change.origin!r}, expected {origin!r}")
    if change.target != target:
        raise ChangeRejected("target", f"change addressed to {change.target!r}, not to {target!r}")
    if change.log == position.log:
        if (change.epoch, change.seq) <= (position.epoch, position.seq):
            raise ChangeRejected(
                "replay", f"change {change.epoch}:{change.seq} is not after {position.epoch}:{position.seq}"
            )
    elif change.log in position.seen_logs:
        raise ChangeRejected("replay", f"change from an earlier log {change.log!r} of {origin!r}")


def advance(position: Position, log: str, epoch: int, seq: int) -> Position:
    seen = list(position.seen_logs)
    if log and log not in seen:
        seen.append(log)
    return Position(log=log, epoch=epoch, seq=seq, seen_logs=seen)


# ---- user assertions (federated search) -------------------------------------------------------
def seal_assertion(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any]) -> dict[str, str]:
    text = canonical({"v": 1, **claims}).decode("utf-8")
    return {"assertion": text, "sig": pki.sign(key, ASSERTION_PREFIX + text.encode("utf-8"))}


def unseal_assertion(
    sealed: Any, signer: x509.Certificate, *, node: str, target: str, now: float | None = None
) -> dict[str, Any]:
    """Verify a node's statement about which user asks; checks signer, audience and freshness."""
    if not isinstance(sealed, dict):
        raise ChangeRejected("malformed", "an assertion must be {assertion, sig}")
    text, signature = sealed.get("assertion"), sealed.get("sig")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise ChangeRejected("malformed", "an assertion must be {assertion, sig}")
    try:
        pki.verify(signer, ASSERTION_PREFIX + text.encode("utf-8"), signature)
    except pki.PeerRejected as exc:
        raise ChangeRejected("forged", "assertion signature does not verify") from exc
    claims = json.loads(text)
    if not isinstance(claims, dict) or claims.get("v") != 1:
        raise ChangeRejected("malformed", "unknown assertion version")
    if claims.get("node") != node or claims.get("target") != target:
        raise ChangeRejected("target", "assertion is for another node pair")
    issued = claims.get("iat")
    current = time.time() if now is None else now
    if not isinstance(issued, int | float) or abs(current - float(issued)) > MAX_CLOCK_SKEW_S:
        raise ChangeRejected("stale", "assertion is too old or from the future")
    return claims
