"""Asyncio access to the data folder for the aiohttp server.

File I/O and lock waits block, so every call runs in a worker thread via
``asyncio.to_thread`` and the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterable, Awaitable, Callable
from pathlib import Path
from typing import Any

from .folder import DataFolder
from .problems import Problem


class AsyncProxy:
    """Wraps one sub-store: each public method becomes a coroutine function."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._target, name)
        if not callable(attr):
            raise AttributeError(f"{name} is not a method")

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"AsyncProxy({self._target!r})"


class AsyncStore:
    """The same API as :class:`DataFolder`, awaitable::

        store = await AsyncStore.open()
        thread = await store.threads.create("Hello")
        page = await store.messages.list(thread["id"], limit=20, order="desc")
    """

    def __init__(self, folder: DataFolder) -> None:
        self.sync = folder
        self.models = AsyncProxy(folder.models)
        self.threads = AsyncProxy(folder.threads)
        self.messages = AsyncProxy(folder.messages)
        self.assistants = AsyncProxy(folder.assistants)
        self.settings = AsyncProxy(folder.settings)

    @classmethod
    async def open(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> AsyncStore:
        """Open (and create if needed) a data folder without blocking the loop."""
        folder = await asyncio.to_thread(DataFolder, path, **kwargs)
        return cls(folder)

    @property
    def root(self) -> Path:
        return self.sync.root

    @property
    def problems(self) -> list[Problem]:
        return self.sync.problems

    def __repr__(self) -> str:
        return f"AsyncStore({str(self.sync.root)!r})"


async def write_through(chunks: AsyncIterable[bytes], write: Callable[[bytes], Any], batch_bytes: int) -> None:
    """An upload's ``chunks`` written with ``write`` in a worker thread, in order, about ``batch_bytes`` at a time:
    one batch is written while the next arrives, so the event loop never waits on the disk and memory holds two
    batches at most. Errors of ``chunks`` or ``write`` are raised; a write still in flight when the upload breaks
    off ends quietly (the caller discards what it wrote, after it)."""
    pending: asyncio.Future[Any] | None = None
    batch: list[bytes] = []
    gathered = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            gathered += len(chunk)
            if gathered >= batch_bytes:
                if pending is not None:
                    await pending  # in order: a hash taken as the bytes are written sees them as they came
                pending = asyncio.ensure_future(asyncio.to_thread(write, b"".join(batch)))
                batch, gathered = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch:
            await asyncio.to_thread(write, b"".join(batch))
    finally:
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # (its error: nobody's to hear)
