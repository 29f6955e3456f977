"""The search route's hand-off to a thread: another thread, the caller's context, errors raised."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from kms.api.offload import LastIdleFirst, in_thread
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


# ---- the pool: the thread that went idle last takes the next call ------------------------------


def _burst(pool: LastIdleFirst, size: int) -> set[str]:
    """`size` calls running at once (each waits for all the others): the names of their threads."""
    barrier = threading.Barrier(size, timeout=10)

    def meet() -> str:
        barrier.wait()
        return threading.current_thread().name

    return {future.result(timeout=10) for future in [pool.submit(meet) for _ in range(size)]}


def _wait_until_idle(pool: LastIdleFirst, threads: int) -> None:
    deadline = time.monotonic() + 10
    while pool.idle < threads:
        assert time.monotonic() < deadline, f"{pool.idle} of {threads} threads idle"
        time.sleep(0.001)


def _name() -> str:
    return threading.current_thread().name


def test_after_a_burst_one_client_stays_on_one_thread() -> None:
    """ThreadPoolExecutor's idle threads take turns: after 8 concurrent calls, calls made one at a
    time spread over its 8 threads. Here they all run on the thread that went idle last."""
    pool = LastIdleFirst(size=8, name="t")
    try:
        assert len(_burst(pool, 8)) == 8
        _wait_until_idle(pool, 8)  # a result is set before its thread goes idle again
        last = pool.submit(_name).result(timeout=10)
        assert {pool.submit(_name).result(timeout=10) for _ in range(20)} == {last}
    finally:
        pool.shutdown()


def test_calls_beyond_its_size_wait_and_run_in_order() -> None:
    pool = LastIdleFirst(size=1, name="t")
    gate, ran = threading.Event(), []
    try:
        blocker = pool.submit(gate.wait, 10)
        queued = [pool.submit(ran.append, i) for i in range(5)]
        assert not any(future.done() for future in queued)  # its one thread is busy
        gate.set()
        for future in [blocker, *queued]:
            future.result(timeout=10)
        assert ran == [0, 1, 2, 3, 4]
    finally:
        pool.shutdown()


def test_never_more_threads_than_its_size() -> None:
    pool = LastIdleFirst(size=3, name="t")
    try:
        assert len(_burst(pool, 3)) == 3
        futures = [pool.submit(_name) for _ in range(30)]
        assert {future.result(timeout=10) for future in futures} <= {"t-1", "t-2", "t-3"}
    finally:
        pool.shutdown()


def test_results_and_errors_reach_the_caller_and_shutdown_stops_it() -> None:
    pool = LastIdleFirst(size=2, name="t")
    assert pool.submit(divmod, 17, 5).result(timeout=10) == (3, 2)
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(timeout=10)
    gate = threading.Event()
    busy = pool.submit(gate.wait, 10)
    waiting = pool.submit(divmod, 9, 2)  # the second thread is started for it, or runs it after
    threads = [t for t in threading.enumerate() if t.name in ("t-1", "t-2")]
    threading.Timer(0.2, gate.set).start()
    pool.shutdown()  # waits: the busy call and the one waiting finish, then every thread stops
    assert busy.result(timeout=0) is True and waiting.result(timeout=0) == (4, 1)
    assert threads and not any(t.is_alive() for t in threads)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(_name)
