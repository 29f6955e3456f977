"""Progress bars on stderr (stdout stays clean for --json)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    bar: tqdm[None] | None = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if not enabled:
            return
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="file", file=sys.stderr, leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
