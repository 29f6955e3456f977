"""Per-peer replication state and metrics, and `kms network status`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kms.config import Classification, Settings
from kms.db.network_models import PeerRow, ReceivedRow, SentRow
from kms.network import changes
from kms.network.envelope import Position
from kms.network.nodes import load_network
from kms.network.pki import NodePaths, cert_node_id, fingerprint, load_cert

COUNTERS = (
    "changes_in",
    "changes_out",
    "bytes_in",
    "bytes_out",
    "syncs",
    "failures",
    "federated_searches",
)


def peer_row(session: Session, peer: str) -> PeerRow:
    """The peer's row, created (and flushed) on first contact."""
    row = session.get(PeerRow, peer)
    if row is None:
        row = PeerRow(peer=peer, epoch=1, counters={}, seen_logs=[])
        session.add(row)
        session.flush()
    return row


def bump(row: PeerRow, **deltas: int) -> None:
    counters = dict(row.counters or {})
    for name, delta in deltas.items():
        counters[name] = int(counters.get(name, 0)) + delta
    row.counters = counters


def reject(row: PeerRow, reason: str, message: str) -> None:
    counters = dict(row.counters or {})
    rejected = dict(counters.get("rejected") or {})
    rejected[reason] = int(rejected.get(reason, 0)) + 1
    counters["rejected"] = rejected
    row.counters = counters
    row.last_error, row.last_error_ts = message[:2000], time.time()


def pull_position(row: PeerRow) -> Position:
    return Position(
        log=row.pull_log, epoch=row.pull_epoch, seq=row.pull_seq, seen_logs=list(row.seen_logs or [])
    )


def push_position(row: PeerRow) -> Position:
    return Position(log=row.push_log, epoch=0, seq=row.push_seq, seen_logs=list(row.seen_logs or []))


def set_pull(row: PeerRow, position: Position) -> None:
    row.pull_log, row.pull_epoch, row.pull_seq = position.log, position.epoch, position.seq
    row.seen_logs = list(position.seen_logs)


def set_push(row: PeerRow, position: Position) -> None:
    row.push_log, row.push_seq = position.log, position.seq
    row.seen_logs = list(position.seen_logs)


def _age(ts: float | None, now: float) -> float | None:
    return round(now - ts, 3) if ts else None


