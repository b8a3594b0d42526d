"""A request body that cannot be read as sent (a ``Content-Encoding`` it does not follow) is the client's
fault: a 400 in the route's own error shape, on every kind of route, the connection closed with the answer,
and no traceback in the server's log. Before, it was a 500 ``internal_error`` and an "Unhandled exception"."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import socket

import pytest
from server_helpers import start_server

GARBAGE = b"this is not gzip"

# route -> how its error body names the failure
ROUTES = {
    "/v1/chat/completions": lambda b: b["error"]["code"] == "invalid_body",
    "/v1/completions": lambda b: b["error"]["code"] == "invalid_body",
    "/v1/embeddings": lambda b: b["error"]["code"] == "invalid_body",
    "/v1/responses": lambda b: b["error"]["code"] == "invalid_body",
    "/v1/threads": lambda b: b["error"]["code"] == "invalid_body",
    "/v1/messages": lambda b: b["type"] == "error" and b["error"]["type"] == "invalid_request_error",
    "/api/chat": lambda b: "could not be read" in b["error"],
    "/api/generate": lambda b: "could not be read" in b["error"],
    f"/api/blobs/sha256:{hashlib.sha256(GARBAGE).hexdigest()}": lambda b: "could not be read" in b["error"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("unreadable"), [stories_path])
    yield srv
    srv.stop()


def _exchange(base_url: str, path: str, body: bytes, encoding: str, *,
              until_closed: bool = True) -> tuple[int, dict[str, str], bytes, bool]:
    """One POST on a kept-alive connection; (status, headers, body, whether the server then closed it — read
    only with ``until_closed``: a kept connection is never closed by the server)."""
    host, port = base_url.split("//")[1].split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(head + body)
        f = s.makefile("rb")
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline().strip()):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = f.read(int(headers["content-length"]))
        closed = until_closed and f.read(1) == b""  # the server ends the connection (EOF) instead of waiting for the next request
    return status, headers, payload, closed


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_body_that_does_not_follow_its_content_encoding_is_a_400_in_the_routes_shape(server, path, caplog):
    with caplog.at_level(logging.ERROR):
        status, headers, payload, closed = _exchange(server.base_url, path, GARBAGE, "gzip")
    assert status == 400, payload
    assert ROUTES[path](json.loads(payload)), payload
    assert headers.get("connection") == "close" and closed  # what is left of the body cannot be framed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_a_body_that_follows_its_content_encoding_is_read(server):
    body = gzip.compress(json.dumps({"model": "stories260K", "prompt": "Once", "max_tokens": 2}).encode())
    status, _, payload, _ = _exchange(server.base_url, "/v1/completions", body, "gzip", until_closed=False)
    assert status == 200, payload
    assert json.loads(payload)["object"] == "text_completion"


@pytest.mark.parametrize("raw", [
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a URL over aiohttp's line limit
    b"FO\x01O / HTTP/1.1\r\nHost: x\r\n\r\n",  # not an HTTP method
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",  # a header over the limit
])
def test_a_request_that_cannot_be_parsed_is_a_400_and_no_server_error_in_the_log(server, raw, caplog):
    """(aiohttp logged each as an ERROR with a traceback: the client's fault, what port scanners send.)"""
    host, port = server.base_url.split("//")[1].split(":")
    with caplog.at_level(logging.INFO), socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(raw)
        status_line = s.makefile("rb").readline()
    assert status_line.split()[1] == b"400", status_line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
