"""Serving what extensions contribute once the server runs: extensions that finish loading after it started, or
are enabled (again) at runtime, and the 503 for a route of an extension still loading.

aiohttp freezes an application's router when it starts, so :class:`LateRoutes` is one resource put on the router
before that (by :func:`jan.server.mount.mount_extensions`). Each extension admitted later (the manager's
admission hook, run as its load ends: :meth:`jan.core.ExtensionManager.set_admission`) gets a slot of its own, an
application that is never started, holding its routes and sub-applications; it is built and checked whole before
it replaces the extension's earlier slot in one assignment, so a half-mounted extension never serves, and what it
had mounted at start is passed over from then on. Requests go through the app's middlewares (Host, CORS, the API
key, the error shapes) exactly as for the routes mounted at start: only which route answers is decided here.

Which route answers is what the app's own router would decide had everything been mounted at start (aiohttp 3.10+
tries the resources of the longest leading part of the path first, in the order they were added): this resource
is tried before the router's own walk (a rule-matched sub-application's place), walks jan's and the extensions'
resources in that order, and returns the match of the first live one. An extension that is not loaded, or whose
mount was replaced, is passed over, as its gate would refuse it anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute, MatchedSubAppResource

from jan.core import ExtensionLoadingError, ExtensionManager, RouteSpec, SubAppSpec
from jan.core.bounded import call_bounded
from jan.core.exceptions import describe_loading

log = logging.getLogger("jan.server")

__all__ = ["LateRoutes"]


@dataclass(eq=False)
class Slot:
    """One extension's routes and sub-applications mounted after the server started (an app never started)."""

    extension: str
    app: web.Application = field(default_factory=web.Application)
    index: dict[str, list[AbstractResource]] = field(default_factory=dict)


#: Fills a new slot with an extension's routes and sub-applications after checking them against what answers
#: now (:meth:`LateRoutes.claims`); returns why they cannot be mounted, or None (``jan.server.mount``'s).
Build = Callable[["LateRoutes", Slot, list[RouteSpec], list[SubAppSpec]], "str | None"]


