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



async def undone_if_abandoned(run: Callable[..., Awaitable[T]], fn: Callable[..., T], *args: Any,
                              undo: Callable[[T], None]) -> T:
    """``await run(fn, *args)``: ``fn`` on a worker (``run``: :func:`off_loop`, a pool's ``run``), a call that starts
    something at its end (engine requests submitted after a request's images were encoded). When the await is
    cancelled (its client left) while ``fn`` runs, what ``fn`` still returns is undone with ``undo`` (the requests
    cancelled): the thread cannot be stopped midway, and what it started was left to run for nobody, a request
    generating to its token limit in a slot others waited for. A call still waiting for a worker is cancelled with
    the await, as ever. ``undo`` runs on the worker thread or on the loop, whichever sees the cancel last."""
    lock = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "returned": False, "result": None}

    def call(*call_args: Any) -> T:
        result = fn(*call_args)
        with lock:
            if not state["abandoned"]:
                state["returned"], state["result"] = True, result
                return result
        undo(result)  # the await was cancelled while this ran: nobody will take it
        return result

    try:
        return await run(call, *args)
    except asyncio.CancelledError:
        with lock:
            state["abandoned"] = True
            returned, result = state["returned"], state["result"]
        if returned:  # (returned as the await was cancelled: its result was not delivered)
            undo(result)
        raise
