"""The network inside `kms serve`: HQ's replication listener, a mission's sync loop and federation.

`start(services)` starts what this node's settings call for; `runtime_for(services)` finds it again
from a request (the operator's `kms network sync` and the search route use it).
"""

from __future__ import annotations

import logging
import threading
import weakref

from kms.errors import ConfigError, KmsError
from kms.network.client import SyncReport, sync_once
from kms.network.federation import Federator
from kms.network.listener import Listener
from kms.network.node import NodeContext
from kms.services import Services

log = logging.getLogger(__name__)
# Services is an unhashable dataclass: runtimes are kept by id, with a weak reference against id reuse.
_RUNTIMES: dict[int, tuple[weakref.ref[Services], NetworkRuntime]] = {}
_REGISTRY_LOCK = threading.Lock()


class NetworkRuntime:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.node = NodeContext(services)
        self.listener: Listener | None = None
        self.federator: Federator | None = None
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._loop: threading.Thread | None = None

    @property
    def is_mission(self) -> bool:
        return self.settings.node_role == "mission"

    @property
    def replicates(self) -> bool:
        """A mission with an HQ address and a certificate."""
        return self.is_mission and bool(self.settings.hq_url) and self.node.paths.has_identity()

    def start(self) -> None:
        settings = self.settings
        if not self.is_mission and settings.replication_port:
            if not self.node.paths.has_identity():
                raise ConfigError(
                    f"KMS_REPLICATION_PORT is set but {self.node.paths.node_dir} holds no node certificate: "
                    "run `kms network init-ca` and `kms network issue-cert hq`"
                )
            self.listener = Listener(
                self.services, host=settings.replication_host, port=settings.replication_port
            )
            self.listener.start()
        if self.is_mission and settings.hq_url:
            if not self.node.paths.has_identity():
                raise ConfigError(
                    f"KMS_HQ_URL is set but {self.node.paths.node_dir} holds no node certificate: copy there "
                    f"the files `kms network issue-cert {settings.node_id}` wrote at HQ"
                )
            self.federator = Federator(self.node)
            self._loop = threading.Thread(target=self._sync_loop, name="kms-sync", daemon=True)
            self._loop.start()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # the loop must outlive any one failure; the error is in the peer state
                log.exception("sync loop iteration failed")
            self._wake.wait(self.settings.sync_interval_s)
            self._wake.clear()

    def sync(self, *, reconcile: bool = False) -> SyncReport:
        """One sync now (serialised with the loop's)."""
        if not self.replicates:
            raise KmsError(
                "this node does not replicate: it is HQ, or KMS_HQ_URL / its certificate is missing"
            )
        with self._sync_lock:
            report = sync_once(self.node, reconcile=reconcile)
        if self.federator is not None:  # searches follow what the last sync learnt about the link
            if report.error is None:
                self.federator.mark_up()
            elif report.unreachable:
                self.federator.mark_down()
        return report

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._loop is not None:
            self._loop.join(timeout=30)
        if self.listener is not None:
            self.listener.stop()
        if self.federator is not None:
            self.federator.close()


def start(services: Services) -> NetworkRuntime:
    runtime = runtime_for(services)
    runtime.start()
    return runtime


def _lookup(services: Services) -> NetworkRuntime | None:
    entry = _RUNTIMES.get(id(services))
    if entry is None or entry[0]() is not services:
        return None
    return entry[1]


def runtime_for(services: Services) -> NetworkRuntime:
    with _REGISTRY_LOCK:
        for key in [k for k, (ref, _r) in _RUNTIMES.items() if ref() is None]:
            del _RUNTIMES[key]
        runtime = _lookup(services)
        if runtime is None:
            runtime = NetworkRuntime(services)
            _RUNTIMES[id(services)] = (weakref.ref(services), runtime)
        return runtime


def federator_for(services: Services) -> Federator | None:
    """The mission's federator while `kms serve` runs it; None on HQ or a standalone node."""
    with _REGISTRY_LOCK:
        runtime = _lookup(services)
    return runtime.federator if runtime is not None else None