class LateRoutes(MatchedSubAppResource):
    """The resource that serves extensions' routes mounted after the router froze (see the module's doc).

    A :class:`MatchedSubAppResource` only for where aiohttp's router puts it: such resources are tried before its
    walk of the others. Nothing of a sub-application's resolving is used: :meth:`resolve` is its own.
    """

    def __init__(self, manager: ExtensionManager, app: web.Application, build: Build) -> None:
        AbstractResource.__init__(self)
        self._prefix = ""
        self._manager = manager
        self._app = app
        self._build = build
        self._slots: dict[str, Slot] = {}
        #: the extension each route and sub-application mounted at start belongs to (jan's own are not here)
        self._owners: dict[AbstractRoute | AbstractResource, str] = {}
        self._main: dict[str, list[AbstractResource]] | None = None
        self._admitting = asyncio.Lock()
        self._loading: tuple[tuple[object, ...], web.UrlDispatcher] | None = None

    @property
    def manager(self) -> ExtensionManager:
        return self._manager

    # -- what is mounted where -------------------------------------------------------------------------
    def own(self, thing: AbstractRoute | AbstractResource, extension: str) -> None:
        """Note that ``thing``, mounted on the app's router at start, is ``extension``'s."""
        self._owners[thing] = extension

    def serves_from_start(self, extension: str) -> bool:
        """Whether what ``extension`` mounted at start answers now: it is loaded and no later mount replaced it."""
        return extension not in self._slots and self._manager.is_loaded(extension)

    def current(self, slot: Slot) -> bool:
        """Whether ``slot`` answers now: its extension is loaded and this is its latest mount."""
        return self._slots.get(slot.extension) is slot and self._manager.is_loaded(slot.extension)

    def _live_slots(self) -> list[Slot]:
        # the load order is the order extensions were mounted at start: first loaded, first served
        return [s for name in self._manager.load_order if (s := self._slots.get(name)) is not None and self.current(s)]

    def _live_at_start(self, resource: AbstractResource, match: Any) -> bool:
        owner = self._owners.get(getattr(match, "route", None)) or self._owners.get(resource)  # type: ignore[arg-type]
        return owner is None or self.serves_from_start(owner)

    def _main_index(self) -> dict[str, list[AbstractResource]]:
        if self._main is None or not self._app.router.frozen:  # (resources may still be added before it starts)
            index: dict[str, list[AbstractResource]] = {}
            for resource in self._app.router.resources():
                if not isinstance(resource, MatchedSubAppResource):  # those are tried before this one
                    index.setdefault(index_key(resource.canonical), []).append(resource)
            self._main = index
        return self._main

    def claims(self, excluding: str) -> Iterator[tuple[str, AbstractResource, AbstractRoute | None]]:
        """``(owner, resource, route)`` of everything that answers now, but ``excluding``'s (its own earlier mount):
        what an extension mounted next must not clash with. ``route`` is None for a sub-application or
        another prefix; ``owner`` is "jan (built-in)" or "extension 'name'"."""
        for resource in self._app.router.resources():
            if resource is self or isinstance(resource, MatchedSubAppResource):
                continue
            for route in ([None] if isinstance(resource, web.PrefixedSubAppResource) else list(resource)):
                owner = self._owners.get(route) if route is not None else None  # type: ignore[arg-type]
                owner = owner or self._owners.get(resource)
                if owner == excluding or (owner is not None and not self.serves_from_start(owner)):
                    continue
                yield ("jan (built-in)" if owner is None else f"extension {owner!r}"), resource, route
        for slot in self._live_slots():
            if slot.extension == excluding:
                continue
            for resource in slot.app.router.resources():
                for route in ([None] if isinstance(resource, web.PrefixedSubAppResource) else list(resource)):
                    yield f"extension {slot.extension!r}", resource, route

    # -- admission: the manager's hook ----------------------------------------------------------------------
    async def admit(self, name: str, routes: list[RouteSpec], subapps: list[SubAppSpec]) -> str | None:
        """The manager's admission hook: mount ``name``'s routes and sub-applications in a new slot that replaces
        its earlier mount; None once they are served, or why they cannot be. Admissions run one at a time, each
        checked against what the others mounted."""
        async with self._admitting:
            if not routes and not subapps and name not in self._owners.values():
                # nothing to serve, nor a mount at start to pass over: no slot, so requests keep the router's walk
                old = self._slots.pop(name, None)
                if old is not None:
                    await self._close(old)
                return None
            slot = Slot(name)
            why = self._build(self, slot, routes, subapps)
            if why is not None:
                return why
            try:
                slot.app.freeze()
                # its sub-applications' on_startup, as the app's own ran them when it started (extensions' code)
                await call_bounded(slot.app.startup, timeout=self._manager.load_timeout,
                                   what=f"extension {name}: on_startup of its sub-applications")
            except asyncio.CancelledError:
                await self._close(slot)
                raise
            except Exception as exc:  # noqa: BLE001 - an extension's sub-app never stops jan (a timeout included)
                await self._close(slot)
                return f"its sub-applications could not be started: {type(exc).__name__}: {exc}"
            for resource in slot.app.router.resources():
                slot.index.setdefault(index_key(resource.canonical), []).append(resource)
            old, self._slots[name] = self._slots.get(name), slot
        if old is not None:
            await self._close(old)
        return None

    async def _close(self, slot: Slot) -> None:
        """Shut a slot's sub-applications down (their on_shutdown and on_cleanup), bounded; a failure is logged."""
        if not slot.app.frozen:
            return
        for step in (slot.app.shutdown, slot.app.cleanup):
            try:
                await call_bounded(step, timeout=self._manager.unload_timeout,
                                   what=f"extension {slot.extension}: its sub-applications' {step.__name__}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an extension's sub-app never stops jan
                log.warning("extension %s: %s of its sub-applications failed: %s: %s", slot.extension,
                            step.__name__, type(exc).__name__, exc)

    async def close(self, _app: web.Application) -> None:
        """At the app's cleanup: admit nothing more (the manager may outlive the app), shut the slots down."""
        if self._manager.admission == self.admit:
            self._manager.set_admission(None)
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await self._close(slot)

    # -- resolving --------------------------------------------------------------------------------------
    async def resolve(self, request: web.Request) -> tuple[Any, set[str]]:
        if not self._slots and not self._manager.loading_routes() and not self._manager.loading_subapps():
            return None, set()  # the app's router alone decides, as it would without this resource
        allowed: set[str] = set()
        main = self._main_index()
        slots = self._live_slots()
        for key in walked_keys(_path(request)):
            for resource in main.get(key, ()):
                match, methods = await resource.resolve(request)
                if match is None:
                    allowed |= methods
                elif self._live_at_start(resource, match):
                    return match, methods
            for slot in slots:
                for resource in slot.index.get(key, ()):
                    match, methods = await resource.resolve(request)
                    if match is not None:
                        return match, methods
                    allowed |= methods
        loading = await self._loading_match(request)
        if loading is not None:
            return loading, set()
        return None, allowed

    async def _loading_match(self, request: web.Request) -> Any:
        """A match whose handler says "still loading" (503) when the request is for a route or sub-application an
        extension still loading has contributed so far; None otherwise."""
        specs: tuple[object, ...] = (*self._manager.loading_routes(), *self._manager.loading_subapps())
        if not specs:
            return None
        cached = self._loading
        if cached is None or len(cached[0]) != len(specs) or any(a is not b for a, b in zip(cached[0], specs)):
            cached = self._loading = (specs, _loading_router(specs))
        match = await cached[1].resolve(request)
        return match if match.http_exception is None else None

    # -- the rest of a resource ----------------------------------------------------------------------------
    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, *args: str, **kwargs: str) -> Any:
        raise RuntimeError("url_for() of the routes extensions mounted late: use their own resource")

    def get_info(self) -> dict[str, Any]:
        return {"extensions": [s.extension for s in self._live_slots()]}

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("jan's app is not mounted as a sub-application")

    def raw_match(self, path: str) -> bool:
        return False  # never the resource a new route is added to

    def __len__(self) -> int:
        return sum(len(s.app.router.routes()) for s in self._live_slots())

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter([route for s in self._live_slots() for route in s.app.router.routes()])

    def __repr__(self) -> str:
        return f"<LateRoutes {sorted(self._slots)}>"


