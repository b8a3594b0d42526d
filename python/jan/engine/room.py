"""Waiting for room in a model's request queue, for work that queues rather than fails.

A request the engine cannot take (``max_queue`` waiting already) raises ``QueueFullError`` at once:
right for an interactive client, which should hear "busy" now. Work that the API models as queued
(a background response, an assistant run) waits instead, and a request ending is what makes room.
"""

from __future__ import annotations

import asyncio
import threading


class RoomSignal:
    """Wakes the asyncio tasks waiting for a model's queue to have room, from whichever thread saw
    one of its requests end (the engine's events are read on the event loop, or on a thread iterating
    a request synchronously)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def notify(self) -> None:
        """A request ended: every waiter tries again (whoever finds room first takes it)."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop has closed: nobody is left waiting on it
                pass

    async def wait(self, timeout: float) -> None:
        """Return when a request ends, or after ``timeout`` seconds at most. A request that ends
        unseen (cancelled and never read to its end) notifies nobody: the timeout bounds that wait,
        so callers try again after it either way."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = (loop, future)
        with self._lock:
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
