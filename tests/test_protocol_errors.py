"""Requests aiohttp refuses before any route runs (what its parser cannot take, a Content-Encoding it has no
decoder for, an unknown Expect) are answered in the error shape of the dialect the path belongs to (OpenAI's
where the path is unknown), as JSON, with their status and ``Connection: close`` — not aiohttp's plain text.
Bodies in codings nothing here undoes are refused (415, 501), not parsed as they came; a chunked body that
breaks off after its route began reading it is answered, never waited for."""

from __future__ import annotations

import gzip
import json
import logging
import socket

import pytest
from server_helpers import start_server

JSON_HEAD = "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
MAX_BODY = 4096


def is_openai(body: dict, code: str | None = None) -> bool:
    err = body.get("error")
    return isinstance(err, dict) and set(err) == {"message", "type", "param", "code"} and (
        code is None or err["code"] == code)


def is_anthropic(body: dict, code: str | None = None) -> bool:
    return body.get("type") == "error" and set(body["error"]) >= {"type", "message"}


def is_ollama(body: dict, code: str | None = None) -> bool:
    return set(body) == {"error"} and isinstance(body["error"], str)


# a path -> the error shape its dialect answers in
SHAPES = {"/v1/chat/completions": is_openai, "/v1/messages": is_anthropic, "/api/chat": is_ollama}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("protocol"), [], max_body_bytes=MAX_BODY)
    yield srv
    srv.stop()


