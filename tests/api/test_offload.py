"""The search route's hand-off to a thread: another thread, the caller's context, errors raised."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from kms.api.offload import in_thread
from kms.errors import InvalidInput

REQUEST = contextvars.ContextVar("request", default="none")


def _where(suffix: str, *, twice: bool = False) -> tuple[str, str]:
    return threading.current_thread().name, REQUEST.get() + suffix * (2 if twice else 1)


def test_runs_on_a_pool_thread_in_the_callers_context() -> None:
    async def main() -> tuple[str, str]:
        REQUEST.set("r-17")
        return await in_thread(_where, "!", twice=True)

    thread, value = asyncio.run(main())
    assert thread.startswith("kms-request") and thread != threading.current_thread().name
    assert value == "r-17!!"


def test_errors_reach_the_route() -> None:
    def refuse() -> None:
        raise InvalidInput("query must not be empty")

    with pytest.raises(InvalidInput, match="must not be empty"):
        asyncio.run(in_thread(refuse))


def test_concurrent_calls_overlap() -> None:
    barrier = threading.Barrier(4, timeout=10)  # all four must be running at once to pass it

    async def main() -> list[int]:
        return list(await asyncio.gather(*(in_thread(barrier.wait) for _ in range(4))))

    assert sorted(asyncio.run(main())) == [0, 1, 2, 3]
