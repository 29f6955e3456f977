"""HQ's side of replication: the per-node feed, bundles, pushes from missions, reconcile, federation.

Every method takes the peer's node id as proven by its TLS certificate (kms/network/listener.py);
nothing here reads an identity from a message it did not verify.

The feed for node N after position (log, epoch, seq): HQ's change log compacted to each
document's latest change, and for each document its state now:
- N may hold it (ceiling, allow list; kms/network/nodes.py) → an `upsert` naming the content bundle;
- N may not, but HQ offered it to N before (`replication_sent`) → a `delete`;
- otherwise nothing: N never learns the document exists.
Documents that came from N are never sent back to it. Each change is signed for N alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from sqlalchemy import delete, select

from kms.db.models import DocumentRow
from kms.db.network_models import PeerRow, SentRow
from kms.domain import SearchQuery
from kms.errors import Conflict, Forbidden, InvalidInput, ModelMismatch
from kms.network import bundle as bundles
from kms.network import changes
from kms.network import state as peer_state
from kms.network.apply import apply_delete, apply_upsert
from kms.network.bundle import canonical, sha256_hex
from kms.network.envelope import Change, ChangeRejected, check_change, unseal, unseal_assertion
from kms.network.node import NodeContext
from kms.network.nodes import NodeSpec, cap_to_node, node_may_hold, user_at_node
from kms.network.pki import cert_pem, fingerprint
from kms.search import SearchService
from kms.security import audit, users

log = logging.getLogger(__name__)
FEED_LIMIT = 500
BUNDLE_BUDGET = 32 * 2**20  # bytes of bundles per response (at least one bundle is always sent)


@dataclasses.dataclass(frozen=True)
class Peer:
    node_id: str
    cert: x509.Certificate
    spec: NodeSpec


class Hub:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.services = node.services
        self.search_service = SearchService(node.services)
        self._nonces: dict[str, float] = {}
        self._nonce_lock = threading.Lock()

    # ---- who is asking ---------------------------------------------------------------------------
    def peer(self, node_id: str, cert: x509.Certificate) -> Peer:
        """A configured, enabled mission with (if pinned) exactly the pinned certificate."""
        spec = self.node.network().node(node_id)
        if spec is None or node_id == self.node.node_id:
            raise Forbidden(f"{node_id!r} is not an enabled node in nodes.yaml")
        if spec.cert_sha256 and spec.cert_sha256 != fingerprint(cert):
            raise Forbidden(f"{node_id!r} presented a certificate other than the pinned one")
        with self.services.sessions() as session:
            row = peer_state.peer_row(session, node_id)
            row.last_seen_ts = time.time()
            session.commit()
        return Peer(node_id=node_id, cert=cert, spec=spec)

    def _audit(self, peer: str, action: str, target: str | None, **detail: Any) -> None:
        audit.append(
            self.services.sessions, actor=f"node:{peer}", action=action, target=target, detail=detail
        )

    def _check_model(self, model: str, dim: int) -> None:
        mine = self.node.model()
        if (model, dim) != mine:
            raise ModelMismatch(
                f"this node's index uses {model!r} ({dim} dims) but HQ's uses {mine[0]!r} ({mine[1]} dims): "
                "every node must run the same KMS_EMBEDDER; change it and run `kms reindex`"
            )

    # ---- HQ -> mission: the feed -------------------------------------------------------------------
    def feed(
        self, peer: Peer, *, log_id: str, epoch: int, seq: int, limit: int, model: str, dim: int
    ) -> dict[str, Any]:
        self._check_model(model, dim)
        limit = max(1, min(limit, FEED_LIMIT))
        node = peer.spec
        classification = self.services.classification
        with self.services.sessions() as session:
            head = changes.ensure_log(session)
            row = peer_state.peer_row(session, peer.node_id)
            config_hash = node.config_hash()
            if row.config_hash != config_hash:
                if row.config_hash:  # what the node may hold changed: restart its feed from the top
                    row.epoch += 1
                row.config_hash = config_hash
            if log_id == head.log_id and (epoch > row.epoch or (epoch == row.epoch and seq > head.seq)):
                # HQ's state is older than the node's position (HQ was restored): restart past it
                row.epoch = max(row.epoch, epoch) + 1
            start = seq if (log_id == head.log_id and epoch == row.epoch) else 0
            if start:
                self._acknowledged(session, row, epoch, start)
            pending = changes.compacted(session, start, limit=limit)
            docs = {
                d.doc_id: d
                for d in session.scalars(
                    select(DocumentRow).where(DocumentRow.doc_id.in_([p.doc_id for p in pending]))
                )
            }
            sent = {
                s.doc_id: s
                for s in session.scalars(
                    select(SentRow).where(
                        SentRow.peer == peer.node_id, SentRow.doc_id.in_([p.doc_id for p in pending])
                    )
                )
            }
            epoch_now = row.epoch
            session.commit()
        out: list[dict[str, str]] = []
        listed: list[list[Any]] = []
        next_seq, error = start, None
        model_now, dim_now = self.node.model()
        for item in pending:
            doc = docs.get(item.doc_id)
            base = Change(
                origin=self.node.node_id,
                target=peer.node_id,
                log=head.log_id,
                epoch=epoch_now,
                seq=item.seq,
                kind="delete",
                doc_id=item.doc_id,
                version=doc.version if doc is not None else 0,
                ts=time.time(),
            )
            if doc is not None and doc.origin_node == peer.node_id:
                next_seq = item.seq  # its own document: the node is the author, never echo it back
                continue
            if (
                doc is not None
                and doc.status == "indexed"
                and node_may_hold(node, classification, doc.classification, doc.allow)
            ):
                try:
                    sha, size = self.node.ensure_bundle(doc)
                except bundles.StaleContent as exc:
                    error = f"{item.doc_id}: {exc} (retry later; if it persists run `kms reindex`)"
                    break
                change = dataclasses.replace(
                    base,
                    kind="upsert",
                    classification=doc.classification,
                    allow=list(doc.allow or []),
                    content_sha256=sha,
                    content_bytes=size,
                    model=model_now,
                    dim=dim_now,
                )
                sent_row = sent.get(item.doc_id)
                if sent_row is None:
                    sent_row = SentRow(peer=peer.node_id, doc_id=item.doc_id, version=doc.version)
                    sent[item.doc_id] = sent_row
                sent_row.version, sent_row.delete_seq = doc.version, None
            elif item.doc_id in sent:
                change = base
                sent[item.doc_id].delete_seq = item.seq
            else:
                next_seq = item.seq  # never offered to this node: it learns nothing about it
                continue
            out.append(change.seal(self.node.key))
            listed.append([change.seq, change.doc_id, change.kind, change.version])
            next_seq = item.seq
        with self.services.sessions() as session:
            for sent_row in sent.values():
                session.merge(sent_row)
            row = peer_state.peer_row(session, peer.node_id)
            peer_state.bump(row, changes_out=len(out))
            backlog, oldest = changes.backlog(session, next_seq)
            session.commit()
        if listed:
            self._audit(peer.node_id, "replication.serve", peer.node_id, epoch=epoch_now, changes=listed)
        return {
            "log": head.log_id,
            "epoch": epoch_now,
            "changes": out,
            "next_seq": next_seq,
            "more": error is None and len(pending) == limit,
            "head": head.seq,
            "pending": backlog,
            "oldest_pending_ts": oldest,
            "page_oldest_ts": min((p.created_ts for p in pending), default=None),
            "signer": self.node.node_id,
            "signer_cert": cert_pem(self.node.cert),
            "error": error,
        }

    def _acknowledged(self, session: Any, row: PeerRow, epoch: int, seq: int) -> None:
        """The node applied everything up to `seq`: withdrawals up to there are done."""
        head = changes.head(session)
        if (row.pull_log, row.pull_epoch, row.pull_seq) != (head.log_id, epoch, seq):
            row.pull_log, row.pull_epoch, row.pull_seq = head.log_id, epoch, seq
        session.execute(
            delete(SentRow).where(
                SentRow.peer == row.peer, SentRow.delete_seq.is_not(None), SentRow.delete_seq <= seq
            )
        )

    def ack(self, peer: Peer, *, log_id: str, epoch: int, seq: int) -> dict[str, Any]:
        with self.services.sessions() as session:
            head = changes.head(session)
            row = peer_state.peer_row(session, peer.node_id)
            if log_id == head.log_id and epoch == row.epoch and seq <= head.seq:
                self._acknowledged(session, row, epoch, seq)
                row.last_sync_ts = time.time()
            session.commit()
        return {"acked": f"{epoch}:{seq}"}

    def bundles(self, peer: Peer, shas: Sequence[str]) -> tuple[list[str], list[bytes]]:
        """The requested bundles the node may hold right now (others are silently left out)."""
        served: list[str] = []
        blobs: list[bytes] = []
        size = 0
        classification = self.services.classification
        for sha in dict.fromkeys(shas):
            record = self.node.bundle_row(sha)
            doc = self.node.document(record.doc_id) if record is not None else None
            if (
                record is None
                or doc is None
                or doc.status != "indexed"
                or doc.version != record.version
                or doc.origin_node == peer.node_id
                or not node_may_hold(peer.spec, classification, doc.classification, doc.allow)
            ):
                continue
            blob = self.node.bundles.get(sha)
            if blob is None:
                continue
            if blobs and size + len(blob) > BUNDLE_BUDGET:
                break
            served.append(sha)
            blobs.append(blob)
            size += len(blob)
        with self.services.sessions() as session:
            peer_state.bump(peer_state.peer_row(session, peer.node_id), bytes_out=size)
            session.commit()
        return served, blobs

    # ---- mission -> HQ: pushes -------------------------------------------------------------------
    def push(self, peer: Peer, header: dict[str, Any], blobs: list[bytes], body_bytes: int) -> dict[str, Any]:
        """Apply a mission's own changes in order; each is verified against its certificate."""
        sealed = header.get("changes")
        listed = header.get("bundles")
        if not isinstance(sealed, list) or not isinstance(listed, list) or len(listed) != len(blobs):
            raise InvalidInput("push header must list changes and one sha per bundle frame")
        by_sha = dict(zip((str(s) for s in listed), blobs, strict=True))
        try:
            received = [unseal(item, peer.cert) for item in sealed]  # all or nothing: one forgery stops it
        except ChangeRejected as exc:
            self._reject(peer.node_id, exc.reason, str(exc))
            raise
        results: list[dict[str, Any]] = []
        model, dim = self.node.model()
        for change in received:
            with self.services.sessions() as session:
                position = peer_state.push_position(peer_state.peer_row(session, peer.node_id))
            try:
                check_change(change, origin=peer.node_id, target=self.node.node_id, position=position)
            except ChangeRejected as exc:
                if exc.reason == "replay" and change.log == position.log:
                    results.append({"seq": change.seq, "doc_id": change.doc_id, "status": "duplicate"})
                    continue  # a resend after a lost acknowledgement: already applied, not again
                self._reject(peer.node_id, exc.reason, str(exc))
                raise
            new_position = dataclasses.replace(position)
            if change.log != position.log:
                new_position.seen_logs = [*position.seen_logs, change.log]
            new_position.log, new_position.seq = change.log, change.seq

            def advance(session: Any, target: Any = new_position) -> None:
                peer_state.set_push(peer_state.peer_row(session, peer.node_id), target)

            try:
                if change.kind == "upsert":
                    status = self._apply_pushed(peer, change, by_sha, model, dim, advance)
                else:
                    status = apply_delete(
                        self.services,
                        change.doc_id,
                        source=peer.node_id,
                        position=advance,
                        purge=False,
                        record=True,
                    )
            except (Conflict, bundles.BadBundle, ModelMismatch) as exc:
                status = "rejected"
                with self.services.sessions() as session:
                    row = peer_state.peer_row(session, peer.node_id)
                    peer_state.reject(row, "conflict" if isinstance(exc, Conflict) else "content", str(exc))
                    if not isinstance(exc, ModelMismatch | bundles.BadBundle):
                        advance(session)  # a conflict never resolves by retrying: move past it
                    session.commit()
                self._audit(
                    peer.node_id, "replication.reject", change.doc_id, seq=change.seq, reason=str(exc)[:300]
                )
                results.append(
                    {"seq": change.seq, "doc_id": change.doc_id, "status": status, "reason": str(exc)}
                )
                if isinstance(exc, ModelMismatch | bundles.BadBundle):
                    break
                continue
            self._audit(
                peer.node_id,
                "replication.apply",
                change.doc_id,
                seq=change.seq,
                kind=change.kind,
                version=change.version,
                status=status,
            )
            results.append({"seq": change.seq, "doc_id": change.doc_id, "status": status})
        with self.services.sessions() as session:
            row = peer_state.peer_row(session, peer.node_id)
            applied = sum(1 for r in results if r["status"] not in ("duplicate", "rejected"))
            peer_state.bump(row, changes_in=applied, bytes_in=body_bytes)
            session.commit()
            acked = {"log": row.push_log, "seq": row.push_seq}
        return {"results": results, "acked": acked}

    def _apply_pushed(
        self, peer: Peer, change: Change, by_sha: dict[str, bytes], model: str, dim: int, advance: Any
    ) -> str:
        blob = by_sha.get(change.content_sha256 or "")
        parsed = None
        if blob is not None:
            raw = bundles.decompress(blob)
            parsed = bundles.parse(
                raw,
                expected_sha256=change.content_sha256 or "",
                sparse_names=set(self.services.layout.sparse),
            )
            if parsed.meta.get("origin_node") != peer.node_id:
                raise Conflict(
                    f"{change.doc_id} names origin {parsed.meta.get('origin_node')!r}, not {peer.node_id!r}"
                )
        return apply_upsert(self.services, change, parsed, source=peer.node_id, position=advance, record=True)

    def _reject(self, peer: str, reason: str, message: str) -> None:
        with self.services.sessions() as session:
            peer_state.reject(peer_state.peer_row(session, peer), reason, message)
            session.commit()
        self._audit(peer, "replication.reject", None, reason=reason, message=message[:300])

    # ---- anti-entropy ------------------------------------------------------------------------------
    def reconcile(self, peer: Peer, docs: Sequence[tuple[str, int]]) -> dict[str, Any]:
        """Of the documents the node says it holds from HQ, which must go (it learns nothing else)."""
        classification = self.services.classification
        ids = [doc_id for doc_id, _version in docs]
        keep: set[str] = set()
        with self.services.sessions() as session:
            for start in range(0, len(ids), 500):
                for row in session.scalars(
                    select(DocumentRow).where(DocumentRow.doc_id.in_(ids[start : start + 500]))
                ):
                    if (
                        row.status == "indexed"
                        and row.origin_node != peer.node_id
                        and node_may_hold(peer.spec, classification, row.classification, row.allow)
                    ):
                        keep.add(row.doc_id)
            expected = sum(
                1
                for level, allow, origin in session.execute(
                    select(DocumentRow.classification, DocumentRow.allow, DocumentRow.origin_node).where(
                        DocumentRow.status == "indexed"
                    )
                )
                if origin != peer.node_id and node_may_hold(peer.spec, classification, level, allow)
            )
        withdraw = [doc_id for doc_id in ids if doc_id not in keep]
        if withdraw:
            self._audit(peer.node_id, "replication.reconcile", peer.node_id, withdraw=withdraw)
        return {"delete": withdraw, "expected": expected}

    # ---- federated search --------------------------------------------------------------------------
    def federated_search(self, peer: Peer, body: dict[str, Any]) -> dict[str, Any]:
        """Search as the user the mission vouches for, under HQ's own record of that user."""
        claims = unseal_assertion(
            body.get("identity"), peer.cert, node=peer.node_id, target=self.node.node_id
        )
        nonce = str(claims.get("nonce") or "")
        now = time.time()
        with self._nonce_lock:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            if not nonce or nonce in self._nonces:
                raise ChangeRejected("replay", "assertion was already used")
            self._nonces[nonce] = now + 600
        query_body = body.get("query")
        if not isinstance(query_body, dict) or claims.get("query_sha256") != sha256_hex(
            canonical(query_body)
        ):
            raise ChangeRejected("forged", "the assertion does not cover this query")
        user_id = str(claims.get("user_id") or "")
        with self.services.sessions() as session:
            principal = users.active_principal(session, user_id)
        if principal is None or not user_at_node(principal, peer.spec):
            self._audit(peer.node_id, "search.federated", user_id, outcome="refused")
            return {
                "results": [],
                "total": 0,
                "facets": {},
                "refused": "user unknown at HQ or not at this node",
            }
        capped = cap_to_node(principal, peer.spec, self.services.classification)
        query = _query(query_body)
        result = self.search_service.search(capped, query)
        audit.append(
            self.services.sessions,
            actor=f"{user_id} via node:{peer.node_id}",
            action="search",
            target=None,
            detail={
                "query": query.query,
                "mode": query.mode,
                "k": query.k,
                "total": result.total,
                "results": [hit.doc_id for hit in result.results],
                "node": peer.node_id,
                "clearance_capped_to": capped.clearance,
            },
        )
        with self.services.sessions() as session:
            peer_state.bump(peer_state.peer_row(session, peer.node_id), federated_searches=1)
            session.commit()
        # The API's own response shape: what a user would get from HQ directly (this node's timings
        # and anything else internal to the result are not part of it).
        from kms.api.schemas import SearchOut

        return SearchOut.model_validate(result, from_attributes=True).model_dump(mode="json")


def _query(body: dict[str, Any]) -> SearchQuery:
    from kms.api.schemas import SearchIn

    try:
        parsed = SearchIn.model_validate(body)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    query = parsed.to_domain()
    return dataclasses.replace(query, filters=dataclasses.replace(query.filters, doc_ids=None))
