"""One id per request, on every response and in every log line written while it is served.

OpenAI's API answers each request with ``x-request-id``, Anthropic's with ``request-id``; their SDKs expose it
(``response._request_id``, ``message._request_id``) and print it in their errors, so that a user can quote it and an
operator find the request in the server's log. jan sends both headers on every response of every route and dialect
(successes, streams, errors, unknown routes, refusals of aiohttp's parser, the 408 of a head that never came whole)
and writes the id into the access log and into each log record made while the request is handled
(:class:`RequestIdLogFilter`).

A client (or a proxy in front of jan) may send its own ``X-Request-Id``, as llama-server's and nginx's users do to
follow a request across hops: it is kept when it is a plain token — at most :data:`MAX_CLIENT_ID` characters of
letters, digits and ``-_.:+=@/`` — since it is echoed in a header and written into the log; anything else (a
newline, spaces, an over-long value) is replaced by an id of jan's own.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from aiohttp import web
from aiohttp.web_log import AccessLogger as _AiohttpAccessLogger

#: The request header a client's own id comes in, and the headers jan answers it in (OpenAI's, Anthropic's).
CLIENT_HEADER = "X-Request-Id"
RESPONSE_HEADERS = ("x-request-id", "request-id")
#: The longest client-sent id kept (a UUID is 36, an OpenAI/Anthropic id about 30; a proxy's trace ids fit).
MAX_CLIENT_ID = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.:+=@/]{0,%d}" % (MAX_CLIENT_ID - 1))
_KEY = web.RequestKey("jan_request_id", str) if hasattr(web, "RequestKey") else "jan_request_id"

#: The id of the request being handled (None outside one): what :class:`RequestIdLogFilter` writes.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("jan_request_id", default=None)


def new_request_id() -> str:
    """An id of jan's own: ``req_`` and 32 hex digits, as OpenAI's."""
    return f"req_{uuid.uuid4().hex}"


def client_request_id(value: str | None) -> str | None:
    """The client's ``X-Request-Id`` when it is safe to echo and log, else None."""
    if value is None:
        return None
    value = value.strip()
    return value if _SAFE_ID.fullmatch(value) else None


def request_id(request: web.BaseRequest) -> str:
    """The request's id (chosen once: the client's when well-formed, else a new one)."""
    try:
        return request[_KEY]
    except KeyError:
        pass
    rid = client_request_id(request.headers.get(CLIENT_HEADER)) or new_request_id()
    request[_KEY] = rid
    return rid


def id_headers(rid: str) -> dict[str, str]:
    """The headers that carry the id ``rid`` on a response (OpenAI's and Anthropic's names)."""
    return {name: rid for name in RESPONSE_HEADERS}


def stamp(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Put the request's id on ``response`` (before its headers are sent)."""
    response.headers.update(id_headers(request_id(request)))
    if "Origin" in request.headers:  # a page's script may read it (a CORS response hides other headers)
        response.headers["Access-Control-Expose-Headers"] = ", ".join(RESPONSE_HEADERS)


@web.middleware
async def request_id_middleware(request: web.Request, handler):
    """Outermost: the request's id is known to every log record made while it is handled, and its answer carries
    it (a streamed answer gets it as it is prepared: :func:`on_prepare`)."""
    token = current_request_id.set(request_id(request))
    try:
        response = await handler(request)
    finally:
        # the connection's task serves its next request too: the id must not leak into that one's log lines
        current_request_id.reset(token)
    if not response.prepared:  # (a prepared one got it from on_prepare as its headers went out)
        stamp(request, response)
    return response


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: the id on every response the app prepares, streamed ones included."""
    stamp(request, response)


class RequestIdLogFilter(logging.Filter):
    """Gives each record a ``request_id`` attribute (``-`` outside a request) and a ``request_tag`` (`` [id]``, empty
    outside a request), for a handler's format; installed on the server's log handlers (:func:`install_log_filter`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get() or "-"
        record.request_tag = f" [{record.request_id}]" if record.request_id != "-" else ""
        return True


#: The server's log line format: the request id (where the line was written for one) after the logger's name.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
#: aiohttp's access log line (one per answered request, at INFO): client, request line, status, size, seconds; the
#: id the answer carried (the one a client's error shows) is the record's ``request_id`` (:class:`AccessLogger`).
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


#: Paths whose successful answers get an access line only when the log is at DEBUG: the health checks pollers make
#: all day (the chat page every 5 s while open, a container's probe, a proxy's), which would drown the lines of
#: real requests at INFO. A failed check (a 503 while a model loads, a refusal) is logged as any answer.
QUIET_PATHS = frozenset({"/health", "/v1/health"})


#: How much of an error's message an access line repeats (the client got all of it).
ERROR_SAID_CHARS = 300


class AccessLogger(_AiohttpAccessLogger):
    """aiohttp's access logger, its records carrying the id the answer was sent with (it logs after the handler,
    where :data:`current_request_id` is no longer set); successful health checks only at DEBUG (:data:`QUIET_PATHS`).
    An error answer's line ends with its code and message, ``(invalid_value: messages: ...)``: the one place a
    server's owner sees why a client's request failed (a bare ``400 442`` said nothing)."""

    def log(self, request, response, time) -> None:  # noqa: A002 - aiohttp's signature
        if request.path in QUIET_PATHS and response.status < 400 and not self.logger.isEnabledFor(logging.DEBUG):
            return
        token = current_request_id.set(response.headers.get(RESPONSE_HEADERS[0]))
        said = _error_said(response)
        fmt = self._log_format
        try:
            if said:  # (log() runs on the event loop's thread, one at a time: the format is this line's alone)
                self._log_format = f"{fmt} ({said.replace('%', '%%')})"
            super().log(request, response, time)
        finally:
            self._log_format = fmt
            current_request_id.reset(token)


def _error_said(response) -> str | None:
    """``code: message`` of the error an answer of 400 or more carries (:class:`~jan.server.errors.ErrorResponse`,
    or its dialect's re-rendering), on one line and cut to :data:`ERROR_SAID_CHARS`; None for any other answer."""
    err = getattr(response, "api_error", None)
    if response.status < 400 or err is None:
        return None
    text = " ".join(str(getattr(err, "message", "") or "").split())
    if len(text) > ERROR_SAID_CHARS:
        text = text[:ERROR_SAID_CHARS - 1] + "…"
    code = getattr(err, "code", None) or getattr(err, "type", None)
    return f"{code}: {text}" if code else text or None


def install_log_filter(handlers: list[logging.Handler] | None = None) -> None:
    """Add :class:`RequestIdLogFilter` to ``handlers`` (the root logger's by default) and have them write the id."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdLogFilter) for f in handler.filters):
            handler.addFilter(RequestIdLogFilter())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
