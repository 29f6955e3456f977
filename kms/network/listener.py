"""The replication listener: HTTPS with mutual TLS on its own port, beside the main API.

The peer's node id comes from its verified certificate and nowhere else. uvicorn does not pass the
TLS peer to the application, so `PeerIdentityProtocol` (uvicorn's h11 protocol) reads the
certificate once the handshake is done and wraps the app for that connection, putting the identity
into the ASGI scope under a key no HTTP client can set. Routes read it through `CurrentPeer`; any
header claiming an identity is ignored. With `ssl.CERT_REQUIRED`, a client without a certificate
from the network CA never completes the handshake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import uvicorn
from cryptography import x509
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from kms.errors import ConfigError, Conflict, Forbidden, InvalidInput, KmsError, ModelMismatch, NotFound
from kms.network import pki, wire
from kms.network.envelope import ChangeRejected
from kms.network.hub import Hub, Peer
from kms.network.node import NodeContext
from kms.services import Services

log = logging.getLogger(__name__)
PEER_SCOPE_KEY = "kms.tls_peer"  # set only by PeerIdentityProtocol; never derived from a request
MAX_BODY = 256 * 2**20


class _ConnectionPeer:
    """Per-connection ASGI wrapper: adds the verified peer to the scope and caps request bodies."""

    def __init__(self, app: ASGIApp, node_id: str | None, der: bytes | None) -> None:
        self.app = app
        self.peer = (node_id, der)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = {**scope, PEER_SCOPE_KEY: self.peer}
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


class PeerIdentityProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the TLS peer's node id in each request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        node_id: str | None = None
        der: bytes | None = None
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            node_id = pki.peer_node_id(ssl_object.getpeercert())
            der = ssl_object.getpeercert(binary_form=True)
        self.app = _ConnectionPeer(self.app, node_id, der)


# ---- the application -------------------------------------------------------------------------
def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(_hub)]


def get_peer(request: Request, hub: HubDep) -> Peer:
    node_id, der = request.scope.get(PEER_SCOPE_KEY) or (None, None)
    if not node_id or not der:
        raise HTTPException(401, "a node certificate from the network CA is required")
    return hub.peer(node_id, x509.load_der_x509_certificate(der))


CurrentPeer = Annotated[Peer, Depends(get_peer)]


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log: str = Field(default="", max_length=64)
    epoch: int = Field(default=0, ge=0)
    seq: int = Field(default=0, ge=0)


class FeedIn(Position):
    limit: int = Field(default=200, ge=1, le=1000)
    model: str = Field(max_length=300)
    dim: int = Field(ge=0)


class BundlesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shas: list[str] = Field(max_length=5000)


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docs: list[tuple[str, int]] = Field(max_length=2_000_000)


def build_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="kms replication", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub

    @app.get(f"{wire.API}/whoami")
    def whoami(peer: CurrentPeer) -> dict[str, str]:
        """The identity this listener sees (from the certificate), for diagnostics and tests."""
        return {"node": peer.node_id, "server": hub.node.node_id}

    @app.post(f"{wire.API}/feed")
    def feed(body: FeedIn, peer: CurrentPeer) -> dict[str, Any]:
        return hub.feed(
            peer,
            log_id=body.log,
            epoch=body.epoch,
            seq=body.seq,
            limit=body.limit,
            model=body.model,
            dim=body.dim,
        )

    @app.post(f"{wire.API}/ack")
    def ack(body: Position, peer: CurrentPeer) -> dict[str, Any]:
        return hub.ack(peer, log_id=body.log, epoch=body.epoch, seq=body.seq)

    @app.post(f"{wire.API}/bundles")
    def bundles(body: BundlesIn, peer: CurrentPeer) -> Response:
        served, blobs = hub.bundles(peer, body.shas)
        return Response(wire.pack({"shas": served}, blobs), media_type=wire.FRAMES_TYPE)

    @app.post(f"{wire.API}/push")
    async def push(request: Request, peer: CurrentPeer) -> dict[str, Any]:
        body = await request.body()
        header, blobs = wire.unpack(body)
        return await run_in_threadpool(hub.push, peer, header, blobs, len(body))

    @app.post(f"{wire.API}/reconcile")
    def reconcile(body: ReconcileIn, peer: CurrentPeer) -> dict[str, Any]:
        return hub.reconcile(peer, body.docs)

    @app.post(f"{wire.FEDERATION}/search")
    def federated_search(body: dict[str, Any], peer: CurrentPeer) -> dict[str, Any]:
        return hub.federated_search(peer, body)

    statuses: list[tuple[type[Exception], int]] = [
        (ChangeRejected, 400),
        (pki.PeerRejected, 400),
        (Forbidden, 403),
        (NotFound, 404),
        (ModelMismatch, 409),
        (Conflict, 409),
        (InvalidInput, 422),
    ]

    @app.exception_handler(KmsError)
    async def kms_error(_request: Request, exc: KmsError) -> JSONResponse:
        for cls, status in statuses:
            if isinstance(exc, cls):
                return JSONResponse({"detail": str(exc)}, status_code=status)
        log.error("replication error: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=500)

    return app


class Listener:
    """The replication listener, served by uvicorn in a thread of `kms serve`."""

    def __init__(self, services: Services, *, host: str, port: int) -> None:
        self.node = NodeContext(services)
        context = pki.server_context(self.node.paths)  # fail at start-up, not at the first connection
        self.hub = Hub(self.node)

        def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return context

        config = uvicorn.Config(
            build_app(self.hub),
            host=host,
            port=port,
            http=PeerIdentityProtocol,
            ssl_context_factory=factory,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="kms-replication-listener", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the replication listener did not start (is the port free?)")
            time.sleep(0.05)
        log.info("replication listener on %s:%s", self.server.config.host, self.server.config.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
