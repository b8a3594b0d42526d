"""Module interfaces: services core offers to extensions (and that tests may fake)."""

from __future__ import annotations

import contextlib

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar, Union

if TYPE_CHECKING:  # pragma: no cover
    from ..events import Event

__all__ = ["EventBus", "EventHandler", "FileSystem", "SettingsStore", "Unsubscribe"]

E = TypeVar("E")
EventHandler = Callable[[Any], Union[None, Awaitable[None]]]
Unsubscribe = Callable[[], None]

_MISSING: Any = object()


class FileSystem(ABC):
    """Files under one root folder (the data folder).

    Paths are relative (``"threads/abc/thread.json"`` or a ``Path``); a path
    that could leave the root (absolute, or with a ``..`` component) raises
    :class:`jan.core.PathOutsideDataFolderError`. Symlinks inside the root
    are followed (users link ``models/`` to another disk). Writes are
    atomic: a reader sees the old or the new content, never a mix, even if
    jan dies mid-write. Methods are synchronous because data files are
    small; run large reads in a thread.
    """

    @property
    @abstractmethod
    def root(self) -> Path:
        """The absolute folder every path is relative to."""

    @abstractmethod
    def resolve(self, path: str | Path) -> Path:
        """The absolute path of ``path`` under the root; raises ``PathOutsideDataFolderError`` if it escapes."""

    @abstractmethod
    def exists(self, path: str | Path) -> bool:
        """Whether a file or folder exists at ``path``."""

    @abstractmethod
    def read_text(self, path: str | Path) -> str:
        """The UTF-8 text of a file; raises ``FileNotFoundError`` if it is missing."""

    @abstractmethod
    def write_text(self, path: str | Path, text: str) -> None:
        """Replace a file's content atomically (temp file, fsync, rename), creating parent folders."""

    @abstractmethod
    def read_json(self, path: str | Path, default: Any = _MISSING) -> Any:
        """The parsed JSON of a file; ``default`` if it is missing (``FileNotFoundError`` without a default).

        Invalid JSON raises ``ValueError`` (``json.JSONDecodeError``).
        """

    @abstractmethod
    def write_json(self, path: str | Path, data: Any) -> None:
        """Write ``data`` as indented UTF-8 JSON, atomically like :meth:`write_text`."""

    @abstractmethod
    def mkdir(self, path: str | Path) -> Path:
        """Create a folder (and its parents) if needed; return its absolute path."""

    @abstractmethod
    def listdir(self, path: str | Path = ".") -> list[str]:
        """Sorted names in a folder; an empty list if the folder does not exist."""

    @abstractmethod
    def remove(self, path: str | Path) -> bool:
        """Delete a file or a whole folder; ``False`` if nothing was there."""


class SettingsStore(ABC):
    """Persistent JSON settings, one namespace per extension.

    The stored dict holds only values a user set; defaults come from the
    extension's schema (see :class:`jan.core.ExtensionSettings`).
    """

    @abstractmethod
    def read(self, namespace: str) -> dict[str, Any]:
        """The stored values of a namespace (``{}`` if none were stored).

        Unreadable data raises ``ValueError``; the caller decides what to do.
        """

    @abstractmethod
    def write(self, namespace: str, values: dict[str, Any]) -> None:
        """Replace the stored values of a namespace, atomically."""

    @abstractmethod
    def location(self, namespace: str) -> str:
        """Where a namespace is stored, for messages (a file path for file stores)."""

    def lock(self, namespace: str) -> contextlib.AbstractContextManager[None]:
        """Held around a read-change-write of a namespace, excluding other writers (other processes too, where
        the store can). None by default: a store only this process writes needs none."""
        return contextlib.nullcontext()


class EventBus(ABC):
    """Publish/subscribe of :class:`jan.core.Event` objects within one process.

    Handlers may be plain functions or coroutine functions. A plain function
    runs on the event loop's thread, at the emit, before the emitter goes on:
    it is never moved to a worker thread, since a handler may use the loop
    (create a task, set a future, change what only the loop's thread changes)
    and ``emit_nowait`` from synchronous code has no thread to wait for. So
    it stalls every request of a server while it runs: keep it short, and do
    slow or size-proportional work in a coroutine handler, with
    ``await asyncio.to_thread(...)``. Subscribing to a
    class receives its subclasses too (``Event`` receives everything). A
    handler that raises is logged and never affects the other handlers or
    the emitter.
    """

    @abstractmethod
    def subscribe(self, event_type: type[E] | tuple[type, ...], handler: Callable[[E], Any]) -> Unsubscribe:
        """Call ``handler(event)`` for every event that is an instance of ``event_type``.

        Returns a function that unsubscribes (calling it twice is harmless).
        The same handler subscribed twice is called twice.
        """

    @abstractmethod
    async def emit(self, event: "Event") -> None:
        """Deliver ``event`` to every matching handler and wait for async handlers to finish.

        Handlers are called in subscription order; the coroutines of async
        handlers then run concurrently. Never raises because of a handler.
        """

    @abstractmethod
    def emit_nowait(self, event: "Event") -> None:
        """Deliver ``event`` without waiting: sync handlers run now, async handlers are scheduled as tasks.

        Must be called from the event loop's thread (from other threads use
        ``loop.call_soon_threadsafe(bus.emit_nowait, event)``). Without a
        running loop, async handlers are skipped with a warning.
        """