class Conn:
    """A raw connection: exact bytes out, responses read one at a time (bounded by the socket timeout)."""

    def __init__(self, base_url: str):
        host, port = base_url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes | str) -> Conn:
        self.sock.sendall(data.encode("latin-1") if isinstance(data, str) else data)
        return self

    def response(self, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1."), status_line
        status = int(status_line.split()[1])
        headers = {}
        while (line := self.file.readline().strip()):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b"" if head or status == 100 else self.file.read(int(headers.get("content-length", 0)))
        return status, headers, body

    def json_response(self) -> tuple[int, dict[str, str], dict]:
        status, headers, body = self.response()
        assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
        return status, headers, json.loads(body)

    def closed_by_server(self) -> bool:
        """Whether the server ends the connection now (EOF) rather than wait for another request."""
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def conn(server):
    c = Conn(server.base_url)
    yield c
    c.close()


def quiet(caplog) -> list[str]:
    """What the server logged at WARNING or above (a client's fault is one INFO line, never an ERROR)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---- what aiohttp's parser refuses ----

LONG = "a" * 9000
UNPARSABLE = {
    # name: (raw request, the shape its answer must have)
    "not an HTTP method": ("FO\x01O / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", is_openai),
    "URL over the line limit": (f"GET /v1/messages/{LONG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", is_anthropic),
    "header over the limit": (f"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {LONG}\r\n\r\n", is_ollama),
    "invalid header name": ("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-B\x01d: 1\r\n\r\n", is_openai),
    "no Host in HTTP/1.1": ("GET /v1/models HTTP/1.1\r\n\r\n", is_openai),
    "bad chunk size": ((f"POST /v1/messages HTTP/1.1\r\n{JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n"
                        "zz\r\n{}\r\n0\r\n\r\n"), is_anthropic),
    "Content-Length with Transfer-Encoding": (
        (f"POST /api/chat HTTP/1.1\r\n{JSON_HEAD}Transfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n"
         "2\r\n{}\r\n0\r\n\r\n"), is_ollama),
    "Content-Length not a number": (
        f"POST /v1/chat/completions HTTP/1.1\r\n{JSON_HEAD}Content-Length: abc\r\n\r\n{{}}", is_openai),
    "HTTPS on the HTTP port": ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 40, is_openai),
}


@pytest.mark.parametrize("name", list(UNPARSABLE))
def test_a_request_aiohttp_cannot_parse_is_a_json_400_in_the_paths_shape(conn, name, caplog):
    raw, shape = UNPARSABLE[name]
    with caplog.at_level(logging.INFO):
        status, headers, body = conn.send(raw).json_response()
        assert status == 400, body
        assert shape(body), body
        if shape is is_openai:
            assert body["error"]["code"] == "invalid_http" and body["error"]["type"] == "invalid_request_error"
        assert headers.get("connection") == "close" and conn.closed_by_server()
    assert not quiet(caplog), quiet(caplog)


# What a refused request's path, Content-Encoding and X-Request-Id are read from is the connection's raw input,
# which the client chooses; it is searched on the event loop. Inputs on which a search that backtracks takes time
# quadratic in their length (a megabyte: most of an hour, the whole server stalled), each still read right.
MB = 1_000_000
CRAFTED = {
    "a long header value": (b"\nGET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MB, "/v1/models", None),
    "many lines of one token": ((b"\n" + b"a" * 1000) * 1000, None, None),
    "a long path then a long word": (b"\nGET /v1/" + b"a" * (MB // 2) + b" " + b"b" * (MB // 2),
                                     "/v1/" + "a" * (MB // 2), None),
    "a binary body ending in a token run": (b"x" * MB + b" /api/chat HTTP/1.1\r\n", "/api/chat", None),
    "blanks after an X-Request-Id": (b"\nPOST /v1/messages HTTP/1.1\r\nX-Request-Id:" + b" " * MB, "/v1/messages",
                                     None),
    "a whole X-Request-Id line": (b"\nPOST /v1/messages HTTP/1.1\r\nX-Request-Id: " + b" " * MB + b"abc \r\n",
                                  "/v1/messages", "abc "),
}


@pytest.mark.timeout(120)  # linear: a fraction of a second for each; the quadratic search took most of an hour
@pytest.mark.parametrize("name", list(CRAFTED))
def test_reading_a_refused_requests_input_takes_time_linear_in_it(name):
    from jan.server.protocol import _client_id, _refused_request

    seen, path, client_id = CRAFTED[name]
    assert _refused_request(seen)[0] == path
    assert _client_id(seen) == client_id


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path, shape", list(SHAPES.items()))
def test_a_huge_header_line_is_a_400_in_the_paths_shape_and_others_are_served(server, conn, path, shape):
    conn.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 300_000}\r\n\r\n")
    status, headers, body = conn.json_response()
    assert status == 400 and shape(body), body
    other = Conn(server.base_url)
    try:
        assert other.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").response()[0] == 200
    finally:
        other.close()


def test_a_refused_request_is_logged_as_one_info_line(conn, caplog):
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        conn.send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-B\x01d: 1\r\n\r\n").json_response()
        assert conn.closed_by_server()
    told = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(told) == 1 and told[0].levelno == logging.INFO and told[0].exc_info is None, told
    assert "Invalid header token" in told[0].getMessage()


def test_garbage_after_a_pipelined_request_is_answered_in_that_requests_shape(conn):
    conn.send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
              "GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-B\x01d: 1\r\n\r\n")
    status, _, body = conn.json_response()
    if status == 200:  # (aiohttp answers the first when it was parsed before the second came)
        status, _, body = conn.json_response()
    assert status == 400 and is_ollama(body), body
    assert conn.closed_by_server()


@pytest.mark.parametrize("path", ["/v1/messages", "/api/chat"])
@pytest.mark.parametrize("refused", ["br", "bad header"])
def test_a_refusal_after_a_binary_body_on_the_same_connection_is_told_of_its_own_request(conn, path, refused):
    """A kept-alive connection (an SDK's pool) whose last body ended in no newline, as a gzip or deflate one does:
    the refused request's line was read as part of that body, and the answer guessed from the request before it
    (``Content-Encoding 'gzip' is not supported; send identity, gzip or deflate``, in OpenAI's shape)."""
    from jan.server.validation import decoded_content_codings

    if refused == "br" and "br" in decoded_content_codings():
        pytest.skip("aiohttp decodes br here")
    body = gzip.compress(json.dumps({"model": "none", "messages": "not a list"}).encode())
    assert not body.endswith(b"\n")
    conn.send(f"POST /v1/chat/completions HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: gzip\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status, _, payload = conn.json_response()
    assert status == 400 and payload["error"]["param"] == "messages", payload  # the first one, read and answered
    head = "Content-Encoding: br\r\n" if refused == "br" else "X-B\x01d: 1\r\n"
    status, headers, payload = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}{head}Content-Length: 2\r\n\r\n{{}}"
                                         ).json_response()
    assert status == (415 if refused == "br" else 400), payload
    assert SHAPES[path](payload), payload
    if refused == "br":
        assert "Content-Encoding 'br' is not supported" in json.dumps(payload), payload
    assert headers.get("connection") == "close" and conn.closed_by_server()


@pytest.mark.parametrize("path", ["/v1/messages", "/api/chat"])
def test_a_refusal_written_in_the_same_packet_as_a_binary_body_is_told_of_its_own_request(conn, path):
    """A client that pipelines (or a kernel that coalesces two writes) sends the refused request's line right after
    the last byte of a gzip body, in one packet: its line starts mid-line, not after a newline, and the answer was
    guessed from the request before it (OpenAI's shape for an Anthropic or Ollama request)."""
    from jan.server.validation import decoded_content_codings

    if "br" in decoded_content_codings():
        pytest.skip("aiohttp decodes br here")
    body = gzip.compress(json.dumps({"model": "none", "messages": "not a list"}).encode())
    assert not body.endswith(b"\n")
    conn.send(f"POST /v1/chat/completions HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: gzip\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body +
              f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: br\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    status, _, payload = conn.json_response()
    if status == 400:  # (the first one, when aiohttp answered it before it refused the second)
        status, _, payload = conn.json_response()
    assert status == 415 and SHAPES[path](payload), payload
    assert conn.closed_by_server()


@pytest.mark.parametrize("path, shape", [("/v1/audio/translations", is_openai),
                                         ("/v1/messages/batches/x/cancel", is_anthropic), ("/api/nope", is_ollama)])
def test_a_body_that_is_not_in_its_coding_left_unread_by_its_route_is_no_traceback(conn, path, shape, caplog):
    """A route that answers before reading its body (a form route's 415 for JSON, an unknown batch's 404, an
    unknown route's) leaves aiohttp to read and drop the body; a body that is not gzip though it says so fails
    that read, which aiohttp logged as an ERROR "Unhandled exception" with three tracebacks: the client's
    fault, told in one INFO line."""
    with caplog.at_level(logging.INFO):
        # the body after the answer: aiohttp is then reading it to drop it (as when it comes in a later packet)
        status, _, payload = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: gzip\r\n"
                                       "Content-Length: 7\r\n\r\n").json_response()
        assert 400 <= status < 500 and shape(payload), payload
        assert conn.send("notgzip").closed_by_server()
    assert not quiet(caplog), quiet(caplog)


# ---- Content-Encoding and Transfer-Encoding ----

@pytest.mark.parametrize("path", list(SHAPES))
@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_a_body_in_a_coding_aiohttp_cannot_decode_is_a_415_in_the_paths_shape(conn, path, encoding, caplog):
    """(aiohttp decodes br and zstd only with optional packages, not installed with jan; it refuses such a body
    while parsing the headers.)"""
    from jan.server.validation import decoded_content_codings

    if encoding in decoded_content_codings():
        pytest.skip(f"aiohttp decodes {encoding} here")
    with caplog.at_level(logging.INFO):
        status, headers, body = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: {encoding}\r\n"
                                          "Content-Length: 2\r\n\r\n{}").json_response()
        assert status == 415, body
        assert SHAPES[path](body), body
        assert f"Content-Encoding '{encoding}' is not supported; send identity, gzip or deflate" in json.dumps(body)
        if path == "/v1/chat/completions":
            assert body["error"]["code"] == "unsupported_content_encoding" and body["error"]["param"] is None
        assert headers.get("connection") == "close" and conn.closed_by_server()
    assert not quiet(caplog), quiet(caplog)


@pytest.mark.parametrize("path", list(SHAPES))
@pytest.mark.parametrize("encodings", [["foo"], ["x-gzip"], ["gzip, br"], ["gzip, gzip"], ["gzip", "gzip"],
                                       ["identity, gzip"]])
def test_a_body_in_codings_nothing_here_undoes_is_a_415_in_the_paths_shape(conn, path, encodings, caplog):
    """aiohttp passes such a body on undecoded (or, with two headers, undoes one coding): it was parsed as JSON,
    compressed bytes and all. The body is left unread, so the connection ends with the answer."""
    lines = "".join(f"Content-Encoding: {e}\r\n" for e in encodings)
    with caplog.at_level(logging.INFO):
        status, headers, body = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}{lines}Content-Length: 2\r\n\r\n{{}}"
                                          ).json_response()
        assert status == 415, body
        assert SHAPES[path](body), body
        assert f"Content-Encoding '{', '.join(encodings)}' is not supported" in json.dumps(body)
        if path == "/v1/chat/completions":
            assert body["error"]["code"] == "unsupported_content_encoding" and body["error"]["param"] is None
        assert headers.get("connection") == "close" and conn.closed_by_server()
    assert not quiet(caplog), quiet(caplog)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "GZIP", "deflate"])
