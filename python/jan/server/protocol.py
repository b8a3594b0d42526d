"""The connection layer: what aiohttp answers before any route or middleware runs, in jan's error shapes.

aiohttp refuses some requests itself, with a plain-text body: one its parser cannot take (a bad request line,
a URL or header over its limits, invalid characters, broken chunked framing, Content-Length with
Transfer-Encoding, a Content-Encoding it has no decoder for) and an ``Expect`` it does not know. Served through
:class:`AppRunner`, they leave like every other error: the body of the dialect whose path the request was for
(OpenAI's where that is unknown), aiohttp's status (415 for the Content-Encoding), ``Connection: close``.

A request whose chunked body breaks off in a later packet would otherwise wait forever: aiohttp queues the
parser's error behind it and never ends its body. The body is failed instead, and its route answers the 400.

A client that stops reading its answer is bounded too: its connection closes once it took nothing for the server's
``write_timeout`` (:meth:`_Connection.pause_writing`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import struct

try:  # the bytes a socket's kernel send queue holds (Linux's SIOCOUTQ, the same request number)
    from fcntl import ioctl
    from termios import TIOCOUTQ as _OUTQ
except ImportError:  # (Windows; elsewhere without it, only the transport's own buffer is watched)
    ioctl, _OUTQ = None, None

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from jan.server.config import DEFAULT_READ_TIMEOUT_S, DEFAULT_WRITE_TIMEOUT_S
from jan.server.errors import APIError, dialect_error_middleware, error_middleware, error_response
from jan.server.keys import CONFIG
from jan.server.request_id import (ACCESS_LOG_FORMAT, CLIENT_HEADER, AccessLogger, client_request_id,
                                   current_request_id, id_headers, new_request_id, request_id, request_id_middleware,
                                   stamp)
from jan.server.validation import unsupported_content_encoding

log = logging.getLogger(__name__)

#: Bytes of a connection's input kept to find a refused request's line (its path) and its Content-Encoding:
#: aiohttp refuses a request line at 8190 bytes, so its start is at most that far before the packet that did.
SEEN_BYTES = 8 * 1024

# A request line (origin form, the path up to its query) and a Content-Encoding header, in raw input. A line
# starts the input or a line of it, or follows a body's last byte in the same packet (a pipelining client, or two
# writes the kernel sent as one, after a gzip body that ends in no newline): there it is known by its HTTP
# version, a line cut short by aiohttp's limit only at a line's start.
# These run on the event loop over a refused request's input, which a client chooses (a header line of 100 KB):
# each must take time linear in it. So a method is tried only where a run of token characters begins (the
# lookbehind; from every byte of a long run, each try rescanned the rest: 100 KB held the server 20 s), and no two
# neighbouring repeats can take the same byte (the query begins with its "?"/"#", the header value with a byte
# that is no blank), which would have the engine try every split of a long line between them.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(rb"(?:^|\n)" + _TOKEN + rb"+ (/[^ \t\r\n?#]*)"
                           rb"|(?<!" + _TOKEN + rb")" + _TOKEN + rb"+ (/[^ \t\r\n?#]*)(?:[?#][^ \t\r\n]*)?"
                           rb" HTTP/\d\.\d\r?\n")
_CONTENT_ENCODING = re.compile(rb"\ncontent-encoding[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
# A whole header line (ended by its newline) of the client's X-Request-Id in a head that never came whole.
_CLIENT_ID_LINE = re.compile(rb"\n" + CLIENT_HEADER.encode() + rb"[ \t]*:[ \t]*((?:[^ \t\r\n][^\r\n]*)?)\r?\n",
                             re.IGNORECASE)
_ENCODING_IN_MESSAGE = re.compile(r"\((\w+)\)")  # aiohttp's "Can not decode content-encoding: brotli (br)"


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer aiohttp's own refusals in jan's error shapes.

    aiohttp has no option for the connection class its server makes, so this overrides ``_make_server``,
    BaseRunner's one step for making that server, and hands aiohttp's arguments on unchanged."""

    def __init__(self, app: web.Application, **kwargs):
        # the access log's lines (where one is kept) carry each request's id: jan's format and logger class
        kwargs.setdefault("access_log_class", AccessLogger)
        kwargs.setdefault("access_log_format", ACCESS_LOG_FORMAT)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts and freezes the app, then aiohttp's Server for it
        config = self.app.get(CONFIG)
        try:
            return _Server(server.request_handler, request_factory=server.request_factory,
                           handler_cancellation=server.handler_cancellation, loop=server._loop,
                           head_timeout=config.read_timeout if config is not None else DEFAULT_READ_TIMEOUT_S,
                           write_timeout=config.write_timeout if config is not None else DEFAULT_WRITE_TIMEOUT_S,
                           **server._kwargs)
        except (AttributeError, TypeError):  # an aiohttp whose Server is made otherwise: its own answers, still served
            return server


