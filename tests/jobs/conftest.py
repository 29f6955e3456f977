"""The queue tests share the API helpers of tests/ingest."""

from __future__ import annotations

import sys
from pathlib import Path

# The API helpers (users with keys, a worker, a raw ASGI caller) are shared with tests/ingest.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
