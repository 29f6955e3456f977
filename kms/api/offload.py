"""Blocking work of an async route, run on a thread pool through the event loop's own executor.

FastAPI runs a plain `def` route through anyio's worker threads: a capacity limiter, a cancel scope
and a result queue per call, 0.21 ms there and 0.16 ms back per search (p50, 100k chunks, one
client). The event loop's `run_in_executor` does the same job with less around it: 0.13 ms less per
request, paired over 2,000 alternating requests to two servers. The search route, which every
user's query goes through, takes this way; other routes stay plain `def`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["LastIdleFirst", "in_thread"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Job = tuple[Callable[[], Any], "Future[Any]"]


class LastIdleFirst(Executor):
    """A thread pool that hands each call to the thread that went idle last.

    `ThreadPoolExecutor`'s idle threads take turns (one queue, first waiter first), so once a burst
    of concurrent searches had grown the pool, searches made one at a time each ran on another
    thread, one the others' work had left cold: its SQLite connection (`kms.db.driver`, one per
    thread: another had appended to the audit log since, so its page cache was dropped) and
    whatever the embedder and the engine keep per thread. Here they stay on one thread. Paired A/B
    at 100k chunks, one client after a burst of eight (as `benchmarks/scale.py` runs its cells):
    the index's own time 0.65-0.85 ms lower, the search 0.6-0.9 ms lower end to end; without the
    burst 0.1-0.3 ms (the two pools then run one thread alike). Threads start on demand, up to
    `size`; calls beyond wait in order."""

    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last to go idle is taken first
        self._backlog: deque[_Job] = deque()
        self._threads: list[threading.Thread] = []
        self._shut = False

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        future: Future[_R] = Future()
        job: _Job = (functools.partial(fn, *args, **kwargs), future)
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot submit after shutdown")
            if self._idle:
                self._idle.pop().give(job)
            elif len(self._threads) < self._size:
                worker = _Worker(self, f"{self._name}-{len(self._threads) + 1}")
                self._threads.append(worker.thread)
                worker.give(job)
            else:
                self._backlog.append(job)
        return future

    @property
    def idle(self) -> int:
        """Threads waiting for a call."""
        with self._lock:
            return len(self._idle)

    def next_job(self, worker: _Worker) -> _Job | None:
        """What a worker that finished a call runs next: the oldest call waiting, else nothing (it
        is idle until given one, or None when the pool shuts down)."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._shut:
                worker.give(None)
            else:
                self._idle.append(worker)
            return None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            idle, self._idle = self._idle, []
            if cancel_futures:
                while self._backlog:
                    self._backlog.popleft()[1].cancel()
        for worker in idle:
            worker.give(None)
        if wait:  # busy threads finish their call and what waits, then stop
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()


class _Worker:
    def __init__(self, pool: LastIdleFirst, name: str) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # one at a time, or None: stop
        # A daemon: a call still running at exit does not hold the process (uvicorn has already
        # waited for the requests in flight).
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def give(self, job: _Job | None) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        job = self._jobs.get()
        while job is not None:
            call, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the awaiting route, as an executor does
                    future.set_exception(exc)
            job = self._pool.next_job(self) or self._jobs.get()


# As many threads as anyio lends FastAPI's sync routes by default: searches wait on the embedder and
# the store, not on a thread.
_POOL = LastIdleFirst(size=40, name="kms-request")


async def in_thread(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """`function(*args, **kwargs)` on a pool thread, in a copy of the caller's context (as FastAPI
    runs sync routes); the route resumes when it returns or raises."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)
