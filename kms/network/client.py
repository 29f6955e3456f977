"""A mission's side of replication: push its own changes to HQ, pull HQ's feed, reconcile.

Store-and-forward: a mission's own changes wait in its change log (durable, in the registry) until
HQ acknowledges them; `push_seq` moves only on HQ's answer, so a cut link resends, and HQ skips what
it already applied. The feed is applied change by change, each in one transaction with the new
position, so a cut anywhere resumes after the last applied change. Fetched bundles are verified
against their signed digest and spooled until applied, so a resumed transfer does not fetch them again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from kms.db.models import DocumentRow
from kms.db.network_models import ReceivedRow
from kms.errors import ConfigError, Conflict, KmsError
from kms.network import bundle as bundles
from kms.network import changes, pki, wire
from kms.network import state as peer_state
from kms.network.apply import NeedContent, apply_delete, apply_upsert, content_present
from kms.network.envelope import Change, ChangeRejected, Position, advance, check_change, unseal
from kms.network.node import NodeContext
from kms.security import audit

log = logging.getLogger(__name__)
PUSH_BATCH = 64
PUSH_BUDGET = 16 * 2**20
FEED_PAGE = 200
APPLY_GROUP = 16  # changes whose bundles are fetched together, then applied


class SyncFailed(KmsError):
    """A sync could not complete (HQ unreachable, refused, or sent something that failed a check)."""


@dataclass
class SyncReport:
    peer: str
    pushed: int = 0
    push_rejected: int = 0
    pulled: int = 0
    deleted: int = 0
    rejected: int = 0
    reconciled: int = 0
    expected: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    error: str | None = None
    unreachable: bool = False  # the error was the link (HQ did not answer), not a refusal
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class HqClient:
    """HTTPS to HQ with this node's certificate; the server must prove it is HQ (SNI + CA)."""

    def __init__(self, node: NodeContext, *, timeout: float = 60.0) -> None:
        settings = node.settings
        if not settings.hq_url:
            raise ConfigError("KMS_HQ_URL is not set: this node has no HQ to replicate with")
        self.hq = settings.hq_node_id
        self.http = httpx.Client(
            base_url=settings.hq_url,
            verify=pki.client_context(node.paths),
            timeout=httpx.Timeout(timeout, connect=10.0),
            trust_env=False,
        )
        self.extensions = {"sni_hostname": pki.dns_name(self.hq)}
        self.bytes_in = 0
        self.bytes_out = 0

    def _send(self, path: str, *, json: Any = None, content: bytes | None = None) -> httpx.Response:
        headers = {"content-type": wire.FRAMES_TYPE} if content is not None else None
        response = self.http.post(
            path, json=json, content=content, headers=headers, extensions=self.extensions
        )
        self.bytes_out += len(response.request.content or b"")
        self.bytes_in += len(response.content)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise SyncFailed(f"HQ answered {response.status_code} to {path}: {detail}")
        return response

    def post(self, path: str, body: Any) -> dict[str, Any]:
        data = self._send(path, json=body).json()
        if not isinstance(data, dict):
            raise SyncFailed(f"HQ sent a non-object to {path}")
        return data

    def post_frames(self, path: str, body: bytes) -> dict[str, Any]:
        return dict(self._send(path, content=body).json())

    def fetch(self, path: str, body: Any) -> tuple[dict[str, Any], list[bytes]]:
        return wire.unpack(self._send(path, json=body).content)

    def close(self) -> None:
        self.http.close()


