"""Typed events and the in-process event bus.

Events are frozen dataclasses with keyword-only fields. Each has an
``event_name`` matching the name Jan's desktop app uses for the same event
(``"OnMessageSent"``, ``"OnModelReady"``, ``"onFileDownloadUpdate"``, ...) so
events can be forwarded to a web page unchanged (``event.to_dict()``).

Subscribing to a base class receives every subclass: ``ModelEvent`` gets
``ModelInit``, ``ModelReady``, ...; ``Event`` gets everything.

    bus = LocalEventBus()
    unsubscribe = bus.subscribe(ModelReady, lambda e: print(e.model_id, "ready"))
    await bus.emit(ModelReady(model_id="qwen2.5-0.5b", engine="llama.cpp"))
    unsubscribe()
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, TypeVar

from .interfaces.modules import EventBus, Unsubscribe

__all__ = [
    "EVENT_TYPES",
    "DownloadComplete",
    "DownloadEvent",
    "DownloadFailed",
    "DownloadProgress",
    "Event",
    "ExtensionEvent",
    "ExtensionFailed",
    "ExtensionLoaded",
    "ExtensionUnloaded",
    "InferenceStopped",
    "LocalEventBus",
    "MessageEvent",
    "MessageResponse",
    "MessageSent",
    "MessageUpdate",
    "ModelEvent",
    "ModelFailed",
    "ModelInit",
    "ModelReady",
    "ModelStopped",
    "SettingsChanged",
    "ThreadDeleted",
]

logger = logging.getLogger("jan.core.events")

E = TypeVar("E", bound="Event")

#: How long :meth:`LocalEventBus.emit` waits for each async handler (an extension's code) before it goes on without
#: it: the bound the extension manager puts on an extension's unload, and on the handlers of its own events.
HANDLER_TIMEOUT_S = 15.0

#: Every event class by its ``event_name`` (filled as classes are defined).
EVENT_TYPES: dict[str, type["Event"]] = {}


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class of every event. ``timestamp`` is seconds since the epoch."""

    event_name: ClassVar[str] = "Event"
    timestamp: float = field(default_factory=time.time)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("event_name")
        if isinstance(name, str):
            EVENT_TYPES.setdefault(name, cls)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: its fields plus ``"event"`` (the ``event_name``)."""
        data = dataclasses.asdict(self)
        data["event"] = self.event_name
        return data


# -- messages -------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MessageEvent(Event):
    """A thread message changed. ``message`` is the message dict (Jan's shape)."""

    event_name: ClassVar[str] = "MessageEvent"
    thread_id: str
    message: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class MessageSent(MessageEvent):
    """A user message was added to a thread and a response was requested."""

    event_name: ClassVar[str] = "OnMessageSent"


@dataclass(frozen=True, kw_only=True)
class MessageResponse(MessageEvent):
    """An assistant message was created (status ``"in_progress"`` while streaming, or complete)."""

    event_name: ClassVar[str] = "OnMessageResponse"


@dataclass(frozen=True, kw_only=True)
class MessageUpdate(MessageEvent):
    """A streamed assistant message grew (``delta`` is the new text) or finished (``message["status"]``)."""

    event_name: ClassVar[str] = "OnMessageUpdate"
    delta: str = ""


@dataclass(frozen=True, kw_only=True)
class ThreadDeleted(Event):
    """A thread and its messages were deleted (by the conversation store, after the deletion): what holds data
    about a thread elsewhere (an API's index of it) forgets it. jan's own event, named as its others."""

    event_name: ClassVar[str] = "OnThreadDeleted"
    thread_id: str


# -- models ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelEvent(Event):
    """Something happened to a model in an engine."""

    event_name: ClassVar[str] = "ModelEvent"
    model_id: str
    engine: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelInit(ModelEvent):
    """A model started loading."""

    event_name: ClassVar[str] = "OnModelInit"


@dataclass(frozen=True, kw_only=True)
class ModelReady(ModelEvent):
    """A model finished loading and serves requests."""

    event_name: ClassVar[str] = "OnModelReady"


@dataclass(frozen=True, kw_only=True)
class ModelFailed(ModelEvent):
    """A model failed to load (or crashed); ``error`` says why."""

    event_name: ClassVar[str] = "OnModelFail"
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class ModelStopped(ModelEvent):
    """A model was unloaded (on request, idle timeout or LRU eviction: ``reason``)."""

    event_name: ClassVar[str] = "OnModelStopped"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class InferenceStopped(Event):
    """A generation was stopped before it finished (client disconnect, stop button, unload)."""

    event_name: ClassVar[str] = "OnInferenceStopped"
    model_id: str | None = None
    request_id: str | None = None
    thread_id: str | None = None
    reason: str = "cancelled"


# -- downloads ------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DownloadEvent(Event):
    """Something happened to a download (``task_id`` as in ``DownloadTask.id``)."""

    event_name: ClassVar[str] = "DownloadEvent"
    task_id: str
    model_id: str | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class DownloadProgress(DownloadEvent):
    """Bytes arrived. ``total_bytes`` is ``None`` when the server did not say."""

    event_name: ClassVar[str] = "onFileDownloadUpdate"
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    bytes_per_second: float | None = None

    @property
    def fraction(self) -> float | None:
        """Progress between 0 and 1, or ``None`` if the size is unknown."""
        if not self.total_bytes:
            return None
        return min(1.0, self.downloaded_bytes / self.total_bytes)


@dataclass(frozen=True, kw_only=True)
class DownloadComplete(DownloadEvent):
    """A download finished; ``path`` is the file it wrote."""

    event_name: ClassVar[str] = "onFileDownloadSuccess"
    path: str | None = None


@dataclass(frozen=True, kw_only=True)
class DownloadFailed(DownloadEvent):
    """A download ended without its file: an error, or ``cancelled`` by a user."""

    event_name: ClassVar[str] = "onFileDownloadError"
    error: str = ""
    cancelled: bool = False


# -- extensions and settings ------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ExtensionEvent(Event):
    """Something happened to an extension."""

    event_name: ClassVar[str] = "ExtensionEvent"
    name: str
    version: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExtensionLoaded(ExtensionEvent):
    """An extension's ``on_load`` succeeded."""

    event_name: ClassVar[str] = "OnExtensionLoaded"


@dataclass(frozen=True, kw_only=True)
class ExtensionFailed(ExtensionEvent):
    """An extension could not be loaded; ``state`` is ``"failed"`` or ``"incompatible"``."""

    event_name: ClassVar[str] = "OnExtensionFailed"
    error: str = ""
    state: str = "failed"


@dataclass(frozen=True, kw_only=True)
class ExtensionUnloaded(ExtensionEvent):
    """An extension was unloaded (disabled, or jan stopping)."""

    event_name: ClassVar[str] = "OnExtensionUnloaded"


@dataclass(frozen=True, kw_only=True)
class SettingsChanged(Event):
    """Settings of an extension changed: ``changes`` new values, ``previous`` old ones (changed keys only)."""

    event_name: ClassVar[str] = "OnSettingsChanged"
    extension: str
    changes: dict[str, Any]
    previous: dict[str, Any] = field(default_factory=dict)


# -- the bus ----------------------------------------------------------------
@dataclass(eq=False)
class _Subscription:
    event_type: type | tuple[type, ...]
    handler: Callable[[Any], Any]


def _handler_name(handler: Callable[..., Any]) -> str:
    if isinstance(handler, OwnedHandler):
        return f"{_handler_name(handler.handler)} of extension {handler.owner!r}"
    return getattr(handler, "__qualname__", None) or repr(handler)


class OwnedHandler:
    """An event handler with the name of the extension that subscribed it (``ctx.subscribe``): the bus's log of a
    handler that raised or hung names that extension, not only the function (``on_load.<locals>.h`` told no
    author or user whose code it was). Calls through to ``handler``; async handlers stay async."""

    __slots__ = ("handler", "owner")

    def __init__(self, handler: Callable[[Any], Any], owner: str):
        self.handler = handler
        self.owner = owner

    def __call__(self, event: Any) -> Any:
        return self.handler(event)

    def __repr__(self) -> str:
        return f"<handler {_handler_name(self)}>"


class LocalEventBus(EventBus):
    """The in-process :class:`~jan.core.interfaces.EventBus`.

    ``on_error(event, handler, exc)``, if given, is called (besides logging)
    when a handler raises; errors in it are logged too.
    """

    def __init__(self, *, on_error: Callable[[Event, Callable[..., Any], BaseException], Any] | None = None,
                 handler_timeout: float | None = HANDLER_TIMEOUT_S):
        self._subs: tuple[_Subscription, ...] = ()
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_error = on_error
        self.handler_timeout = handler_timeout

    # subscribing -----------------------------------------------------------
    def subscribe(self, event_type: type[E] | tuple[type, ...], handler: Callable[[E], Any]) -> Unsubscribe:
        types = event_type if isinstance(event_type, tuple) else (event_type,)
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError(f"event_type must be a class or a tuple of classes, not {event_type!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {handler!r}")
        sub = _Subscription(event_type, handler)
        # Copy-on-write so emitting while (un)subscribing is safe.
        self._subs = (*self._subs, sub)

        def unsubscribe() -> None:
            self._subs = tuple(s for s in self._subs if s is not sub)

        return unsubscribe

    def on(self, event_type: type[E] | tuple[type, ...]) -> Callable[[Callable[[E], Any]], Callable[[E], Any]]:
        """Decorator form of :meth:`subscribe` (the handler is returned unchanged)."""

        def decorate(handler: Callable[[E], Any]) -> Callable[[E], Any]:
            self.subscribe(event_type, handler)
            return handler

        return decorate

    def subscriber_count(self, event_type: type | None = None) -> int:
        """How many subscriptions would receive an event of ``event_type`` (all of them if ``None``)."""
        if event_type is None:
            return len(self._subs)
        return sum(1 for s in self._subs if _type_matches(event_type, s.event_type))

    # emitting --------------------------------------------------------------
    async def emit(self, event: Event) -> None:
        """Call the handlers; wait for the async ones at most :attr:`handler_timeout` seconds each (they run side by
        side), then leave those still running in the background (logged, naming them). Emitters such as a model's
        load (``ModelInit``, ``ModelReady``), a thread's delete or a download await this: an extension's handler that
        hung made them wait without end (``jan serve`` never started listening)."""
        pending = [self._bounded(aw, event, handler) for aw, handler in self._call_handlers(event)]
        if pending:
            await asyncio.gather(*pending)

    def emit_nowait(self, event: Event) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for awaitable, handler in self._call_handlers(event):
            if loop is None:
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
                logger.warning(
                    "emit_nowait(%s) outside a running event loop: an async handler was skipped",
                    type(event).__name__,
                )
                continue
            task = loop.create_task(self._guard(awaitable, event, handler))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every handler scheduled by :meth:`emit_nowait` has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def pending(self) -> int:
        """Async handlers scheduled by :meth:`emit_nowait`, or left running by :meth:`emit`, that have not finished."""
        return len(self._tasks)

    # internals ---------------------------------------------------------------
    def _call_handlers(self, event: Event) -> Iterator[tuple[Any, Callable[..., Any]]]:
        """Call the matching handlers in order; yield (awaitable, handler) for async ones."""
        if not isinstance(event, Event):
            raise TypeError(f"only jan.core.Event instances can be emitted, not {event!r}")
        for sub in self._subs:
            if not isinstance(event, sub.event_type):
                continue
            try:
                result = sub.handler(event)
            except (Exception, SystemExit) as exc:  # an extension's sys.exit() must not end jan
                self._report(event, sub.handler, exc)
                continue
            if inspect.isawaitable(result):
                yield result, sub.handler

    async def _bounded(self, awaitable: Any, event: Event, handler: Callable[..., Any]) -> None:
        task = asyncio.ensure_future(self._guard(awaitable, event, handler))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.handler_timeout)
        except asyncio.CancelledError:
            task.cancel()  # (the emitter cancelled: its handlers with it, as gather() cancelled them)
            raise
        if task in done:
            return
        # left running, uncancelled (a handler may be writing what it was told), and referenced until it ends
        logger.warning("event handler %s did not finish on %s within %g s; left running in the background",
                       _handler_name(handler), type(event).__name__, self.handler_timeout)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, awaitable: Any, event: Event, handler: Callable[..., Any]) -> None:
        try:
            await awaitable
        except (Exception, SystemExit) as exc:  # caught here, inside the task: a SystemExit leaving it stops the loop
            self._report(event, handler, exc)

    def _report(self, event: Event, handler: Callable[..., Any], exc: BaseException) -> None:
        logger.error(
            "event handler %s failed on %s: %s: %s",
            _handler_name(handler),
            type(event).__name__,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        if self._on_error is not None:
            try:
                self._on_error(event, handler, exc)
            except Exception:
                logger.exception("the event bus on_error callback failed")


def _type_matches(event_type: type, subscribed: type | tuple[type, ...]) -> bool:
    subscribed_types = subscribed if isinstance(subscribed, tuple) else (subscribed,)
    return any(issubclass(event_type, t) for t in subscribed_types)