def test_a_body_in_a_coding_aiohttp_decodes_is_read(conn, encoding):
    raw = json.dumps({"model": "none", "messages": "not a list"}).encode()
    body = {"gzip": gzip.compress, "deflate": lambda b: __import__("zlib").compress(b)}.get(encoding.lower(),
                                                                                            lambda b: b)(raw)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\n{JSON_HEAD}Content-Encoding: {encoding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, _, payload = conn.send(head + body).json_response()
    assert status == 400 and payload["error"]["param"] == "messages", payload  # read as JSON: a field's error


def test_a_content_encoding_without_a_body_is_no_reason_to_refuse(conn):
    conn.send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: foo\r\n\r\n")
    status, _, body = conn.json_response()
    assert status == 200, body


@pytest.mark.parametrize("path", list(SHAPES))
def test_a_transfer_coding_besides_chunked_is_a_501_in_the_paths_shape(conn, path):
    """(aiohttp frames ``gzip, chunked`` by its chunks and leaves the gzip in.)"""
    status, headers, body = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Transfer-Encoding: gzip, chunked\r\n\r\n"
                                "2\r\n{}\r\n0\r\n\r\n").json_response()
    assert status == 501, body
    assert SHAPES[path](body), body
    assert "Transfer-Encoding 'gzip, chunked' is not supported" in json.dumps(body)
    assert headers.get("connection") == "close" and conn.closed_by_server()


