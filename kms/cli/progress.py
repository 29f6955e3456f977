"""Progress bars on stderr (stdout stays clean for --json)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    bar: tqdm[Any] | None = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if not enabled:
            return
        current = bar or tqdm(total=total, desc=label, unit="file", file=sys.stderr, leave=False)
        bar = current
        current.total = total
        current.n = done
        current.refresh()

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
