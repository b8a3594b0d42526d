"""Reading an HTTP/1.1 response off a raw socket, for the tests that must send exact bytes (a head without its
body, a stalled body, ``Expect: 100-continue``) where an HTTP client would not let them."""

from __future__ import annotations

import socket
from typing import NamedTuple


class RawResponse(NamedTuple):
    status: int
    #: header names lower-cased
    headers: dict[str, str]
    #: the body, read to its Content-Length
    body: bytes


def read_head(sock: socket.socket, received: bytes = b"", *, timeout: float | None = 60) -> tuple[bytes, bytes]:
    """The next response head on ``sock`` (without its blank line) and what came after it; ``received``: bytes
    already read off the socket. ConnectionError when the connection ends before a whole head."""
    sock.settimeout(timeout)
    buf = received
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"the connection closed without an answer: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock: socket.socket, received: bytes = b"", *, timeout: float | None = 60) -> RawResponse:
    """The next response on ``sock``, its body read to its Content-Length (the status line of a ``100 Continue``
    counts as a response of its own: read it first, then the final one); ``received``: bytes already read off the
    socket (a head looked at before, or what followed one)."""
    head, rest = read_head(sock, received, timeout=timeout)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return RawResponse(int(lines[0].split()[1]), headers, rest[:length])
