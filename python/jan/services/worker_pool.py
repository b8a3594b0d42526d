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
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["WorkerPool"]


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