class MissionSync:
    """One sync with HQ: push, pull, acknowledge, and reconcile when due."""

    def __init__(self, node: NodeContext, client: HqClient) -> None:
        self.node = node
        self.services = node.services
        self.client = client
        self.hq = client.hq
        self.report = SyncReport(peer=self.hq)
        self.model = node.model()  # what this node's index was built with: bundles must match it

    def _audit(self, action: str, target: str | None, **detail: Any) -> None:
        audit.append(
            self.services.sessions, actor=f"node:{self.hq}", action=action, target=target, detail=detail
        )

    # ---- push ---------------------------------------------------------------------------------
    def push(self) -> None:
        me = self.node.node_id
        while True:
            with self.services.sessions() as session:
                log_head = changes.ensure_log(session)
                row = peer_state.peer_row(session, self.hq)
                push_seq = row.push_seq if row.push_log in ("", log_head.log_id) else 0
                session.commit()
                pending = changes.compacted(session, push_seq, limit=PUSH_BATCH, origin=me, local_origin=True)
            if not pending:
                return
            sealed: list[dict[str, str]] = []
            shas: list[str] = []
            blobs: list[bytes] = []
            size = 0
            for item in pending:
                doc = self.node.document(item.doc_id)
                model, dim = self.node.model()
                base = Change(
                    origin=me,
                    target=self.hq,
                    log=log_head.log_id,
                    epoch=0,
                    seq=item.seq,
                    kind="delete",
                    doc_id=item.doc_id,
                    version=doc.version if doc is not None else 0,
                    ts=time.time(),
                )
                if doc is not None and doc.status == "indexed":
                    try:
                        sha, _size = self.node.ensure_bundle(doc)
                    except bundles.StaleContent:
                        break  # being rewritten right now: push up to here, the rest next round
                    blob = self.node.bundles.get(sha)
                    if blob is None:
                        break
                    if blobs and size + len(blob) > PUSH_BUDGET:
                        break
                    change = dataclasses.replace(
                        base,
                        kind="upsert",
                        classification=doc.classification,
                        allow=list(doc.allow or []),
                        content_sha256=sha,
                        content_bytes=len(blob),
                        model=model,
                        dim=dim,
                    )
                    shas.append(sha)
                    blobs.append(blob)
                    size += len(blob)
                else:
                    change = base
                sealed.append(change.seal(self.node.key))
            if not sealed:
                return
            answer = self.client.post_frames(
                f"{wire.API}/push", wire.pack({"changes": sealed, "bundles": shas}, blobs)
            )
            acked = answer.get("acked") or {}
            results = answer.get("results") or []
            with self.services.sessions() as session:
                row = peer_state.peer_row(session, self.hq)
                before = row.push_seq
                if acked.get("log") == log_head.log_id:
                    row.push_log, row.push_seq = log_head.log_id, int(acked.get("seq") or 0)
                applied = [r for r in results if r.get("status") not in ("duplicate", "rejected")]
                rejected = [r for r in results if r.get("status") == "rejected"]
                peer_state.bump(row, changes_out=len(applied), bytes_out=sum(len(b) for b in blobs))
                for item in rejected:
                    peer_state.reject(row, "refused_by_hq", f"{item.get('doc_id')}: {item.get('reason')}")
                advanced = row.push_seq > before
                session.commit()
            for item in results:
                self._audit(
                    "replication.push",
                    str(item.get("doc_id")),
                    seq=item.get("seq"),
                    status=item.get("status"),
                    reason=item.get("reason"),
                )
            self.report.pushed += len(applied)
            self.report.push_rejected += len(rejected)
            if not advanced:
                raise SyncFailed(
                    "HQ did not acknowledge the pushed changes: "
                    + "; ".join(f"{r.get('doc_id')}: {r.get('reason')}" for r in rejected)
                )

    # ---- pull ---------------------------------------------------------------------------------
    def pull(self) -> bool:
        """Apply HQ's feed up to its head; True when the position moved to a new log or epoch."""
        restarted = False
        model, dim = self.node.model()
        while True:
            with self.services.sessions() as session:
                row = peer_state.peer_row(session, self.hq)
                position = peer_state.pull_position(row)
                session.commit()
            page = self.client.post(
                f"{wire.API}/feed",
                {
                    "log": position.log,
                    "epoch": position.epoch,
                    "seq": position.seq,
                    "limit": FEED_PAGE,
                    "model": model,
                    "dim": dim,
                },
            )
            signer = self.node.peer_cert(str(page.get("signer_cert") or ""), self.hq)
            log_id, epoch = str(page.get("log") or ""), int(page.get("epoch") or 0)
            if log_id != position.log or epoch != position.epoch:
                if log_id == position.log and epoch < position.epoch:
                    raise SyncFailed(
                        f"HQ offered epoch {epoch}, older than {position.epoch}: refusing a replay"
                    )
                if log_id != position.log and log_id in position.seen_logs:
                    raise SyncFailed("HQ offered a log this node left behind: refusing a replay")
                restarted = position.log != ""
                position = advance(position, log_id, epoch, 0)
            with self.services.sessions() as session:  # what is still to apply, while applying it
                row = peer_state.peer_row(session, self.hq)
                row.remote_head = int(page.get("head") or 0)
                row.remote_pending = int(page.get("pending") or 0) + len(page.get("changes") or [])
                oldest = page.get("page_oldest_ts") or page.get("oldest_pending_ts")
                row.remote_oldest_ts = float(oldest) if oldest is not None else None
                row.last_seen_ts = time.time()
                session.commit()
            moved = self._apply_page(page, signer, position)
            with self.services.sessions() as session:
                row = peer_state.peer_row(session, self.hq)
                current = peer_state.pull_position(row)
                next_seq = int(page.get("next_seq") or 0)
                base = current if (current.log, current.epoch) == (log_id, epoch) else position
                if moved and next_seq >= base.seq:  # skipped changes up to next_seq are covered too
                    peer_state.set_pull(row, advance(base, log_id, epoch, next_seq))
                row.remote_head = int(page.get("head") or 0)
                row.remote_pending = int(page.get("pending") or 0)
                oldest = page.get("oldest_pending_ts")
                row.remote_oldest_ts = float(oldest) if oldest is not None else None
                row.last_seen_ts = time.time()
                session.commit()
            if page.get("error"):
                raise SyncFailed(f"HQ: {page['error']}")
            if not moved:
                raise SyncFailed("the feed did not move (see the last error)")
            if not page.get("more"):
                self.node.spool.clear()  # at the head: anything still spooled is no longer wanted here
                return restarted

    def _apply_page(self, page: dict[str, Any], signer: Any, start: Position) -> bool:
        """Verify every change first, fetch the missing bundles, then apply in order."""
        sealed = page.get("changes") or []
        if not isinstance(sealed, list):
            raise SyncFailed("malformed feed page")
        verified: list[Change] = []
        position = start
        for item in sealed:
            try:
                change = unseal(item, signer)
                check_change(change, origin=self.hq, target=self.node.node_id, position=position)
            except ChangeRejected as exc:
                self._rejected(exc.reason, str(exc), None)
                raise SyncFailed(f"refused a change from HQ: {exc}") from exc
            position = advance(position, change.log, change.epoch, change.seq)
            verified.append(change)
        for start_at in range(0, len(verified), APPLY_GROUP):  # on a slow link, progress commits often
            group = verified[start_at : start_at + APPLY_GROUP]
            needed = {c.seq for c in group if self._needs_content(c)}
            blobs = self._fetch_bundles([c for c in group if c.seq in needed])
            for change in group:
                if not self._apply(change, change.seq in needed, blobs):
                    return False  # stops at the first it cannot apply; the rest comes next round
        return True

    def _needs_content(self, change: Change) -> bool:
        if change.kind != "upsert" or not change.content_sha256:
            return False
        with self.services.sessions() as session:
            return not content_present(session, change, self.hq)

    def _fetch_bundles(self, changes_needing: list[Change]) -> dict[str, bytes]:
        """The bundles these changes need, verified against their signed digests (spooled ones reused)."""
        found: dict[str, bytes] = {}
        wanted: list[str] = []
        for change in changes_needing:
            sha = str(change.content_sha256)
            spooled = self.node.spool.get(sha)
            if spooled is not None:
                found[sha] = spooled
            else:
                wanted.append(sha)
        while wanted:
            header, blobs = self.client.fetch(f"{wire.API}/bundles", {"shas": wanted})
            served = [str(s) for s in header.get("shas") or []]
            if len(served) != len(blobs) or not set(served) <= set(wanted):
                raise SyncFailed("malformed bundle response")
            for sha, blob in zip(served, blobs, strict=True):
                if bundles.sha256_hex(bundles.decompress(blob)) != sha:
                    raise SyncFailed(f"bundle {sha[:12]} does not match its digest")
                found[sha] = blob
                self.node.spool.put(sha, blob, durable=False)  # a cut or a restart will not fetch it again
            if not served:
                break  # HQ withheld the rest (no longer eligible): their changes stop this page
            wanted = [sha for sha in wanted if sha not in served]
        return found

    def _ceiling_allows(self, change: Change) -> bool:
        """Defence in depth: never store above this node's own ceiling, whatever HQ sent."""
        spec = self.node.own_spec()
        if spec is None:
            return True
        classification = self.services.classification
        rank, ceiling = classification.rank(change.classification), classification.rank(spec.ceiling)
        return rank is not None and ceiling is not None and rank <= ceiling

    def _apply(self, change: Change, needs_content: bool, blobs: dict[str, bytes]) -> bool:
        def move(session: Any) -> None:
            row = peer_state.peer_row(session, self.hq)
            current = peer_state.pull_position(row)
            peer_state.set_pull(row, advance(current, change.log, change.epoch, change.seq))
            peer_state.bump(row, changes_in=1)

        try:
            if change.kind == "delete" or not self._ceiling_allows(change):
                if change.kind != "delete":
                    self._rejected(
                        "ceiling", f"{change.doc_id} is {change.classification}, above this node", change
                    )
                status = apply_delete(
                    self.services, change.doc_id, source=self.hq, position=move, purge=True, record=False
                )
                self.report.deleted += status == "deleted"
            else:
                parsed = self._bundle(change, blobs) if needs_content else None
                status = apply_upsert(
                    self.services,
                    change,
                    parsed,
                    source=self.hq,
                    position=move,
                    record=False,
                    model=self.model,
                )
                if change.content_sha256:
                    self.node.spool.discard(change.content_sha256)
                self.report.pulled += 1
        except NeedContent as exc:
            log.info("stopping the page at %s: %s", change.doc_id, exc)
            return False
        except Conflict as exc:  # a document this node authored, or another source's: never overwritten
            status = "rejected"
            self._rejected("conflict", str(exc), change)
            with self.services.sessions() as session:
                move(session)
                session.commit()
        self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
        self._audit(
            "replication.apply",
            change.doc_id,
            seq=change.seq,
            epoch=change.epoch,
            kind=change.kind,
            version=change.version,
            status=status,
        )
        return True

    def _bundle(self, change: Change, blobs: dict[str, bytes]) -> bundles.Bundle:
        sha = str(change.content_sha256)
        blob = blobs.get(sha) or self.node.spool.get(sha)
        if blob is None:
            raise NeedContent(f"{change.doc_id}: HQ did not send its content")
        try:
            return bundles.parse(
                bundles.decompress(blob), expected_sha256=sha, sparse_names=set(self.services.layout.sparse)
            )
        except bundles.BadBundle as exc:  # a damaged spool file, or a bug at HQ: stop here, never skip
            self.node.spool.discard(sha)
            raise SyncFailed(f"content of {change.doc_id} v{change.version} is unusable: {exc}") from exc

    def _rejected(self, reason: str, message: str, change: Change | None) -> None:
        self.report.rejected += 1
        with self.services.sessions() as session:
            peer_state.reject(peer_state.peer_row(session, self.hq), reason, message)
            session.commit()
        self._audit(
            "replication.reject", change.doc_id if change else None, reason=reason, message=message[:300]
        )

    def ack(self) -> None:
        with self.services.sessions() as session:
            position = peer_state.pull_position(peer_state.peer_row(session, self.hq))
        self.client.post(
            f"{wire.API}/ack", {"log": position.log, "epoch": position.epoch, "seq": position.seq}
        )

    # ---- anti-entropy ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        with self.services.sessions() as session:
            held = [
                [doc_id, version]
                for doc_id, version in session.execute(
                    select(ReceivedRow.doc_id, ReceivedRow.version).where(ReceivedRow.source == self.hq)
                )
            ]
        answer = self.client.post(f"{wire.API}/reconcile", {"docs": held})
        self.report.expected = int(answer.get("expected") or 0)
        held_ids = {doc_id for doc_id, _v in held}
        for doc_id in answer.get("delete") or []:
            if doc_id not in held_ids:
                continue  # only ever what we said we hold
            apply_delete(
                self.services, str(doc_id), source=self.hq, position=lambda _s: None, purge=True, record=False
            )
            self.report.reconciled += 1
            self._audit("replication.reconcile", str(doc_id), status="deleted")
        with self.services.sessions() as session:
            row = peer_state.peer_row(session, self.hq)
            counters = dict(row.counters or {})
            counters["last_reconcile_ts"] = time.time()
            counters["expected_documents"] = self.report.expected
            row.counters = counters
            session.commit()

    def reconcile_due(self) -> bool:
        with self.services.sessions() as session:
            row = peer_state.peer_row(session, self.hq)
            last = float((row.counters or {}).get("last_reconcile_ts") or 0)
            session.commit()
        return time.time() - last >= self.services.settings.reconcile_interval_s