def identity(settings: Settings) -> dict[str, Any] | None:
    paths = NodePaths(network_dir(settings))
    if not paths.node_cert.is_file():
        return None
    cert = load_cert(paths.node_cert)
    return {
        "node": cert_node_id(cert),
        "fingerprint_sha256": fingerprint(cert),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def network_dir(settings: Settings) -> Path:
    return (settings.network_dir or settings.data_dir / "network").expanduser().resolve()


def status(session: Session, settings: Settings, classification: Classification) -> dict[str, Any]:
    """Peers, last sync, lag (changes and seconds) and queue depth, from this node's database."""
    now = time.time()
    head = changes.head(session)
    rows: Mapping[str, PeerRow] = {r.peer: r for r in session.scalars(select(PeerRow))}
    peers: list[dict[str, Any]] = []
    if settings.node_role == "mission":
        hq = settings.hq_node_id
        row = rows.get(hq)
        push_seq = row.push_seq if row else 0
        queue, oldest = changes.backlog(session, push_seq, origin=settings.node_id)
        pending = row.remote_pending if row else None
        held = session.scalar(select(func.count()).select_from(ReceivedRow).where(ReceivedRow.source == hq))
        peers.append(
            {
                "peer": hq,
                "role": "hq",
                "url": settings.hq_url or None,
                "last_seen_s_ago": _age(row.last_seen_ts if row else None, now),
                "last_sync_s_ago": _age(row.last_sync_ts if row else None, now),
                "last_error": row.last_error if row else None,
                "feed": {
                    "position": f"{row.pull_epoch}:{row.pull_seq}" if row else None,
                    "remote_head": row.remote_head if row else None,
                    "lag_changes": pending,
                    "lag_s": (
                        round(max(0.0, now - row.remote_oldest_ts), 3)
                        if row and pending and row.remote_oldest_ts
                        else 0.0
                    ),
                    "documents_held": int(held or 0),
                },
                "push": {
                    "acked_seq": push_seq,
                    "queue_depth": queue,
                    "oldest_queued_s_ago": _age(oldest, now),
                },
                "counters": dict(row.counters or {}) if row else {},
                "last_duration_s": row.last_duration_s if row else None,
            }
        )
    else:
        network = load_network(settings.index_config_dir, classification)
        names = sorted(set(network.nodes) | set(rows))
        for name in names:
            row = rows.get(name)
            spec = network.nodes.get(name)
            acked = row.pull_seq if row and row.pull_log == head.log_id else 0
            lag, oldest = changes.backlog(session, acked)
            sent = session.scalar(
                select(func.count())
                .select_from(SentRow)
                .where(SentRow.peer == name, SentRow.delete_seq.is_(None))
            )
            received = session.scalar(
                select(func.count()).select_from(ReceivedRow).where(ReceivedRow.source == name)
            )
            peers.append(
                {
                    "peer": name,
                    "role": "mission",
                    "configured": spec is not None,
                    "enabled": bool(spec and spec.enabled),
                    "ceiling": spec.ceiling if spec else None,
                    "last_seen_s_ago": _age(row.last_seen_ts if row else None, now),
                    "last_error": row.last_error if row else None,
                    "feed": {
                        "epoch": row.epoch if row else None,
                        "acked": f"{row.pull_epoch}:{row.pull_seq}" if row else None,
                        "lag_changes": lag,
                        "lag_s": round(now - oldest, 3) if oldest else 0.0,
                        "documents_sent": int(sent or 0),
                    },
                    "push": {
                        "applied_seq": row.push_seq if row else 0,
                        "documents_received": int(received or 0),
                    },
                    "counters": dict(row.counters or {}) if row else {},
                }
            )
    return {
        "node": settings.node_id,
        "role": settings.node_role,
        "log": {"id": head.log_id, "head": head.seq},
        "identity": identity(settings),
        "peers": peers,
    }


def prometheus(report: dict[str, Any]) -> str:
    """Per-peer metrics in the Prometheus text format."""
    lines = [
        "# HELP kms_replication_changes_total Changes replicated with a peer, by direction.",
        "# TYPE kms_replication_changes_total counter",
    ]
    gauges: list[str] = []
    for peer in report["peers"]:
        name = str(peer["peer"]).replace('"', "")
        counters = peer.get("counters") or {}
        for direction in ("in", "out"):
            lines.append(
                f'kms_replication_changes_total{{peer="{name}",direction="{direction}"}} '
                f"{int(counters.get(f'changes_{direction}', 0))}"
            )
            lines.append(
                f'kms_replication_bytes_total{{peer="{name}",direction="{direction}"}} '
                f"{int(counters.get(f'bytes_{direction}', 0))}"
            )
        for reason, count in sorted((counters.get("rejected") or {}).items()):
            lines.append(f'kms_replication_rejected_total{{peer="{name}",reason="{reason}"}} {int(count)}')
        lines.append(
            f'kms_replication_sync_failures_total{{peer="{name}"}} {int(counters.get("failures", 0))}'
        )
        feed = peer.get("feed") or {}
        gauges.append(f'kms_replication_lag_changes{{peer="{name}"}} {int(feed.get("lag_changes") or 0)}')
        gauges.append(f'kms_replication_lag_seconds{{peer="{name}"}} {float(feed.get("lag_s") or 0.0)}')
        queue = (peer.get("push") or {}).get("queue_depth")
        if queue is not None:
            gauges.append(f'kms_replication_queue_depth{{peer="{name}"}} {int(queue)}')
        seen = peer.get("last_seen_s_ago")
        if seen is not None:
            gauges.append(f'kms_replication_last_seen_seconds{{peer="{name}"}} {float(seen)}')
    lines += ["# TYPE kms_replication_lag_changes gauge", *gauges]
    return "\n".join(lines) + "\n"
