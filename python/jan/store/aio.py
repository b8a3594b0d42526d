"""Asyncio access to the data folder for the aiohttp server.

File I/O and lock waits block, so every call runs in a worker thread via
``asyncio.to_thread`` and the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
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
