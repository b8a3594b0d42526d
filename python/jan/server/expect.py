"""Answering ``Expect: 100-continue`` after the checks a request must pass, not before them.

aiohttp answers a request's ``Expect: 100-continue`` with ``100 Continue`` from the route's expect handler, which
runs before any middleware: a request without the API key, or one whose Content-Length is over its route's limit,
was invited to send its whole body (curl asks before every large upload) and only then refused. Every route gets
jan's expect handler instead (:func:`install`): it runs the app's checks that need no body (Host, CORS, Origin,
Content-Type and -Encoding, the API key: the middlewares themselves, in their order, so the answer is the one they
give) and the declared size against the route's limit (:func:`jan.server.body_read.declared_size_check`, the
limit the route declares); a refusal is the final answer, sent without ``100
Continue`` and ending the connection (the body is never read); every other request gets ``100 Continue`` as
before, and an ``Expect`` other than ``100-continue`` stays aiohttp's 417.

aiohttp takes an expect handler per route only (``add_route(..., expect_handler=)``), and routes reach the router
from many places (jan's tables, the lazily imported ones, extensions' routes and sub-applications, those mounted
after the start, the 404/405 stand-ins): the router's ``resolve`` is wrapped so that whatever route a request
resolves to carries jan's handler, wrapped around the one it had.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.web_protocol import RequestPayloadError

__all__ = ["before_body", "install"]

Check = Callable[[web.Request], Awaitable["web.StreamResponse | None"]]
Middleware = Callable[..., Awaitable[Any]]


def before_body(middlewares: Iterable[Middleware], last: Check) -> Check:
    """``last`` inside ``middlewares`` (the app's, outermost first): a request's refusal (a response) by the first
    of them that refuses it, or None when all pass it on."""
    chain = list(middlewares)

    async def checks(request: web.Request) -> web.StreamResponse | None:
        handler: Any = last
        for middleware in reversed(chain):
            handler = functools.partial(middleware, handler=handler)
        return await handler(request)

    return checks


async def _expect(request: web.Request, *, original: Callable[[web.Request], Awaitable[Any]],
                  checks: Check) -> web.StreamResponse | None:
    if request.version == HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        refusal = await checks(request)
        if refusal is not None:
            # The client waits for 100 Continue before sending its body, or sends it anyway after a while: either
            # way the connection's next bytes are unknown, so it ends with the answer (RFC 9110, 10.1.1).
            refusal.force_close()
            # (and aiohttp reads no body it did not invite: jan.server.validation.end_unreadable_body)
            request.content.set_exception(RequestPayloadError("the request was refused before its body"))
            return refusal
    return await original(request)  # 100 Continue (or aiohttp's 417 for an Expect it does not know)


def install(app: web.Application, checks: Check) -> None:
    """Give every route ``app`` resolves to jan's expect handler, running ``checks`` before ``100 Continue``."""
    router = app.router
    resolve = router.resolve

    async def resolve_with_expect(request: web.Request) -> Any:
        match_info = await resolve(request)
        route = getattr(match_info, "route", None)
        # (a private attribute: an aiohttp without it keeps its own expect handler)
        current = getattr(route, "_expect_handler", None)
        if current is not None and not getattr(current, "jan_expect", False):
            handler = functools.partial(_expect, original=current, checks=checks)
            handler.jan_expect = True  # type: ignore[attr-defined]
            route._expect_handler = handler  # type: ignore[union-attr]
        return match_info

    router.resolve = resolve_with_expect  # type: ignore[method-assign]
