"""Turns at one resource, given in the order they were asked for.

A model's embedding context serves one call at a time, and a big request (thousands of inputs) is many calls, one
per few decodes (:meth:`jan.Model.embed`): between two of its calls, a request that asked meanwhile goes first. A
``threading.Lock`` would not do that: the thread that releases it and asks again at once usually takes it back
before a waiting thread wakes, and a one-line request waited for the whole of a 6,000-input one (40 s).
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Turns"]


class Turns:
    """A lock (``with turns:``) granted first come, first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = False

    @property
    def waiting(self) -> int:
        """How many callers wait for a turn now."""
        with self._cond:
            return len(self._queue)

    def __enter__(self) -> "Turns":
        me = object()
        with self._cond:
            self._queue.append(me)
            self._cond.notify_all()  # (for watchers of `waiting`: no turn changes hands here)
            try:
                while self._busy or self._queue[0] is not me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: never leave a place in the queue no one will take
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._busy = True
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_for_waiting(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` callers wait for a turn (or ``timeout`` seconds pass): whether they do."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._queue) >= count, timeout)
