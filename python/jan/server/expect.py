"""Answering ``Expect: 100-continue`` after the checks a request must pass, not before them.

aiohttp answers a request's ``Expect: 100-continue`` with ``100 Continue`` from the route's expect handler, which
runs before any middleware: a request without the API key, or one whose Content-Length is over its route's limit,
was invited to send its whole body (curl asks before every large upload) and only then refused. Every route gets
jan's expect handler instead (:func:`install`): it runs the app's checks that need no body (Host, CORS, Origin,
Content-Type and -Encoding, the API key: the middlewares themselves, in their order, so the answer is the one they
give) and the declared size against the route's limit; a refusal is the final answer, sent without ``100
Continue`` and ending the connection (the body is never read); every other request gets ``100 Continue`` as
before, and an ``Expect`` other than ``100-continue`` stays aiohttp's 417.

aiohttp takes an expect handler per route only (``add_route(..., expect_handler=)``), and routes reach the router
from many places (jan's tables, the lazily imported ones, extensions' routes and sub-applications, those mounted
after the start, the 404/405 stand-ins): the router's ``resolve`` is wrapped so that whatever route a request
resolves to carries jan's handler, wrapped around the one it had.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from jan.server.config import ServerConfig
from jan.server.errors import APIError

__all__ = ["FORM_OVERHEAD_BYTES", "blob_space_error", "declared_size_check", "file_too_large", "install",
           "upload_too_large"]

#: What a form holds besides the file's own bytes (part headers, the boundaries, the small fields): a body whose
#: Content-Length passes the file's limit by more than this cannot hold an allowed file, and is refused unread.
FORM_OVERHEAD_BYTES = 64 * 1024

Check = Callable[[web.Request], Awaitable["web.StreamResponse | None"]]
Middleware = Callable[..., Awaitable[Any]]


def upload_too_large(limit: int) -> APIError:
    """The 413 of ``POST /v1/files`` for a file over the server's ``max_upload_bytes``."""
    return APIError(413, f"file: larger than {limit} bytes, the most this server stores (its max_upload_bytes)",
                    param="file", code="file_too_large")


def file_too_large(name: str, limit: int) -> APIError:
    """The 413 of a form whose file part ``name`` is over the ``limit`` bytes its route reads (an audio clip)."""
    return APIError(413, f"{name}: larger than {limit} bytes, the most this route reads", param=name,
                    code="file_too_large")


def blob_space_error(free: int, size: int, folder: object) -> str | None:
    """Why an Ollama blob of ``size`` bytes cannot be stored where ``free`` bytes are free, or None."""
    if size > free:
        return f"the blob is {size} bytes and only {free} bytes are free in {folder}"
    return None


async def _files_refusal(request: web.Request, config: ServerConfig, size: int) -> web.StreamResponse | None:
    if size > config.max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise upload_too_large(config.max_upload_bytes)
    return None


async def _audio_refusal(request: web.Request, config: ServerConfig, size: int) -> web.StreamResponse | None:
    from jan.engine.media import DEFAULT_LIMITS

    if size > DEFAULT_LIMITS.max_bytes + FORM_OVERHEAD_BYTES:
        raise file_too_large("file", DEFAULT_LIMITS.max_bytes)
    return None


async def _blob_refusal(request: web.Request, config: ServerConfig, size: int) -> web.StreamResponse | None:
    import asyncio

    from jan.store.blobs import BlobStore, InvalidDigestError

    blobs = BlobStore(config.data_folder)
    try:
        path = blobs.path(request.match_info.get("digest", ""))
    except InvalidDigestError:
        return None  # the route's own 400 (no body needed to tell)
    if await asyncio.to_thread(path.is_file):
        return None  # a blob held already is answered 200 whatever its size (the route drains the body)
    why = blob_space_error(await asyncio.to_thread(blobs.free_bytes), size, blobs.folder)
    if why is None:
        return None
    raise APIError(413, why)  # (in Ollama's shape: {"error": why}, as the route answers it)


#: The routes that stream their body rather than read it whole, each with its own limit (``max_body_bytes``, the
#: limit of aiohttp's ``read()``, is not theirs): (method, path) -> the refusal of a declared size, or None.
STREAMED: dict[tuple[str, str], Callable[[web.Request, ServerConfig, int], Awaitable[Any]]] = {
    ("POST", "/v1/files"): _files_refusal,
    ("POST", "/api/blobs/{digest}"): _blob_refusal,
    **{("POST", prefix + "/audio/" + task): _audio_refusal for prefix in ("", "/v1")
       for task in ("transcriptions", "translations")},
}

_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def declared_size_check(config: ServerConfig, own_handlers: Collection[object]) -> Check:
    """The refusal of a request whose Content-Length is over its route's limit: a streamed upload's own
    (:data:`STREAMED`), ``max_body_bytes`` for jan's other routes (what their ``read()`` allows). An extension's
    route reads its body as it chooses: its size is not judged here."""
    own = set(own_handlers)

    async def check(request: web.Request) -> web.StreamResponse | None:
        size = request.content_length
        if size is None or request.method not in _BODY_METHODS:
            return None
        resource = getattr(request.match_info.route, "resource", None)
        streamed = STREAMED.get((request.method, getattr(resource, "canonical", None)))
        if streamed is not None and request.match_info.handler in own:
            return await streamed(request, config, size)
        if request.match_info.handler in own and size > config.max_body_bytes:
            # what aiohttp's read() raises past client_max_size, before a byte of the body is read
            raise web.HTTPRequestEntityTooLarge(max_size=config.max_body_bytes, actual_size=size)
        return None

    return check


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
