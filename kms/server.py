"""`kms serve`: own the store, publish serve.json + the operator token, run uvicorn."""

from __future__ import annotations

import json
import logging
import os

import uvicorn

from kms.api.app import create_app
from kms.cli.backend import running_server
from kms.config import Settings
from kms.errors import StoreBusy
from kms.security.authn import write_operator_token
from kms.services import Services

log = logging.getLogger(__name__)


def run_server(settings: Settings, *, host: str, port: int) -> None:
    existing = running_server(settings)
    if existing is not None:
        raise StoreBusy(f"kms serve is already running for {settings.data_dir} (pid {existing['pid']})")
    services = Services.open(settings)
    token = write_operator_token(settings.token_file)
    settings.serve_file.write_text(
        json.dumps({"pid": os.getpid(), "port": port, "host": host}), encoding="utf-8"
    )
    try:
        uvicorn.run(create_app(services, operator_token=token), host=host, port=port, log_level="info")
    finally:
        settings.serve_file.unlink(missing_ok=True)
        settings.token_file.unlink(missing_ok=True)
        services.close()
