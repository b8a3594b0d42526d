"""A pool of worker threads of its own for one kind of slow request, made on first use.

Requests that hold a worker thread for seconds (decoding images, waiting for a model's one embedding context) must
not take the event loop's shared workers (``asyncio.to_thread``: cpu count + 4), which every short request needs
for a moment (listing models, reading a thread, tokenizing a prompt): each such kind queues among its own threads
instead (services/media_workers.py, services/embeddings.py say why each needs it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["WorkerPool", "on_own_thread", "undone_if_abandoned"]


class WorkerPool:
    """At most ``max_workers`` threads named ``name-N``, started only as work comes; the rest of the calls wait
    their turn in order."""

    def __init__(self, name: str, max_workers: int):
        self.name = name
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                                   thread_name_prefix=self.name)
            return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on one of this pool's threads; the context goes along, as ``asyncio.to_thread`` takes it."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor(),
                                                                functools.partial(context.run, fn, *args))


async def on_own_thread(name: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread started for this call alone (named ``name``), the context going along.

    For work that may wait minutes on other requests (a model load waiting for room until the loaded models' requests
    end: up to the pool's ``room_timeout``), which on any pool would hold a worker all that time -- six such loads
    took every shared worker of a 2-core machine, and every request needing one for a moment waited behind them.
    The caller bounds how many run at once (one load per model id). Cancelling the await leaves the thread to
    finish, as ``asyncio.to_thread`` does."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # (the await was cancelled)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(fn, *args), None)
        except BaseException as exc:  # (handed to the awaiting coroutine, as to_thread does)
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for it
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


async def undone_if_abandoned(work: Awaitable[T], undo: Callable[[T], None]) -> T:
    """Await ``work``, a worker's call that starts something (engine requests submitted at its end); when the await
    is cancelled first (its client left while its images were encoded), what ``work`` still returns, once its thread
    is done, is undone with ``undo`` on the loop (the requests cancelled). The thread cannot be stopped midway, and
    what it started was left to run for nobody: a request generating to its token limit in a slot others waited for."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        def undone(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is None:
                undo(done.result())

        task.add_done_callback(undone)
        raise