def sync_once(node: NodeContext, *, reconcile: bool = False) -> SyncReport:
    """Push, pull, acknowledge and (when asked or due) reconcile; records the outcome per peer."""
    started = time.monotonic()
    client = HqClient(node)
    run = MissionSync(node, client)
    error: str | None = None
    unreachable = False
    try:
        run.push()
        restarted = run.pull()
        run.ack()
        if reconcile or restarted or run.reconcile_due():
            run.reconcile()
    except (httpx.HTTPError, KmsError, OSError) as exc:
        unreachable = isinstance(exc, httpx.TransportError | OSError)
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, httpx.HTTPError | OSError) else str(exc)
    finally:
        client.close()
    report = run.report
    report.seconds = round(time.monotonic() - started, 3)
    report.bytes_in = client.bytes_in
    report.bytes_out = client.bytes_out
    report.error = error
    report.unreachable = unreachable
    with node.services.sessions() as session:
        row = peer_state.peer_row(session, run.hq)
        peer_state.bump(row, syncs=1, failures=1 if error else 0, bytes_in=client.bytes_in)
        row.last_duration_s = report.seconds
        if error:
            row.last_error, row.last_error_ts = error[:2000], time.time()
        else:
            row.last_sync_ts = row.last_seen_ts = time.time()
            row.last_error = None
        session.commit()
    if error:
        log.warning("sync with %s failed: %s", run.hq, error)
    return report


def held_documents(node: NodeContext) -> list[str]:
    with node.services.sessions() as session:
        return sorted(session.scalars(select(DocumentRow.doc_id).where(DocumentRow.status == "indexed")))
