"""`kms network`: the HQ CA and node certificates, replication status, and a sync now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from kms.cli.common import EXIT_FAILED, EXIT_USAGE, fail, open_registry, print_json, run_action
from kms.config import Settings
from kms.errors import KmsError
from kms.network import pki
from kms.network.state import network_dir, status
from kms.security import audit
from kms.security.authn import operator_name

app = typer.Typer(help="The knowledge network: certificates, status, sync.", no_args_is_help=True)


def _paths(settings: Settings) -> pki.NodePaths:
    return pki.NodePaths(network_dir(settings))


def _audit(action: str, target: str, **detail: Any) -> None:
    registry = open_registry()
    try:
        audit.append(registry.sessions, actor=operator_name(), action=action, target=target, detail=detail)
    finally:
        registry.close()


@app.command("init-ca")
def init_ca(
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing CA (orphans every node).")
    ] = False,
) -> None:
    """Create the network CA (run once, at HQ or on an offline machine): ca/ca.key (0600) and ca/ca.crt."""
    settings = Settings()
    paths = _paths(settings)
    cert = run_action(lambda: pki.init_ca(paths, force=force))
    _audit("network.init_ca", "ca", fingerprint=pki.fingerprint(cert))
    typer.echo(f"CA created in {paths.ca_cert.parent}", err=True)
    typer.echo(f"fingerprint (sha256): {pki.fingerprint(cert)}", err=True)


@app.command("issue-cert")
def issue_cert(
    node_id: Annotated[str, typer.Argument(help="The node id, e.g. hq or mission/jp-tokyo.")],
    out: Annotated[
        Path | None, typer.Option(help="Write node.key, node.crt and ca.crt here (default: see below).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Validity in days.")] = pki.NODE_DAYS,
) -> None:
    """Issue a node key and certificate signed by the CA.

    Default output: this node's own identity dir when NODE_ID is this node (KMS_NODE_ID), else
    <network dir>/issued/<node>/ — copy that folder to the node's <data>/network/node/ over a
    trusted channel, and delete it here.
    """
    from kms.security.access import is_valid_unit

    if not is_valid_unit(node_id):
        raise fail(f"invalid node id {node_id!r}: use a path like hq or mission/jp-tokyo", EXIT_USAGE)
    settings = Settings()
    paths = _paths(settings)
    if out is None:
        safe = node_id.replace("/", "__")
        out = paths.node_dir if node_id == settings.node_id else paths.root / "issued" / safe
    target = out
    run_action(lambda: pki.issue_node_cert(paths, node_id, target, days=days))
    cert = pki.load_cert(target / "node.crt")
    _audit("network.issue_cert", node_id, fingerprint=pki.fingerprint(cert), days=days)
    typer.echo(f"{node_id}: {target}", err=True)
    typer.echo(f"fingerprint (sha256): {pki.fingerprint(cert)}", err=True)


@app.command("status")
def show_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Peers, last sync, lag (changes and time), push queue depth and counters."""
    settings = Settings()
    registry = open_registry()
    try:
        with registry.sessions() as session:
            report = run_action(lambda: status(session, settings, registry.classification))
    finally:
        registry.close()
    if as_json:
        print_json(report)
        return
    identity = report.get("identity") or {}
    typer.echo(f"node {report['node']} ({report['role']}), log head {report['log']['head']}")
    typer.echo(
        f"certificate: {identity.get('fingerprint_sha256', 'none')}  valid until {identity.get('not_after')}"
    )
    for peer in report["peers"]:
        feed, push = peer.get("feed") or {}, peer.get("push") or {}
        typer.echo(
            f"  {peer['peer']:<24} seen {_ago(peer.get('last_seen_s_ago'))}  "
            f"lag {feed.get('lag_changes')} changes / {feed.get('lag_s')}s  "
            f"queue {push.get('queue_depth', '-')}  error: {peer.get('last_error') or '-'}"
        )


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f}s ago"


@app.command("sync")
def sync(
    peer: Annotated[
        str | None, typer.Option(help="The peer to sync with (a mission's only peer is HQ).")
    ] = None,
    reconcile: Annotated[
        bool, typer.Option("--reconcile", help="Also compare the whole inventory with HQ.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Push this mission's queued changes to HQ and pull HQ's feed now; exits 1 if it failed."""
    from kms.cli.backend import running_server

    settings = Settings()
    if settings.node_role != "mission":
        raise fail("HQ does not initiate syncs: missions push to it and pull from it", EXIT_USAGE)
    if peer is not None and peer != settings.hq_node_id:
        raise fail(f"unknown peer {peer!r}: this mission syncs with {settings.hq_node_id!r}", EXIT_USAGE)
    server = running_server(settings)
    if server is not None:
        token = settings.token_file.read_text(encoding="utf-8").strip()
        try:
            response = httpx.post(
                f"http://127.0.0.1:{server['port']}/api/v1/local/network/sync",
                params={"reconcile": reconcile},
                headers={"authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(10.0, read=None),
            )
        except httpx.HTTPError as exc:
            raise fail(f"could not reach kms serve: {exc}", EXIT_FAILED) from exc
        if response.status_code != 200:
            raise fail(f"kms serve answered {response.status_code}: {response.text[:300]}", EXIT_FAILED)
        report: dict[str, Any] = response.json()
    else:
        report = run_action(lambda: _sync_here(settings, reconcile))
    if as_json:
        print_json(report)
    else:
        typer.echo(
            f"{report['peer']}: pushed {report['pushed']}, pulled {report['pulled']}, "
            f"deleted {report['deleted']}, rejected {report['rejected']}, "
            f"{report['bytes_in']} bytes in, {report['seconds']}s"
        )
    if report.get("error"):
        raise fail(str(report["error"]), EXIT_FAILED)


def _sync_here(settings: Settings, reconcile: bool) -> dict[str, Any]:
    from kms.network.client import sync_once
    from kms.network.node import NodeContext
    from kms.services import Services

    services = Services.open(settings)
    try:
        if not settings.hq_url:
            raise KmsError("KMS_HQ_URL is not set: this mission has no HQ to sync with")
        return sync_once(NodeContext(services), reconcile=reconcile).as_dict()
    finally:
        services.close()
