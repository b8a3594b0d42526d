"""``Services``: every service, built once from the extension manager (by the server or the CLI)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from jan.core import ExtensionManager, LocalEventBus
from jan.core.held import Held
from jan.near_names import keywords_named
from jan.services.chat import ChatService
from jan.services.completions import CompletionService
from jan.services.embeddings import EmbeddingService
from jan.services.models import ModelService

if TYPE_CHECKING:
    from jan.services.runs import RunService

__all__ = ["Services", "open_services"]

T = TypeVar("T")


class made_once(Generic[T]):  # noqa: N801 - used as a decorator, as functools.cached_property is
    """``functools.cached_property`` made once per object even when threads ask for it at once: a service is one
    object (its runs, its locks, its stop), and ``cached_property`` has had no lock since Python 3.12, so two
    threads touching it first could each build one, and keep different ones. The first use builds it under the
    object's own lock (double-checked: once built it is a plain attribute, read with no lock); what the build
    raises is raised to that caller and nothing is kept, so the next use builds it again."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._name = build.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> made_once[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        attrs = obj.__dict__  # (written as such: frozen dataclasses refuse setattr)
        try:
            return attrs[self._name]
        except KeyError:
            pass
        # setdefault is atomic: threads racing here all get the one lock. (An RLock: a build that reads its own
        # attribute recurses, as with cached_property, instead of hanging.)
        lock = attrs.setdefault(f"_{self._name}_lock", threading.RLock())
        with lock:
            try:
                return attrs[self._name]
            except KeyError:
                value = attrs[self._name] = self._build(obj)
                return value


@dataclass(frozen=True)
class Services(Held):
    held = "the services over a running extension manager"

    manager: ExtensionManager
    models: ModelService
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingService
    #: Maps a failure to the (message, code) a run records; None: :func:`jan.services.runs.describe_error`.
    describe_error: Callable[[BaseException], tuple[str, str | None]] | None = None
    #: Reads an image a thread message links to (``http(s)://``, a file) for a run: ``(url, param)`` -> a ``data:``
    #: URL, raising :class:`jan.MediaError` naming ``param`` (the server's ``--allow-media-from`` fetcher, the one
    #: chat completions use). None: a run refuses such a link (:func:`jan.services.runs.thread_files`).
    fetch_image: Callable[[str, str], Awaitable[str]] | None = None

    @made_once
    def runs(self) -> RunService:
        """The run service (threads' runs and messages), made on first use: a server that is never asked for a run
        (and finds none to recover or expire as it starts) imports it only as it stops (where it is made stopping:
        ``jan.server.app``) — resident memory at start, issue 16. One, whatever threads ask for it first at once."""
        from jan.services.runs import RunService, describe_error

        return RunService(self.manager, self.models, self.chat, describe_error=self.describe_error or describe_error,
                          fetch_image=self.fetch_image)

    @property
    def has_runs(self) -> bool:
        """Whether :attr:`runs` was made (a sweep expires its runs: none without it)."""
        return "runs" in self.__dict__

    @classmethod
    def from_manager(cls, manager: ExtensionManager, *,
                     describe_error: Callable[[BaseException], tuple[str, str | None]] | None = None,
                     default_model: str | None = None, name_folder: bool = False,
                     fetch_image: Callable[[str, str], Awaitable[str]] | None = None) -> "Services":
        """Every service over ``manager`` (started or not). ``describe_error`` maps a failure to the
        (message, code) a run records (the server passes its HTTP error mapping); ``default_model`` is
        the model of requests that name none (else the only loaded one); ``name_folder``: "model not found"
        names the data folder (:attr:`ModelService.name_folder`: the Python API's, not a server's); ``fetch_image``: how
        a run reads an image a thread message links to (:attr:`fetch_image`)."""
        models = ModelService(manager, default_model=default_model, name_folder=name_folder)
        chat = ChatService(models)
        return cls(manager=manager, models=models, chat=chat, completions=CompletionService(models),
                   embeddings=EmbeddingService(models), describe_error=describe_error,
                   fetch_image=fetch_image)


@keywords_named  # (a mistyped keyword: Python's TypeError, with the one it likely meant)
@contextlib.asynccontextmanager
async def open_services(data_folder: str | Path, *, discover_extensions: bool = True) -> AsyncIterator[Services]:
    """The Python API's way in: start the extension manager on ``data_folder`` (as ``jan serve``
    does, built-ins and entry-point extensions), yield the services, stop it on the way out::

        async with open_services("~/jan") as services:
            result = await services.chat.complete(ChatRequest(model="qwen", messages=(...)))
    """
    from jan.store import make_data_folder

    folder = make_data_folder(data_folder)  # "" (the current folder) and a file in its place refused by name
    manager = ExtensionManager(folder, LocalEventBus(), discover_entry_points=discover_extensions)
    await manager.start()
    try:
        yield Services.from_manager(manager, name_folder=True)
    finally:
        await manager.stop()
