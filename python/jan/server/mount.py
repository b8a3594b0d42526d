"""Mounting extensions' HTTP routes and sub-applications on the aiohttp app (core knows no web framework)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Callable

from aiohttp import web

from jan.core import ExtensionManager, RouteSpec, SubAppSpec
from jan.core.bounded import no_exit
from jan.server.errors import APIError, as_http_exception, to_api_error
from jan.server.late_routes import LateRoutes, Slot

__all__ = ["mount_extensions"]

log = logging.getLogger("jan.server")


def mount_extensions(manager: ExtensionManager, app: web.Application) -> dict[str, str]:
    """Add the routes and sub-apps loaded extensions contributed to ``app`` (before it starts), and serve those of
    every extension loaded later (one still loading now, or enabled at runtime) as its load ends.

    Handlers are wrapped so that a route answers 404 while its extension is not loaded (disabled at runtime)
    and reaches the current handler after it is re-enabled. aiohttp freezes its router when the app starts:
    what extensions contribute later is mounted by :class:`~jan.server.late_routes.LateRoutes` (the manager's
    admission hook), answering as if it had been mounted here, with the same checks.

    An extension is mounted whole or not at all. One whose route clashes with one already on ``app``
    (a built-in's, or an extension's loaded before it) is refused: aiohttp would either raise (same
    method on the same path, which stopped the whole server) or keep the first route and silently
    never call the second. So is one whose route or sub-application aiohttp would not take (a
    malformed path, a route name already used, a failing sub-app factory). Everything is checked
    before anything of the extension is added, because aiohttp cannot remove a route: a refused
    extension leaves nothing on the router. Returns ``{extension: why}`` for those; the caller marks
    them failed (:meth:`ExtensionManager.refuse`), since a half-mounted extension would surprise its users.
    An extension refused later fails its load with the reason.
    """
    late = LateRoutes(manager, app, _fill_slot)
    refused = _mount_at_start(manager, app, late)
    app.router.register_resource(late)
    # set with no await since the routes above were read: no load can end unmounted in between
    manager.set_admission(late.admit)
    app.on_cleanup.append(late.close)
    return refused


def _mount_at_start(manager: ExtensionManager, app: web.Application, late: LateRoutes) -> dict[str, str]:
    taken = {(r.method, _shape(r.resource.canonical)): (r.method, r.resource.canonical, _owner(r))
             for r in app.router.routes() if r.resource is not None}
    prefixes = {r.canonical: "jan (built-in)" for r in app.router.resources() if _is_subapp(r)}
    refused: dict[str, str] = {}
    routes: dict[str, list[RouteSpec]] = {}
    subapps: dict[str, list[SubAppSpec]] = {}
    for spec in manager.routes():
        routes.setdefault(spec.extension, []).append(spec)
    for sub in manager.subapps():
        subapps.setdefault(sub.extension, []).append(sub)
    for extension in [n for n in manager.load_order if n in routes or n in subapps]:  # first loaded, first served
        serving = _serving_from_start(late, extension)
        mine: dict[tuple[str, str], tuple[str, str, str]] = {}
        try:
            for spec in routes.get(extension, []):
                clash = _clash(spec, {**taken, **mine})
                if clash:
                    raise _Refused(clash)
                mine[(spec.method, _shape(spec.path))] = (spec.method, spec.path, f"extension {extension!r}")
            _check_routes(routes.get(extension, []), app)
            built = _build_subapps(manager, subapps.get(extension, []), prefixes, serving)
        except _Refused as exc:
            refused[extension] = str(exc)
            continue
        try:
            # sub-apps first: add_subapp may still refuse what could not be tried on a scratch router
            for prefix, subapp in built:
                late.own(app.add_subapp(prefix, subapp), extension)
            for spec in routes.get(extension, []):
                route = app.router.add_route(spec.method, spec.path, _gated_handler(manager, spec, serving),
                                             name=spec.name, **spec.kwargs)
                late.own(route, extension)
        except (ValueError, RuntimeError, TypeError) as exc:
            # not expected after the checks; what was added answers 404 once the extension is refused (gated)
            refused[extension] = f"its routes could not be mounted: {type(exc).__name__}: {exc}"
            continue
        taken.update(mine)
        prefixes.update({prefix: f"extension {extension!r}" for prefix, _ in built})
    return refused


def _serving_from_start(late: LateRoutes, extension: str) -> Callable[[], bool]:
    return lambda: late.serves_from_start(extension)


def _fill_slot(late: LateRoutes, slot: Slot, routes: list[RouteSpec], subapps: list[SubAppSpec]) -> str | None:
    """Check an extension admitted after the app started against what answers now, as :func:`mount_extensions`
    does at start, and add its routes and sub-apps to its (private, unserved) ``slot``; why not, or None."""
    taken: dict[tuple[str, str], tuple[str, str, str]] = {}
    prefixes: dict[str, str] = {}
    names: dict[str, str] = {}
    for owner, resource, route in late.claims(excluding=slot.extension):
        if route is None:
            prefixes[resource.canonical] = owner
        else:
            taken[(route.method, _shape(resource.canonical))] = (route.method, resource.canonical, owner)
        if resource.name is not None:
            names[resource.name] = resource.canonical
    serving = lambda: late.current(slot)  # noqa: E731
    mine: dict[tuple[str, str], tuple[str, str, str]] = {}
    try:
        for spec in routes:
            clash = _clash(spec, {**taken, **mine})
            if clash:
                raise _Refused(clash)
            mine[(spec.method, _shape(spec.path))] = (spec.method, spec.path, f"extension {slot.extension!r}")
            _check_name(spec, names)
        for prefix, subapp in _build_subapps(late.manager, subapps, prefixes, serving):
            try:
                slot.app.add_subapp(prefix, subapp)
            except (ValueError, RuntimeError, TypeError) as exc:
                raise _Refused(f"its sub-application at {prefix} could not be mounted: {exc}") from None
        for spec in routes:  # on the slot's own router: what aiohttp refuses leaves nothing that is served
            _add_route(slot.app.router, spec, _gated_handler(late.manager, spec, serving))
    except _Refused as exc:
        return str(exc)
    return None


class _Refused(Exception):
    """Why an extension is not mounted (found before anything of it was added)."""


def _check_routes(specs: list[RouteSpec], app: web.Application) -> None:
    """Add ``specs`` to a scratch router, so that what aiohttp refuses (a malformed path, a bad or doubled
    route name, bad ``kwargs``) refuses the extension before any of its routes is on the real one."""
    scratch = web.Application()
    used = {name: resource.canonical for name, resource in app.router.named_resources().items()}
    for spec in specs:
        _check_name(spec, used)
        _add_route(scratch.router, spec, _gated_handler(None, spec, lambda: False))


def _check_name(spec: RouteSpec, used: dict[str, str]) -> None:
    if spec.name is not None and spec.name in used:
        raise _Refused(f"its route {spec.method} {spec.path} is named {spec.name!r}, a name already used by "
                       f"{used[spec.name]}")


def _add_route(router: web.UrlDispatcher, spec: RouteSpec, handler: Callable[[web.Request], Any]) -> Any:
    try:
        return router.add_route(spec.method, spec.path, handler, name=spec.name, **spec.kwargs)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise _Refused(f"its route {spec.method} {spec.path} could not be mounted: {exc}") from None


def _build_subapps(manager: ExtensionManager, subs: list[SubAppSpec], prefixes: dict[str, str],
                   serving: Callable[[], bool]) -> list[tuple[str, web.Application]]:
    """Each sub-app built by its factory and gated, checked as far as aiohttp's ``add_subapp`` would check it."""
    built: list[tuple[str, web.Application]] = []
    for sub in subs:
        try:
            subapp = sub.factory()
        except Exception as exc:  # noqa: BLE001 - an extension's sub-app factory never stops jan
            raise _Refused(f"its sub-application at {sub.prefix} could not be mounted: "
                           f"{type(exc).__name__}: {exc}") from None
        if not isinstance(subapp, web.Application):
            raise _Refused(f"its sub-application at {sub.prefix} could not be mounted: "
                           f"the factory returned {type(subapp).__name__}, not an aiohttp.web.Application")
        if subapp.frozen or any(other is subapp for _, other in built):
            raise _Refused(f"its sub-application at {sub.prefix} could not be mounted: "
                           f"the factory returned an application that is mounted already")
        owner = prefixes.get(sub.prefix) or next((f"extension {sub.extension!r}" for p, _ in built if p == sub.prefix), None)
        if owner:
            raise _Refused(f"its sub-application at {sub.prefix} is already served by {owner}; refused so that "
                           f"neither is silently shadowed")
        subapp.middlewares.append(_gate_middleware(sub.extension, serving))
        built.append((sub.prefix, subapp))
    return built


