"""Mounting extensions' HTTP routes and sub-applications on the aiohttp app (core knows no web framework)."""

from __future__ import annotations

import re
from typing import Any, Callable

from aiohttp import web

from jan.core import ExtensionManager, RouteSpec

__all__ = ["mount_extensions"]


def mount_extensions(manager: ExtensionManager, app: web.Application) -> dict[str, str]:
    """Add the routes and sub-apps loaded extensions contributed to ``app`` (before it starts).

    Handlers are wrapped so that a route answers 404 while its extension is not loaded
    (disabled at runtime) and reaches the current handler after it is re-enabled. Routes of an
    extension enabled after the server started appear at the next start (aiohttp freezes its
    router).

    An extension whose route clashes with one already on ``app`` (a built-in's, or an extension's
    loaded before it) is not mounted at all: aiohttp would either raise (same method on the same
    path, which stopped the whole server) or keep the first route and silently never call the
    second. Returns ``{extension: why}`` for those; the caller marks them failed
    (:meth:`ExtensionManager.refuse`), since a half-mounted extension would surprise its users.
    """
    taken = {(r.method, _shape(r.resource.canonical)): (r.method, r.resource.canonical, _owner(r))
             for r in app.router.routes() if r.resource is not None}
    refused: dict[str, str] = {}
    by_extension: dict[str, list[RouteSpec]] = {}
    for spec in manager.routes():
        by_extension.setdefault(spec.extension, []).append(spec)
    for extension, specs in by_extension.items():
        mine: dict[tuple[str, str], tuple[str, str, str]] = {}
        clash = None
        for spec in specs:
            clash = _clash(spec, {**taken, **mine})
            if clash:
                break
            mine[(spec.method, _shape(spec.path))] = (spec.method, spec.path, f"extension {extension!r}")
        if clash:
            refused[extension] = clash
            continue
        try:
            for spec in specs:
                handler: Any = spec.handler
                if not (isinstance(handler, type) and issubclass(handler, web.View)):
                    handler = _gated_handler(manager, spec)
                app.router.add_route(spec.method, spec.path, handler, name=spec.name, **spec.kwargs)
        except (ValueError, RuntimeError, TypeError) as exc:
            # e.g. a duplicate route name or a malformed path: refuse the extension, keep the server.
            # Routes already added stay on the router but answer 404 once it is refused (gated).
            refused[extension] = f"its route {spec.method} {spec.path} could not be mounted: {exc}"
            continue
        taken.update(mine)
    for sub in manager.subapps():
        if sub.extension in refused:
            continue
        try:
            subapp = sub.factory()
            subapp.middlewares.append(_gate_middleware(manager, sub.extension))
            app.add_subapp(sub.prefix, subapp)
        except Exception as exc:  # noqa: BLE001 - an extension's sub-app (its factory, its prefix) never stops jan
            refused[sub.extension] = f"its sub-application at {sub.prefix} could not be mounted: {type(exc).__name__}: {exc}"
    return refused


def _owner(route: Any) -> str:
    handler = getattr(route, "handler", None)
    qualname = getattr(handler, "__qualname__", "")
    # Extension handlers are named "<extension>:<handler>" by _gated_handler.
    if ":" in qualname:
        return f"extension {qualname.split(':', 1)[0]!r}"
    return "jan (built-in)"


def _shape(path: str) -> str:
    """A path with its plain variables unnamed: ``/v1/models/{model}`` and ``/v1/models/{id}`` are one route."""
    return re.sub(r"\{[^}:]*\}", "{}", path)


def _clash(spec: RouteSpec, taken: dict[tuple[str, str], tuple[str, str, str]]) -> str | None:
    """Why ``spec`` cannot be mounted next to the routes in ``taken`` (None when it can).

    Only the same path (and a method both answer) is a clash: a static path under a built-in's variable one
    (``GET /v1/extensions/hello`` next to ``GET /v1/extensions/{name}``) is reached, aiohttp resolves the
    longest static prefix first."""
    shape = _shape(spec.path)
    for (method, path_shape), (_, path, owner) in taken.items():
        if path_shape == shape and (method == spec.method or "*" in (method, spec.method)):
            return (f"its route {spec.method} {spec.path} is already served by {owner} "
                    f"({method} {path}); refused so that neither is silently shadowed")
    return None


def _gated_handler(manager: ExtensionManager, spec: RouteSpec) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        target = manager.route_handler(spec.extension, spec.method, spec.path)
        if target is None:
            raise web.HTTPNotFound(text=f"extension {spec.extension!r} is not loaded")
        return await target(request)

    handler.__name__ = getattr(spec.handler, "__name__", "handler")
    handler.__qualname__ = f"{spec.extension}:{handler.__name__}"
    return handler


def _gate_middleware(manager: ExtensionManager, extension: str) -> Callable[..., Any]:
    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if not manager.is_loaded(extension):
            raise web.HTTPNotFound(text=f"extension {extension!r} is not loaded")
        return await handler(request)

    return gate
