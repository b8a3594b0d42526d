"""How every request's body is read: within the server's ``read_timeout`` between two of its pieces, and within its
route's size limit whatever its framing.

aiohttp waits for a body's next bytes as long as the client keeps the connection open: a client that declared a body
(a Content-Length, or chunked) and sent none of it, or stopped halfway, held its connection and its route's handler
forever. And a route's limit was judged from the declared Content-Length only (before ``100 Continue``): a chunked
body, or one sent without ``Expect``, was read on until the route's own reader stopped it, if it did.

Every body is read through aiohttp's ``StreamReader`` (``request.read()``, the multipart reader, ``iter_any()``),
which waits for its next bytes in one place, under its timer context: :class:`_BodyGuard` is that timer for the time
the request's handler runs (:func:`body_read_middleware`). While a reader waits, no byte for ``read_timeout``
seconds fails the body with a 408; and before and after each wait, more bytes received than the route's limit fail
it with the route's 413. The failure is the body's own (``set_exception``): whatever reads it next raises it, the
error middleware answers it in the route's dialect, and the connection ends with the answer
(:func:`jan.server.validation.end_unreadable_body`): what is left of the body is never read.

Each of jan's routes declares its limit once, on its handler (:func:`body_limit`; :data:`JSON_BODY`, the server's
``max_body_bytes``, for every other one): the limit judged while the body is read here, and the declared size judged
before it is read (:func:`declared_size_check`, run here and by the ``Expect: 100-continue`` check,
:mod:`jan.server.expect`). An extension's route reads its body as it chooses: only the time bound applies to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.helpers import BaseTimerContext

from jan.server.config import ServerConfig
from jan.server.errors import APIError

__all__ = ["FORM_OVERHEAD_BYTES", "JSON_BODY", "BodyLimit", "blob_space_error", "body_limit", "body_read_middleware",
           "declared_size_check", "file_too_large", "read_timeout_error", "route_body_limit", "upload_too_large"]

#: What a form holds besides the file's own bytes (part headers, the boundaries, the small fields): a body past the
#: file's limit by more than this cannot hold an allowed file, and is refused.
FORM_OVERHEAD_BYTES = 64 * 1024

_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class BodyLimit:
    """What a route's body may be. ``limit``: its most bytes under a server's config (None: no fixed bound), judged
    on the declared size and as the body is read; ``too_large``: the 413 past it (config, size seen); ``declared``:
    a further refusal of a declared size, raised before the body is read (an Ollama blob against the disk's free
    space)."""

    limit: Callable[[ServerConfig], int | None]
    too_large: Callable[[ServerConfig, int], Exception]
    declared: Callable[[web.Request, ServerConfig, int], Awaitable[None]] | None = None


#: jan's JSON routes: ``max_body_bytes``, what aiohttp's ``read()`` allows (its ``client_max_size``), with its 413.
JSON_BODY = BodyLimit(lambda config: config.max_body_bytes,
                      lambda config, size: web.HTTPRequestEntityTooLarge(max_size=config.max_body_bytes,
                                                                         actual_size=size))


def body_limit(limit: BodyLimit) -> Callable[[Any], Any]:
    """A route's body limit, declared on its handler (under its ``@routes.post``): the one both the declared size
    check (``Expect`` included) and the reading of its body go by."""
    def declare(handler: Any) -> Any:
        handler.jan_body_limit = limit
        return handler
    return declare


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


def read_timeout_error(seconds: float) -> APIError:
    """The 408 of a body that stopped arriving (nothing of it for ``seconds``, the server's ``read_timeout``)."""
    return APIError(408, f"The request body stopped arriving: none of it came for {seconds:g} seconds (this "
                         "server's read_timeout); send it whole, without pauses that long", code="request_timeout")


async def route_body_limit(request: web.Request, own_handlers: Collection[object]) -> BodyLimit | None:
    """The limit of the body of the route ``request`` resolved to: the one its handler declares, :data:`JSON_BODY`
    for jan's others, None for an extension's. A route whose module loads on first use (:mod:`route_index`) is
    imported for it, off the loop (the request is about to import it anyway); one that cannot be imported is left
    to fail as its handler (a 500)."""
    handler = request.match_info.handler
    if handler not in own_handlers:
        return None
    from jan.server import route_index

    if getattr(handler, "lazy_route", None) is not None:
        try:
            handler = await asyncio.to_thread(route_index.target, handler)
        except route_index.ModuleLoadError:
            return JSON_BODY
    return getattr(handler, "jan_body_limit", JSON_BODY)


async def _judge_declared(request: web.Request, config: ServerConfig, limit: BodyLimit | None) -> None:
    size = request.content_length
    if limit is None or size is None or request.method not in _BODY_METHODS:
        return
    if limit.declared is not None:
        await limit.declared(request, config, size)
    bound = limit.limit(config)
    if bound is not None and size > bound:
        raise limit.too_large(config, size)


def declared_size_check(config: ServerConfig, own_handlers: Collection[object]):
    """The refusal (raised) of a request whose declared Content-Length its route does not take: run before the
    body is read, before ``100 Continue`` (:mod:`jan.server.expect`) and as the route starts
    (:func:`body_read_middleware`)."""
    async def check(request: web.Request) -> None:
        if request.content_length is not None:
            await _judge_declared(request, config, await route_body_limit(request, own_handlers))

    return check


class _BodyGuard(BaseTimerContext):
    """The timer context of a request's body (aiohttp's ``StreamReader`` enters it for each wait for more bytes):
    the 408 when no byte comes for ``timeout`` seconds of a wait, the route's 413 once more than ``limit`` bytes came
    (checked around each wait: what arrives while nobody waits is buffered, at most aiohttp's read-ahead, before the
    transport is paused)."""

    __slots__ = ("_stream", "_loop", "_timeout", "_limit", "_too_large", "_handle", "_armed")

    def __init__(self, stream: Any, timeout: float, limit: int | None, too_large: Callable[[int], Exception]):
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._limit = limit
        self._too_large = too_large
        self._handle: asyncio.TimerHandle | None = None
        self._armed = True

    def __enter__(self) -> BaseTimerContext:
        self._check_size()
        if self._armed:
            self._handle = self._loop.call_later(self._timeout, self._expired)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._cancel()
        if exc_type is None:
            self._check_size()
        return None

    def assert_timeout(self) -> None:
        return None

    def disarm(self) -> None:
        """The handler has ended: what aiohttp still reads of the body (to keep the connection) is its business.
        The guard lets go of the stream, which keeps the guard as its timer: the two made a reference cycle, which
        kept the stream's buffer (up to three 16 MiB chunks of a gzip body's inflated bytes, past a 413) and the
        connection's objects alive after the connection ended, until Python's cyclic collector ran — 20 refused
        300 KB gzip bodies held 1 GB."""
        self._armed = False
        self._cancel()
        self._stream = None

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expired(self) -> None:
        self._handle = None
        if self._armed and self._stream.exception() is None:
            self._stream.set_exception(read_timeout_error(self._timeout))

    def _check_size(self) -> None:
        if not self._armed:
            return
        size = self._stream.total_bytes
        if self._limit is not None and size > self._limit:
            if self._stream.exception() is None:
                self._stream.set_exception(self._too_large(size))
            raise self._stream.exception()


def body_read_middleware(config: ServerConfig, own_handlers: Collection[object]) -> Any:
    """The guard of every request's body while its handler runs: its declared size judged against its route's limit
    first (a refusal ends the connection: the body is never read), then :class:`_BodyGuard` over the reading."""
    @web.middleware
    async def guard_body(request: web.Request, handler):
        stream = request.content
        if not request.body_exists or not hasattr(stream, "total_bytes"):
            return await handler(request)
        limit = await route_body_limit(request, own_handlers)
        try:
            await _judge_declared(request, config, limit)
        except Exception as exc:
            stream.set_exception(exc)  # (the connection ends with the answer: jan.server.validation)
            raise
        bound = limit.limit(config) if limit is not None else None
        guard = _BodyGuard(stream, config.read_timeout, bound,
                           lambda size: limit.too_large(config, size))  # type: ignore[union-attr]
        try:
            stream._timer = guard  # (aiohttp's StreamReader waits for its next bytes inside this context)
        except AttributeError:  # an aiohttp without it: the body unguarded, as before
            return await handler(request)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as exc:
            # aiohttp's read() refused the rest (past client_max_size) before the guard did: the rest is not read
            # either (aiohttp would read it on for its lingering time, to keep the connection)
            if stream.exception() is None and not stream.is_eof():
                stream.set_exception(exc)
            raise
        finally:
            guard.disarm()

    return guard_body