def _is_subapp(resource: Any) -> bool:
    return isinstance(resource, web.PrefixedSubAppResource)


def _owner(route: Any) -> str:
    handler = getattr(route, "handler", None)
    if getattr(handler, "lazy_route", None) is not None:  # a built-in route whose module loads on first use
        return "jan (built-in)"  # (its stand-in's name has colons too: jan.server.route_index)
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


def _gated_handler(manager: ExtensionManager | None, spec: RouteSpec,
                   serving: Callable[[], bool]) -> Callable[[web.Request], Any]:
    """The handler mounted for ``spec``: 404 while this mount of it does not answer (its extension is not loaded,
    or a later mount replaced it), else the extension's current handler.

    A web.View class is gated too (awaiting View(request) runs it): left bare, it would keep answering
    after its extension was disabled or refused."""
    async def handler(request: web.Request) -> web.StreamResponse:
        target = manager.route_handler(spec.extension, spec.method, spec.path) if manager is not None and serving() else None
        if target is None:
            raise _not_loaded(spec.extension)
        return await _answer(spec.extension, request, target)

    handler.__name__ = getattr(spec.handler, "__name__", "handler")
    handler.__qualname__ = f"{spec.extension}:{handler.__name__}"
    return handler


def _gate_middleware(extension: str, serving: Callable[[], bool]) -> Callable[..., Any]:
    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if not serving():
            raise _not_loaded(extension)
        return await _answer(extension, request, handler)

    return gate


