"""The :class:`Extension` base class and the :class:`ExtensionContext` it is loaded with."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Iterable, Sequence, TypeVar

from .bounded import CANCEL_GRACE_S, call_bounded
from .events import OwnedHandler
from .exceptions import ExtensionError
from .interfaces.base import ExtensionInterface
from .interfaces.inference import InferenceExtension
from .interfaces.modules import EventBus, FileSystem, Unsubscribe

if TYPE_CHECKING:  # pragma: no cover
    from .events import Event
    from .manager import ExtensionManager
    from .settings import ExtensionSettings, SettingsCallback

__all__ = ["BUILTIN_PRIORITY", "Extension", "ExtensionContext", "RouteSpec", "SubAppSpec"]

T = TypeVar("T")

#: Priority built-in extensions use, so that any third-party implementation
#: (default priority 0) of the same interface replaces them.
BUILTIN_PRIORITY = -100

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"})


class Extension:
    """Base class of every jan extension.

    Subclass it, set the class attributes, and override :meth:`on_load` /
    :meth:`on_unload`. To implement an interface, inherit it too::

        class MyStore(Extension, ConversationalExtension):
            name = "my-store"
            version = "1.0.0"
            requires_api = ">=1,<2"

    Attributes (class attributes; the manager reads them before loading):

    ``name``
        Unique, used for ``extensions.json`` and ``<data>/settings/<name>/``;
        letters, digits, ``.``, ``_``, ``-``, optionally scoped as ``@scope/name``.
    ``version``
        The extension's own version (the distribution's version if unset).
    ``description``
        One line for listings.
    ``requires_api``
        A specifier of jan's extension API it was written for, e.g. ``">=1,<2"``
        (see :data:`jan.core.API_VERSION`); ``None`` accepts any.
    ``depends_on``
        Names of extensions that must be loaded first.
    ``settings_schema``
        A pydantic model class or a JSON schema dict of the extension's
        settings (``None``: no schema, any JSON object).
    ``priority``
        Breaks ties when several extensions implement the same interface or
        engine (higher wins; built-ins use :data:`BUILTIN_PRIORITY`).
    ``enabled_by_default``
        Whether a newly discovered extension starts enabled.
    ``extension_types``
        The interface types implemented, computed from the interfaces the
        class inherits (set it to declare types without an interface class).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    requires_api: ClassVar[str | None] = None
    depends_on: ClassVar[Sequence[str]] = ()
    settings_schema: ClassVar[Any] = None
    priority: ClassVar[int] = 0
    enabled_by_default: ClassVar[bool] = True

    _ctx: "ExtensionContext | None" = None

    @property
    def extension_types(self) -> tuple[str, ...]:
        """Interface types this extension implements itself (e.g. ``("conversational", "assistant")``)."""
        found: dict[str, None] = {}
        for klass in type(self).__mro__:
            t = klass.__dict__.get("extension_type")
            if isinstance(t, str) and t:
                found.setdefault(t, None)
        return tuple(found)

    @property
    def extension_type(self) -> str | None:  # type: ignore[override]
        """The first of :attr:`extension_types`, or ``None``."""
        types = self.extension_types
        return types[0] if types else None

    @property
    def ctx(self) -> "ExtensionContext":
        """The context of the current load; raises :class:`ExtensionError` when not loaded."""
        if self._ctx is None or self._ctx.closed:
            raise ExtensionError(f"extension {self.name!r} is not loaded")
        return self._ctx

    async def on_load(self, ctx: "ExtensionContext") -> None:
        """Called once when the extension is loaded (at start, or when enabled).

        Register routes, engines, event handlers and settings callbacks
        through ``ctx``. Raising marks the extension failed; everything
        registered through ``ctx`` is then removed again (free anything else
        yourself before raising). Don't call ``manager.enable``/``disable``
        from here.
        """

    async def on_unload(self) -> None:
        """Called once when the extension is unloaded (disabled, or jan stopping), in reverse load order.

        Registrations made through the context are removed afterwards
        automatically; close files, tasks and models here.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.version or ''}>".replace(" >", ">")


@dataclass(frozen=True)
class RouteSpec:
    """An HTTP route an extension contributed (mounted by the server with ``jan.server.mount.mount_extensions``)."""

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    extension: str
    name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubAppSpec:
    """An aiohttp sub-application an extension contributed: ``factory()`` builds it, mounted at ``prefix``."""

    prefix: str
    factory: Callable[[], Any]
    extension: str


@dataclass(frozen=True)
class _Provided:
    obj: Any
    types: tuple[str, ...]
    priority: int


class ExtensionContext:
    """What an extension gets in :meth:`Extension.on_load`: core services and registration hooks.

    Every registration made here belongs to the extension and is undone
    when it unloads (or when ``on_load`` fails).
    """

    def __init__(self, manager: "ExtensionManager", extension: Extension, settings: "ExtensionSettings"):
        self._manager = manager
        self.extension = extension
        self.name = extension.name
        self._settings = settings
        self.logger = logging.getLogger(f"jan.extensions.{extension.name}")
        self._routes: list[RouteSpec] = []
        self._subapps: list[SubAppSpec] = []
        self._engines: list[tuple[str, InferenceExtension, int]] = []
        self._provided: list[_Provided] = []
        self._cleanups: list[Callable[[], Any]] = []
        self._closed = False
        #: set when on_load has returned: the routes and sub-apps are then read (mounted) once, so one added later
        #: would never be served - refused with a clear error instead
        self._routes_frozen = False
        #: whether contribute_settings replaced the schema (a failed load must not leave it behind)
        self._schema_contributed = False

    def __repr__(self) -> str:
        return f"<ExtensionContext of {self.name!r}{' (closed)' if self._closed else ''}>"

    # core services -------------------------------------------------------------
    @property
    def manager(self) -> "ExtensionManager":
        """The extension manager (look up other extensions and interfaces with it)."""
        return self._manager

    @property
    def bus(self) -> EventBus:
        """The event bus shared by jan and every extension."""
        return self._manager.bus

    @property
    def settings(self) -> "ExtensionSettings":
        """This extension's settings (validated get/set, ``on_change`` callbacks)."""
        return self._settings

    @property
    def data_folder(self) -> Path:
        """Jan's data folder."""
        return self._manager.data_folder

    @property
    def fs(self) -> FileSystem:
        """The data folder as a :class:`FileSystem` (atomic writes, no escaping the folder)."""
        return self._manager.fs

    @property
    def extension_folder(self) -> Path:
        """``<data>/extensions/<name>/``: where this extension may keep its own files (created on demand)."""
        return self._manager.fs.resolve(f"extensions/{self.name}")

    @property
    def closed(self) -> bool:
        """True once the extension was unloaded (or failed to load); hooks then refuse registrations."""
        return self._closed

    def get(self, extension_type: str | type[T]) -> T:
        """Shortcut for ``ctx.manager.get(extension_type)``."""
        return self._manager.get(extension_type)

    def get_inference(self, engine_name: str) -> InferenceExtension:
        """Shortcut for ``ctx.manager.get_inference(engine_name)``."""
        return self._manager.get_inference(engine_name)

    # hooks -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ExtensionError(f"extension {self.name!r} is not loaded; its context is closed")

    def _check_routes_open(self, what: str) -> None:
        self._check_open()
        if self._routes_frozen:
            raise ExtensionError(f"extension {self.name!r} added {what} after its on_load returned; it would never be "
                                 f"served: add routes and sub-applications in on_load")

    def add_route(self, method: str, path: str, handler: Callable[..., Awaitable[Any]], *, name: str | None = None, **kwargs: Any) -> RouteSpec:
        """Contribute an HTTP route: ``handler(request) -> aiohttp.web.StreamResponse`` (or an ``aiohttp.web.View`` class).

        ``method`` is an HTTP method or ``"*"``; ``path`` starts with ``/``
        (use a prefix of your own, e.g. ``/v1/extensions/<name>/...``, or an
        OpenAI path the extension implements). Extra ``kwargs`` go to
        ``router.add_route``.
        """
        self._check_routes_open(f"the route {method} {path}")
        spec = self._route_spec(method, path, handler, {**kwargs, "name": name})
        self._routes.append(spec)
        return spec

    def _route_spec(self, method: str, path: str, handler: Any, kwargs: dict[str, Any]) -> RouteSpec:
        self._check_open()
        kwargs = dict(kwargs)
        name = kwargs.pop("name", None)
        method = str(method).upper()
        if method not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {method!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"route path must start with '/', got {path!r}")
        if not callable(handler):
            raise TypeError(f"route handler for {method} {path} is not callable")
        return RouteSpec(method=method, path=path, handler=handler, extension=self.name, name=name, kwargs=kwargs)

    def add_routes(self, routes: Iterable[Any]) -> list[RouteSpec]:
        """Contribute several routes: an ``aiohttp.web.RouteTableDef``, a list of ``web.get(...)``-style
        route definitions, or ``(method, path, handler)`` tuples."""
        self._check_routes_open("routes")
        # All or none: an on_load that catches the error of a bad third route must not go on with two.
        specs = [self._route_spec(*self._route_args(route)) for route in routes]
        self._routes.extend(specs)
        return specs

    @staticmethod
    def _route_args(route: Any) -> tuple[str, str, Any, dict[str, Any]]:
        if isinstance(route, tuple):
            if len(route) != 3:
                raise TypeError(f"a route tuple is (method, path, handler), got {route!r}")
            return route[0], route[1], route[2], {}
        if all(hasattr(route, a) for a in ("method", "path", "handler")):
            return route.method, route.path, route.handler, dict(getattr(route, "kwargs", None) or {})
        raise TypeError(f"unsupported route definition {route!r} (static routes: use add_subapp)")

    def add_subapp(self, prefix: str, factory: Callable[[], Any]) -> SubAppSpec:
        """Contribute an aiohttp sub-application mounted at ``prefix``; ``factory()`` is called when the server mounts it."""
        self._check_routes_open(f"the sub-application at {prefix}")
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix == "/":
            raise ValueError(f"sub-app prefix must start with '/' and not be '/', got {prefix!r}")
        if not callable(factory):
            raise TypeError("sub-app factory must be callable")
        spec = SubAppSpec(prefix=prefix.rstrip("/"), factory=factory, extension=self.name)
        self._subapps.append(spec)
        return spec

    def register_engine(self, engine: InferenceExtension, name: str | None = None, *, priority: int | None = None) -> None:
        """Make ``engine`` answer ``manager.get_inference(name)`` (``name`` defaults to ``engine.engine_name``)."""
        self._check_open()
        if not isinstance(engine, InferenceExtension):
            raise TypeError(f"{engine!r} does not implement jan.core.InferenceExtension")
        name = name or engine.engine_name
        if not name or not isinstance(name, str):
            raise ValueError(f"engine {engine!r} has no engine_name")
        if any(n == name and e is engine for n, e, _ in self._engines):
            return
        self._engines.append((name, engine, self.extension.priority if priority is None else priority))

    def provide(self, implementation: ExtensionInterface, *, priority: int | None = None) -> None:
        """Offer an object implementing one or more interfaces to ``manager.get(<type>)``.

        Not needed when the extension object itself inherits the interface
        (the manager provides it automatically after ``on_load``). An
        :class:`InferenceExtension` with an ``engine_name`` is also registered
        as that engine.
        """
        self._check_open()
        if not isinstance(implementation, ExtensionInterface):
            raise TypeError(f"{implementation!r} implements no jan.core interface")
        if any(p.obj is implementation for p in self._provided):
            return
        types = type(implementation).interface_types()
        self._provided.append(_Provided(implementation, types, self.extension.priority if priority is None else priority))
        if isinstance(implementation, InferenceExtension) and implementation.engine_name:
            self.register_engine(implementation, priority=priority)

    def subscribe(self, event_type: type[Any] | tuple[type, ...], handler: Callable[[Any], Any]) -> Unsubscribe:
        """React to events: like ``bus.subscribe`` but undone automatically when the extension unloads, and named
        with this extension in the log of a handler that raises or hangs. A sync handler runs on the event loop,
        as every hook does (see :class:`~jan.core.interfaces.EventBus`): keep it short. Raises ``TypeError`` for a
        handler that is not callable."""
        self._check_open()
        if not callable(handler):  # (said here, of the handler given: the bus would see the wrapper)
            raise TypeError(f"handler must be callable, not {handler!r}")
        unsubscribe = self.bus.subscribe(event_type, OwnedHandler(handler, self.name))
        self._cleanups.append(unsubscribe)
        return unsubscribe

    async def emit(self, event: "Event") -> None:
        """``await bus.emit(event)``."""
        await self.bus.emit(event)

    def emit_nowait(self, event: "Event") -> None:
        """``bus.emit_nowait(event)``."""
        self.bus.emit_nowait(event)

    def on_settings_change(self, callback: "SettingsCallback") -> Unsubscribe:
        """``callback(changes)`` after this extension's settings change (undone when it unloads). A sync callback
        runs on the event loop, in the change's request: keep it short (an async one may hop to a thread)."""
        self._check_open()
        unsubscribe = self._settings.on_change(callback)
        self._cleanups.append(unsubscribe)
        return unsubscribe

    def contribute_settings(self, schema: Any) -> None:
        """Replace this extension's settings schema at load time (e.g. choices found on this machine).

        Stored values are revalidated; invalid ones are dropped with a warning.
        """
        self._check_open()
        self._settings.set_schema(schema)
        self._schema_contributed = True

    def add_cleanup(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` (sync or async) when the extension unloads, after ``on_unload``, last added first.
        A sync one runs on the event loop (its time bound cannot stop it): keep it short."""
        self._check_open()
        self._cleanups.append(callback)

    # used by the manager ---------------------------------------------------------------
    def _provide_self(self) -> None:
        ext = self.extension
        if isinstance(ext, InferenceExtension) and ext.engine_name:
            self.register_engine(ext)
        if isinstance(ext, ExtensionInterface):
            self.provide(ext)

    async def _close(self, timeout: float | None = None) -> None:
        """Drop what was registered, refuse further registrations and run the cleanups, last added first: together
        within ``timeout`` seconds (each still gets a moment to run however late it comes; one that hangs is
        abandoned)."""
        if self._closed:
            return
        self._closed = True
        # Dropped first: nothing of a closing extension stays reachable while its cleanups run.
        self._routes.clear()
        self._subapps.clear()
        self._engines.clear()
        self._provided.clear()
        cleanups, self._cleanups = self._cleanups, []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for callback in reversed(cleanups):
            left = None if deadline is None else max(CANCEL_GRACE_S, deadline - loop.time())
            try:
                await call_bounded(callback, timeout=left, what=f"cleanup {callback!r} of extension {self.name}")
            except Exception:
                self.logger.exception("cleanup %r of extension %s failed", callback, self.name)