# ---- bodies that break off, Expect, sizes, routes and methods ----

@pytest.mark.parametrize("path", list(SHAPES))
def test_a_chunked_body_that_breaks_after_its_route_began_reading_is_answered_not_waited_for(conn, path, caplog):
    """aiohttp queued the parser's error behind the request whose body broke and never ended that body: the
    route waited for it as long as the client kept the connection. ``Expect: 100-continue`` makes the route's
    start visible, so the broken chunk surely comes after it."""
    with caplog.at_level(logging.INFO):
        conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        assert conn.response()[0] == 100
        status, headers, body = conn.send("1\r\n{\r\nzz\r\n}\r\n0\r\n\r\n").json_response()
        assert status == 400, body
        assert SHAPES[path](body), body
        assert "could not be read" in json.dumps(body) and "chunk size" in json.dumps(body)
        assert headers.get("connection") == "close" and conn.closed_by_server()
    assert not quiet(caplog), quiet(caplog)


@pytest.mark.parametrize("path", list(SHAPES))
def test_an_unknown_expectation_is_a_417_in_the_paths_shape(conn, path):
    status, _, body = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{{}}"
                                ).json_response()
    assert status == 417, body
    assert SHAPES[path](body), body
    assert "200-ok" in json.dumps(body)


@pytest.mark.parametrize("path", list(SHAPES))
def test_a_body_over_the_size_limit_is_a_413_in_the_paths_shape(conn, path):
    size = MAX_BODY + 1000
    status, _, body = conn.send(f"POST {path} HTTP/1.1\r\n{JSON_HEAD}Content-Length: {size}\r\n\r\n" + " " * size
                                ).json_response()
    assert status == 413, body
    assert SHAPES[path](body), body


@pytest.mark.parametrize("request_line, status, shape", [
    ("GET /v1/messages", 405, is_anthropic),
    ("DELETE /v1/chat/completions", 405, is_openai),
    ("OPTIONS /api/chat", 405, is_ollama),
    ("GET /api/nope", 404, is_ollama),
    ("GET /nope", 404, is_openai),
    ("OPTIONS *", 404, is_openai),
])
def test_unknown_routes_and_methods_are_json_in_the_paths_shape(conn, request_line, status, shape):
    got, headers, body = conn.send(f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").json_response()
    assert got == status and shape(body), (got, body)
    if status == 405:
        assert headers.get("allow"), headers


def test_a_head_request_for_a_post_route_is_a_405_without_a_body(conn):
    status, headers, _ = conn.send("HEAD /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").response(head=True)
    assert status == 405 and headers.get("allow") == "POST", headers
    assert headers["content-type"].startswith("application/json")
    status, _, _ = conn.send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").json_response()  # no body was sent
    assert status == 200
