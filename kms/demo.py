"""`kms demo`: load the bundled sample corpus into the index."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from kms.cli.backend import open_backend
from kms.config import Settings


def samples_dir() -> Path:
    return Path(str(resources.files("kms.samples"))) / "corpus"


def load_demo(settings: Settings) -> None:
    backend = open_backend(settings)
    try:
        results = backend.ingest([samples_dir()], {})
    finally:
        backend.close()
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    sys.stderr.write(f"sample corpus: {counts}\n")