def _path(request: web.Request) -> str:
    url = request.rel_url
    return getattr(url, "path_safe", None) or url.raw_path  # what aiohttp's resources match (older yarl: raw)


def index_key(canonical: str) -> str:
    """The leading part of a resource's path aiohttp's router files it under (its static part, to the last '/')."""
    if "{" in canonical:
        canonical = canonical.partition("{")[0].rpartition("/")[0]
    return canonical.rstrip("/") or "/"


def walked_keys(path: str) -> Iterator[str]:
    """The parts of ``path`` aiohttp's router tries resources under, longest first: /a/b, /a, /."""
    part = path
    while part:
        yield part
        if part == "/":
            return
        part = part.rpartition("/")[0] or "/"


def _loading_router(specs: tuple[object, ...]) -> web.UrlDispatcher:
    """A router matching every path (any method) the specs of extensions still loading cover, each to a handler
    raising :class:`ExtensionLoadingError` for its extension (a 503 with ``Retry-After``)."""
    router = web.UrlDispatcher()
    for spec in specs:
        paths = [spec.path] if isinstance(spec, RouteSpec) else [spec.prefix, spec.prefix + "/{tail:.*}"]  # type: ignore[attr-defined]
        for path in paths:
            try:
                router.add_route("*", path, _still_loading(spec.extension))  # type: ignore[attr-defined]
            except (ValueError, RuntimeError, TypeError):
                continue  # a malformed path (its load is refused), or one another loading extension has too
    return router


def _still_loading(extension: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise ExtensionLoadingError(f"extension {extension!r} is not loaded yet: {describe_loading((extension,))}",
                                    loading=(extension,))

    return handler