class _Server(web.Server):
    """aiohttp's server with jan's connection class (``__call__`` makes each connection; aiohttp's makes its own
    class, with no option). Its handler runs the app inside the app's two outermost middlewares once more: they
    also catch what aiohttp raises before the app's middlewares run (its ``Expect`` check's 417)."""

    def __init__(self, handler, *, head_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 write_timeout: float = DEFAULT_WRITE_TIMEOUT_S, **kwargs):
        inner = functools.partial(error_middleware, handler=handler)
        shaped = functools.partial(dialect_error_middleware, handler=inner)
        super().__init__(functools.partial(request_id_middleware, handler=shaped), **kwargs)
        self._head_timeout = head_timeout
        self._write_timeout = write_timeout

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, head_timeout=self._head_timeout, write_timeout=self._write_timeout,
                           **self._kwargs)


class _Connection(web.RequestHandler):
    """One connection. aiohttp answers what its parser refuses (and an error no route caught) from
    ``handle_error``, a method of this class with no hook: overridden here, with ``data_received`` to note the
    input a refused request came in (aiohttp keeps none of it). Both read aiohttp's private ``_messages`` queue
    and ``_current_request``, with defaults: without them the answers are only aiohttp's again."""

    __slots__ = ("_refused", "_seen", "_head_timeout", "_head_timer", "_head_begun", "_write_timeout", "_write_timer",
                 "_unsent", "_last_body")

    def __init__(self, *args, head_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 write_timeout: float = DEFAULT_WRITE_TIMEOUT_S, **kwargs):
        super().__init__(*args, **kwargs)
        self._write_timeout = write_timeout
        self._write_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting in the transport's buffer when the write timer was last armed
        self._seen = b""  # the end of this connection's input before the packet at hand (each packet after a "\n")
        self._refused: dict[BaseException, bytes] = {}  # the parser's error -> the input it was found in
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False  # bytes of a request's head came, and not its end
        self._last_body = None  # the body of the latest request that came (aiohttp's StreamReader), to end on a close

    # -- the head's time bound ----------------------------------------------------------------------------------
    # A request's head (its line and headers) must come whole within head_timeout (the server's read_timeout) of
    # the connection's start, or of its first byte on a kept-alive connection: aiohttp waits for it until its
    # keep-alive timeout (an hour), so a client that sends part of a head, a byte at a time or nothing more, held
    # the connection that long (nginx's client_header_timeout bounds the whole head the same way). It is answered
    # 408, in the shape of the dialect its path names, and the connection closed; a connection that sent nothing
    # is closed quietly. A kept-alive connection idle between requests is aiohttp's keep-alive timeout's business.
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._cancel_write_timer()
        super().connection_lost(exc)
        self._end_lingering_body()

    # -- a body answered before it came whole ---------------------------------------------------------------------
    # A request answered before its body was read (a 403 of its Host, a 401, a 404 of its path) on a connection
    # kept open leaves aiohttp's handler "lingering": reading the rest of the body for up to 10 s so that the client,
    # still sending, reads the answer instead of a reset. When the client goes away, aiohttp ends the body of a
    # request whose handler still runs (it fails it), but no longer the one lingered over, which then waited the 10 s
    # for bytes that could never come: each such client that left kept its connection's task and request that long
    # (a flood of them, a crowd), and a server stopping meanwhile left them running. The body ends with the
    # connection now. Ended, not failed: a failed body raises out of aiohttp's lingering as an "Unhandled
    # exception"; one a handler still reads was failed by aiohttp already, and stays so.
    def _end_lingering_body(self) -> None:
        body, self._last_body = self._last_body, None
        if body is not None and not body.is_eof() and body.exception() is None:
            body.feed_eof()

    # -- the answer's time bound --------------------------------------------------------------------------------
    # The transport pauses writing once more than aiohttp's 64 KiB wait unsent (the kernel's send buffer full behind
    # them), and every write of the answer then waits for the client to read (aiohttp's drain). A client that never
    # reads (or reads a byte now and then, too little for the kernel to take more) held its handler there forever:
    # its connection, its generation's events queued for nobody, a streamed answer's place among those running.
    # While writing is paused, a client that took none of the unsent bytes for write_timeout has its connection
    # closed (nginx's send_timeout): the write waiting fails as a write to a client that left does, which ends the
    # handler that way (its generation cancelled, its slot freed). A slow reader that keeps taking bytes is not cut:
    # the bytes still unsent are counted in the kernel's send queue too, where a reader's progress shows at once
    # (the socket is reported writable again only once a third or so of a send buffer of megabytes has gone, which
    # a client reading 50 KB/s takes longer than the timeout to free).
    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_write_timer()

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()

    def _arm_write_timer(self) -> None:
        self._cancel_write_timer()
        transport = self.transport
        self._unsent = _unsent_bytes(transport) if transport is not None else 0
        self._write_timer = asyncio.get_running_loop().call_later(self._write_timeout, self._write_expired)

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_expired(self) -> None:
        self._write_timer = None
        transport = self.transport
        if transport is None or not self.writing_paused:
            return
        if _unsent_bytes(transport) < self._unsent:  # the client took some: it reads, slowly
            self._arm_write_timer()
            return
        request = getattr(self, "_current_request", None)
        log.info("closed the connection: its client read none of its answer for %gs (this server's write_timeout)",
                 self._write_timeout, extra={"request_id": request_id(request) if request is not None else "-"})
        # The write waiting for room fails now, as a write to a gone client does (a plain close would wake it as if
        # the bytes had gone out, and only the next write would fail); then the connection is dropped unsent.
        waiter = getattr(self, "_drain_waiter", None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError(
                f"the client read none of its answer for {self._write_timeout:g}s (write_timeout)"))
        self.force_close()
        transport.abort()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(self._head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _waiting_for_head(self) -> bool:
        # start() waits for the next request (aiohttp's future, private: without it, no head bound)
        waiter = getattr(self, "_waiter", None)
        return waiter is not None and not waiter.done() and not getattr(self, "_messages", True)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._waiting_for_head() or self.transport is None:
            return  # a request came whole meanwhile, or the connection is ending anyway
        if self._head_begun:
            path, _ = _refused_request(self._seen)
            # No request was made, so no middleware gave it an id: it gets one here as every answer does (the
            # client's own when that header line came whole and is plain), and the log line that tells of it too.
            rid = client_request_id(_client_id(self._seen)) or new_request_id()
            log.info("answered 408: the request's headers (for %s) did not come whole within %gs",
                     path or "an unknown path", self._head_timeout, extra={"request_id": rid})
            err = APIError(408, f"The request's headers did not come whole within {self._head_timeout:g} seconds "
                                "(this server's read_timeout)", code="request_timeout")
            headers = {"Connection": "close", **id_headers(rid)}
            token = current_request_id.set(rid)  # (the body carries it too where its dialect's does: Anthropic's)
            try:
                response = error_response(err, path or "/", headers)
            finally:
                current_request_id.reset(token)
            self.transport.write(_raw_response(response))
        self.force_close()

    def data_received(self, data: bytes) -> None:
        waiting, count = self._waiting_for_head(), getattr(self, "_request_count", 0)
        super().data_received(data)
        if getattr(self, "_request_count", 0) != count:  # a head came whole
            self._cancel_head_timer()
            self._head_begun = False
        elif data and (waiting or self._head_timer is not None):  # a head begun (its first bytes, or more)
            self._head_begun = True
            self._arm_head_timer()
        # aiohttp catches its parser's error and queues it as a message of its own (status, exc, message)
        queued = getattr(self, "_messages", None)
        if queued and not hasattr(queued[-1][0], "exc"):
            self._last_body = queued[-1][1]
        exc = getattr(queued[-1][0], "exc", None) if queued else None
        # Each packet starts a line of what is searched: a request after a body that ends in no newline (gzip,
        # deflate, any binary body on a kept-alive connection) starts the packet its client wrote it in, and its
        # request line would otherwise be read as the body's, the refusal then guessed from the request before.
        packet = b"\n" + data
        if isinstance(exc, HttpProcessingError) and exc not in self._refused:
            self._refused[exc] = self._seen + packet
            self._fail_unfinished_body(queued, exc)
        self._seen = packet[-SEEN_BYTES:] if len(packet) >= SEEN_BYTES else (self._seen + packet)[-SEEN_BYTES:]

    def _fail_unfinished_body(self, queued, exc: HttpProcessingError) -> None:
        """The parser failed inside a body it had begun to deliver (a chunk size that is no number, a packet
        after the headers): that body would never end, its route would wait for it and the error queued behind
        it would never be answered. It ends with the error instead; the route answers its 400
        (``invalid_body``, in its dialect's shape) and the connection closes with it
        (:func:`jan.server.validation.end_unreadable_body`)."""
        bodies = [payload for message, payload in queued if not hasattr(message, "exc")]
        current = getattr(self, "_current_request", None)
        body = bodies[-1] if bodies else current.content if current is not None else None
        if body is not None and not body.is_eof() and body.exception() is None:
            body.set_exception(RequestPayloadError(_one_line(exc.message)))

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's own method logs it (one INFO line for a client's fault: errors.ClientProtocolErrorFilter) and raises
        # when an answer has begun already; only its plain-text body is replaced. Its log line and the answer carry
        # the request's id (the client's X-Request-Id when aiohttp parsed the headers, else a new one).
        token = current_request_id.set(request_id(request))
        try:
            super().handle_error(request, status, exc, message)
            seen = self._refused.pop(exc, None) if exc is not None else None
            path, content_encoding = _refused_request(seen) if seen is not None else (request.path, None)
            # (within the id's scope: a dialect whose error body carries the id, Anthropic's, writes this one)
            response = error_response(_refusal(status, exc, content_encoding), path or "/", {"Connection": "close"})
        finally:
            current_request_id.reset(token)
        response.force_close()
        stamp(request, response)
        return response


