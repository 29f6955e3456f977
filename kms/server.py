"""`kms serve`: own the store, publish serve.json + the operator token, run uvicorn and a job worker."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
from types import FrameType

import uvicorn

from ingest.jobs import worker_name
from ingest.worker import Worker
from kms.api.app import create_app
from kms.cli.backend import running_server
from kms.config import Settings
from kms.db.checkpoint import start_wal_checkpoints
from kms.errors import StoreBusy
from kms.logging import configure_logging, wants_json
from kms.network.runtime import start as start_network
from kms.security import audit
from kms.security.authn import write_operator_token
from kms.services import Services
from kms.warmup import warm_up

log = logging.getLogger(__name__)


# A search allocates a few thousand objects, nearly all freed by reference counting when it ends;
# with the default threshold (700) a young-generation collection ran during almost every request
# (~0.25 ms each, measured at 100k chunks). Every 10,000 surviving allocations instead.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Once the index, model and app are loaded: what is alive now lives as long as the process, so
    the collector stops walking it (`gc.freeze`), and young collections run less often."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class _Stopped(Exception):
    """SIGTERM reached us after uvicorn's own shutdown (it re-raises the signal it caught)."""


def _unwind_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def run_server(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then stop the worker and the network, close the store and
    remove serve.json and the operator token. uvicorn stops serving on either signal and then
    raises it again; SIGTERM's default action would end the process before any of that cleanup, so
    it unwinds this function first and is raised again, with its default action, at the end."""
    previous = signal.signal(signal.SIGTERM, _unwind_on_sigterm)
    try:
        _serve(settings, host=host, port=port)
    except _Stopped:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # exit as killed by SIGTERM, as uvicorn intends
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(settings: Settings, *, host: str, port: int) -> None:
    existing = running_server(settings)
    if existing is not None:
        raise StoreBusy(f"kms serve is already running for {settings.data_dir} (pid {existing['pid']})")
    configure_logging(json_lines=wants_json(settings.log_format, service=True), level=settings.log_level)
    services = Services.open(settings)
    # Before any other thread holds a connection: requests' commits no longer checkpoint the log.
    checkpoints = start_wal_checkpoints(services.engine, writers=audit.APPEND_LOCK)
    token = write_operator_token(settings.token_file)
    settings.serve_file.write_text(
        json.dumps({"pid": os.getpid(), "port": port, "host": host}), encoding="utf-8"
    )
    worker = Worker(services, name=worker_name("serve")) if settings.worker_in_serve else None
    thread, stop = worker.start_thread() if worker is not None else (None, None)
    network = None
    try:
        network = start_network(services)  # HQ: the mTLS replication listener; a mission: its sync loop
        app = create_app(services, operator_token=token)
        warm_up(app.state.search, settings.warm_up_s)
        settle_garbage_collector()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn logs through the root handler: JSON lines like the rest
            # uvicorn writes its access line before the response's first byte; kms.access writes it
            # after the last one (MetricsMiddleware), with the request's duration.
            access_log=False,
        )
    finally:
        if network is not None:
            network.stop()
        if thread is not None and stop is not None:
            stop.set()  # the current batch finishes, its job goes back to the queue
            thread.join(timeout=max(30.0, settings.job_lease_s))
        settings.serve_file.unlink(missing_ok=True)
        settings.token_file.unlink(missing_ok=True)
        if checkpoints is not None:
            checkpoints.stop()
        services.close()