def _not_loaded(extension: str) -> web.HTTPException:
    """The 404 of a route whose extension is not loaded now (disabled, or failed), naming it."""
    return as_http_exception(APIError(404, f"Unknown route: it is served by the extension {extension!r}, which is "
                                      f"not loaded", code="not_found"))


async def _answer(extension: str, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """``handler``'s response, or a 500 naming ``extension`` (logged with its traceback) when the handler raised
    something no error maps to a status, or returned no response: left to aiohttp, the first became jan's
    anonymous 500 and the second a bare text 500, neither saying whose fault it was.

    What the handler raises that jan maps (``web.HTTPException``, ``APIError``, ``ValueError`` -> 400,
    ``NotFoundError`` -> 404, ...) passes on unchanged; so does a cancellation (the client went away)."""
    try:
        response = await no_exit(handler(request))
    except (web.HTTPException, asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - one extension's bug is its own 500, named
        err = to_api_error(exc, log_internal=False)
        if err.status != 500 or err.code != "internal_error":
            raise
        log.error("extension %r: %s %s failed", extension, request.method, request.path, exc_info=exc)
        raise as_http_exception(APIError(500, f"The extension {extension!r} had an error while processing your "
                                         f"request: {type(exc).__name__} (see the server log)", type="server_error",
                                         code="extension_error")) from None
    if not isinstance(response, web.StreamResponse):
        log.error("extension %r: %s %s returned %s, not an aiohttp response", extension, request.method,
                  request.path, type(response).__name__)
        raise as_http_exception(APIError(500, f"The extension {extension!r} answered {request.method} {request.path} "
                                         f"with {type(response).__name__}, not a response", type="server_error",
                                         code="extension_error"))
    return response