def _unsent_bytes(transport: asyncio.Transport) -> int:
    """The bytes of a connection's answer not yet taken by its client: those in the transport's buffer, and (where
    the system tells it) those in the socket's kernel send queue (written, not yet acknowledged)."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if ioctl is not None and sock is not None:
        try:
            size += struct.unpack("i", ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        except (OSError, ValueError):  # (a socket that is no TCP socket, or closed meanwhile: its buffer alone)
            pass
    return size


def _raw_response(response: web.Response) -> bytes:
    """``response`` (a body of bytes) as HTTP/1.1 bytes, for an answer sent outside any request (a head that never
    came whole)."""
    body = response.body if isinstance(response.body, bytes) else b""
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _refusal(status: int, exc: BaseException | None, content_encoding: str | None) -> APIError:
    if isinstance(exc, ContentEncodingError):  # br or zstd without its package: refused with the headers
        named = _ENCODING_IN_MESSAGE.search(exc.message or "")
        return unsupported_content_encoding(content_encoding or (named.group(1) if named else None))
    if isinstance(exc, HttpProcessingError):
        return APIError(status, f"The request is not valid HTTP: {_one_line(exc.message)}", code="invalid_http")
    if status == 504:
        return APIError(504, "The request timed out", type="server_error", code="timeout")
    return APIError(status, "The server had an error while processing your request.", type="server_error",
                    code="internal_error")


def _refused_request(seen: bytes) -> tuple[str | None, str | None]:
    """The path and the Content-Encoding of the last request line in ``seen`` (the input a refused request
    came in), or None each; a guess for choosing the error's shape, never trusted for more."""
    line = None
    for line in _REQUEST_LINE.finditer(seen):
        pass
    if line is None:
        return None, None
    end = seen.find(b"\r\n\r\n", line.end())
    # (a line the second form matched ends past its newline: the header search starts at one again)
    head = seen[line.end() - 1:end if end >= 0 else len(seen)]
    encodings = [m.group(1).strip().decode("latin-1") for m in _CONTENT_ENCODING.finditer(head)]
    return (line.group(1) or line.group(2)).decode("latin-1"), ", ".join(encodings) or None


