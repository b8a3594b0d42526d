"""Mounting extensions' HTTP routes and sub-applications on the aiohttp app (core knows no web framework)."""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from jan.core import ExtensionManager, RouteSpec

__all__ = ["mount_extensions"]


def mount_extensions(manager: ExtensionManager, app: web.Application) -> None:
    """Add the routes and sub-apps loaded extensions contributed to ``app`` (before it starts).

    Handlers are wrapped so that a route answers 404 while its extension is not loaded
    (disabled at runtime) and reaches the current handler after it is re-enabled. Routes of an
    extension enabled after the server started appear at the next start (aiohttp freezes its
    router).
    """
    for spec in manager.routes():
        handler: Any = spec.handler
        if not (isinstance(handler, type) and issubclass(handler, web.View)):
            handler = _gated_handler(manager, spec)
        app.router.add_route(spec.method, spec.path, handler, name=spec.name, **spec.kwargs)
    for sub in manager.subapps():
        subapp = sub.factory()
        subapp.middlewares.append(_gate_middleware(manager, sub.extension))
        app.add_subapp(sub.prefix, subapp)


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
