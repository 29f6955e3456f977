"""The API tests share the raw ASGI caller of tests/ingest."""

from __future__ import annotations

import sys
from pathlib import Path

# `call_asgi` (a request body pulled chunk by chunk) lives with the upload tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