def _client_id(seen: bytes) -> str | None:
    """The value of the whole ``X-Request-Id`` header line in the last request head of ``seen`` (one that never
    came whole), or None: the heads of the connection's earlier requests are not searched."""
    start = 0
    for line in _REQUEST_LINE.finditer(seen):
        start = line.end() - 1
    found = None
    for found in _CLIENT_ID_LINE.finditer(seen, start):
        pass
    return found.group(1).decode("latin-1") if found is not None else None


def _one_line(message: str) -> str:
    """aiohttp's parser message on one line, without the caret line that points into the quoted input."""
    lines = (line.strip() for line in (message or "").splitlines())
    return " ".join(line for line in lines if line.strip("^ ")) or "malformed request"


async def head_without_body(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: the answer to a ``HEAD`` is its headers alone, a streamed one's too.

    aiohttp answers ``HEAD`` on every GET route with the GET handler and drops the body of a plain
    :class:`web.Response`; a :class:`web.StreamResponse` it leaves to its handler, which wrote on (a run's events,
    a background response's replayed stream, an extension's stream). Those bytes, after headers that frame no
    body, were read by the client as the status line of its next answer on the connection. Here the stream's
    first write ends its handler as a client that left does (``ConnectionResetError``, which every streaming loop
    takes as that: a HEAD's client reads no body), and its end writes no bytes."""
    if request.method != "HEAD" or isinstance(response, (web.Response, web.FileResponse)):
        return  # (aiohttp writes no body for these)
    end = response.write_eof

    async def write(data: bytes | bytearray | memoryview) -> None:
        raise ConnectionResetError("a HEAD request's answer has no body")

    async def write_eof(data: bytes = b"") -> None:
        await end(b"")

    response.write = write  # type: ignore[method-assign]
    response.write_eof = write_eof  # type: ignore[method-assign]
