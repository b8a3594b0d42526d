"""Calling an extension's hooks (``on_load``, ``on_unload``, cleanups) with a time bound that holds.

``asyncio.wait_for`` is no bound for a hook that swallows its cancellation: it waits for the
cancelled coroutine to end, so one hung extension would still hold up every other one and the
server. Here the hook runs as a task of its own that is cancelled at the deadline and, if it does
not end within a short grace, left behind (logged) while jan goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from typing import Any, Callable

from .exceptions import ExtensionError

__all__ = ["CANCEL_GRACE_S", "EXECUTOR_SHUTDOWN_S", "BoundedShutdownExecutor", "ExtensionExitError", "HookTimeoutError",
           "call_bounded", "no_exit", "run_loop", "wait_bounded"]

logger = logging.getLogger("jan.core.manager")

#: How long a hook cancelled at its deadline (or because its extension is being disabled) gets to end.
CANCEL_GRACE_S = 1.0

#: How long the end of an event loop (``asyncio.run``) waits for calls still running in its default executor.
EXECUTOR_SHUTDOWN_S = 5.0

#: Hooks that ignored their cancellation, kept referenced so that their task is not collected mid-flight.
_ABANDONED: set[asyncio.Future[Any]] = set()


class HookTimeoutError(ExtensionError, TimeoutError):
    """An extension's hook did not finish within its time bound (it was cancelled)."""


class ExtensionExitError(ExtensionError):
    """An extension's code called ``sys.exit()`` (raised ``SystemExit``): an error of that extension like any other.

    A ``SystemExit`` that leaves an asyncio task is raised out of the event loop, which stops: one extension's
    ``sys.exit("needs foo")`` would end the whole server. :func:`no_exit` turns it into this inside the task."""

    def __init__(self, code: Any):
        super().__init__(f"called sys.exit({code!r})")
        self.code = code


async def no_exit(awaitable: Any) -> Any:
    """``await awaitable``, a ``SystemExit`` it raises turned into :class:`ExtensionExitError` (run it as the task,
    or inside the task, that runs an extension's coroutine)."""
    try:
        return await awaitable
    except SystemExit as exc:
        raise ExtensionExitError(exc.code) from None


async def call_bounded(fn: Callable[..., Any], *args: Any, timeout: float | None, what: str) -> Any:
    """``await fn(*args)`` (a plain return value is returned as is) within ``timeout`` seconds (None: no bound).

    Raises :class:`HookTimeoutError` (message: "<what> did not finish within <timeout> s") when the bound
    passes. Cancelling the caller cancels the hook too, and waits for it at most :data:`CANCEL_GRACE_S`.
    """
    try:
        result = fn(*args)
    except SystemExit as exc:
        raise ExtensionExitError(exc.code) from None
    if not inspect.isawaitable(result):
        return result
    task = asyncio.ensure_future(no_exit(result))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        await abandon(task, what)
        raise
    if not done:
        await abandon(task, what)
        raise HookTimeoutError(f"{what} did not finish within {timeout:g} s")
    return task.result()


async def wait_bounded(awaitable: Any, *, timeout: float | None, what: str) -> None:
    """Wait for ``awaitable`` at most ``timeout`` seconds; past that it goes on in the background, uncancelled
    (e.g. an event's handlers: the extensions' own, which a lifecycle step must not wait for without end)."""
    task = asyncio.ensure_future(no_exit(awaitable))
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        task.result()
        return
    logger.warning("%s did not finish within %g s; left running in the background", what, timeout)
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


async def abandon(task: asyncio.Future[Any], what: str) -> None:
    """Cancel ``task`` and give it :data:`CANCEL_GRACE_S` to end; one that does not is left running, referenced."""
    task.cancel()
    try:
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    finally:
        if task.done():
            _consume(task)
        else:
            logger.warning("%s ignored its cancellation; left running in the background", what)
            _ABANDONED.add(task)
            task.add_done_callback(_forget)
            _detach(task)


def _detach(task: asyncio.Future[Any]) -> None:
    """Leave an abandoned hook out of ``asyncio.all_tasks()``: ``asyncio.run`` (``jan serve``, the CLI) ends by
    cancelling every task and waiting for them all, so one that ignores its cancellation would keep the process
    from ever exiting (a SIGTERM'd server hung). It still runs while the loop does, referenced here."""
    unregister = getattr(asyncio.tasks, "_unregister_task", None)
    if unregister is None or not isinstance(task, asyncio.Task):
        return
    try:
        unregister(task)
    except Exception:  # noqa: BLE001 - an interpreter without it: the old behaviour, nothing worse
        logger.debug("could not detach %r from the loop's tasks", task)


def _consume(task: asyncio.Future[Any]) -> None:
    # a hook that failed while being abandoned has nobody left to tell: logged, not "never retrieved"
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned hook ended with %r", task.exception())


def _forget(task: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(task)
    _consume(task)


class BoundedShutdownExecutor(concurrent.futures.ThreadPoolExecutor):
    """An event loop's default executor (``asyncio.to_thread``, ``run_in_executor(None, ...)``) whose
    ``shutdown(wait=True)`` waits at most ``grace`` seconds (:data:`EXECUTOR_SHUTDOWN_S`) for calls still running.

    ``asyncio.run`` ends by shutting its default executor down, waiting for every call in it without end (Python
    3.11; 3.12 waits 300 s): one extension's ``await asyncio.to_thread(...)`` that never returns -- a blocking
    read the docs told it to move off the loop -- kept a SIGTERM'd ``jan serve`` alive for good. Past the grace
    the calls still running are logged and left behind; calls not yet started are cancelled. (The process's own
    exit, ``jan._entry``, then does not wait on their threads either.)
    """

    def __init__(self, *args: Any, grace: float = EXECUTOR_SHUTDOWN_S, **kwargs: Any):
        kwargs.setdefault("thread_name_prefix", "asyncio")
        super().__init__(*args, **kwargs)
        self.grace = grace

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)  # (what has not started never will: the loop is ending)
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            logger.warning("%d call(s) run in a thread (asyncio.to_thread, run_in_executor) still running %g s after "
                           "the event loop ended, left behind: %s", len(stuck), self.grace, ", ".join(stuck))


def run_loop(main: Any) -> Any:
    """``asyncio.run(main)`` whose end waits for calls still running in threads (``asyncio.to_thread``) at most
    :data:`EXECUTOR_SHUTDOWN_S` (:class:`BoundedShutdownExecutor`): what a process that runs extensions' code
    (``jan serve``, ``jan extensions enable``) runs its loop with. Returns ``main``'s result."""

    async def bounded() -> Any:
        asyncio.get_running_loop().set_default_executor(BoundedShutdownExecutor())
        return await main

    return asyncio.run(bounded())
