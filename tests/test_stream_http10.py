"""A streamed answer to an HTTP/1.0 request says ``Connection: close``, and the server closes it.

HTTP/1.0 has no chunked encoding: a streamed body of unknown length ends only when the connection does. The SSE
answers said ``Connection: keep-alive`` all the same, telling an HTTP/1.0 client (a proxy, a plain script) to wait for
more on a connection whose close was the body's end. Every streamed route (SSE, Ollama's NDJSON) now says ``close``.
"""

from __future__ import annotations

import json
import socket

import pytest

from api_helpers import running
from jan.testing.raw_http import read_head

HI = [{"role": "user", "content": "Hi"}]
STREAMED = {
    "/v1/chat/completions": ({"model": "stories260K", "max_tokens": 4, "stream": True, "messages": HI}, b"[DONE]"),
    "/v1/completions": ({"model": "stories260K", "max_tokens": 4, "stream": True, "prompt": "Hi"}, b"[DONE]"),
    "/v1/messages": ({"model": "stories260K", "max_tokens": 4, "stream": True, "messages": HI}, b"message_stop"),
    "/api/chat": ({"model": "stories260K", "messages": HI, "options": {"num_predict": 4}}, b'"done":true'),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("http10") / "data", stories_path) as srv:
        yield srv


def _ask(server, path: str, body: dict, version: str) -> tuple[bytes, bytes, socket.socket]:
    host, port = server.base_url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    payload = json.dumps(body).encode()
    sock.sendall(f"POST {path} {version}\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    head, rest = read_head(sock)
    return head, rest, sock


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


@pytest.mark.parametrize("path", list(STREAMED))
def test_an_http10_stream_says_close_and_ends_with_the_connection(server, path):
    body, last = STREAMED[path]
    head, rest, sock = _ask(server, path, body, "HTTP/1.0")
    try:
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        headers = _headers(head)
        assert headers.get("connection", "").lower() == "close", head
        assert "transfer-encoding" not in headers  # (HTTP/1.0 has no chunked body)
        while data := sock.recv(65536):  # the server closes the connection: recv returns b"" (60 s bound each)
            rest += data
        assert last in rest  # the whole stream came before the close
    finally:
        sock.close()


def test_an_http11_stream_is_chunked_and_not_told_to_close(server):
    body, _ = STREAMED["/v1/chat/completions"]
    head, _, sock = _ask(server, "/v1/chat/completions", body, "HTTP/1.1")
    try:
        headers = _headers(head)
        assert headers.get("transfer-encoding", "").lower() == "chunked"
        assert headers.get("connection", "").lower() != "close"
    finally:
        sock.close()
