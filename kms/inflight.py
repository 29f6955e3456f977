"""Work this process is doing right now: how many searches are being answered.

The query embedder reads it (kms/embedding/onnx_backend.py): a search that runs alone embeds its
query on every core, one among others on a single thread, since the others' store calls and
snippets need the cores too.
"""

from __future__ import annotations

import threading
from types import TracebackType


class InFlight:
    """A thread-safe count of the `with` blocks currently open on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def __enter__(self) -> InFlight:
        with self._lock:
            self._count += 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with self._lock:
            self._count -= 1


SEARCHES = InFlight()
