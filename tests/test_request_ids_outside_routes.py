"""Every answer carries a request id (``x-request-id`` and ``request-id``), those written outside the app's
middlewares too: aiohttp's parser refusals (a bad request line, over-long lines or headers, bad framing), its
``Expect`` check's 417, the 413 of a declared size, the 408 of a stalled body, and the 408 of a head that never came
whole — which no request was ever made for, and which went out without one."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from jan.server.config import ServerConfig
from jan.server.request_id import RequestIdLogFilter
from jan.testing.raw_http import read_response
from jan.testing.server import ServerThread

OURS = re.compile(r"req_[0-9a-f]{32}")
WAIT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # read_timeout short, so that a stalled head or body is answered soon (each answer is waited for up to WAIT)
    cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("ids") / "data", max_body_bytes=4096, read_timeout=1.0)
    with ServerThread(cfg) as srv:
        yield srv


def _exchange(server, *sent: bytes) -> list[tuple[int, dict[str, str]]]:
    """Send each of ``sent`` in turn on one connection, reading an answer after each."""
    host, port = server.base_url.split("//")[1].split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        for data in sent:
            sock.sendall(data)
            status, headers, _ = read_response(sock, timeout=WAIT)
            answers.append((status, headers))
    return answers


def _the_id(headers: dict[str, str]) -> str:
    assert headers.get("x-request-id") is not None, headers
    assert headers["x-request-id"] == headers.get("request-id"), headers
    return headers["x-request-id"]


HOST = b"Host: 127.0.0.1\r\n"
POST_JSON = b"POST /v1/chat/completions HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
KINDS = {
    "bad request line": (b"GARBAGE\r\n\r\n", 400),
    "bad header": (b"GET /v1/models HTTP/1.1\r\n" + HOST + b"Bad Header: x\r\n\r\n", 400),
    "over-long request line": (b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "over-long header": (b"GET /v1/models HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 400),
    "too many headers": (b"GET /v1/models HTTP/1.1\r\n" + HOST
                         + b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n", 400),
    "length and chunked": (POST_JSON + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "broken chunk": (POST_JSON + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "unknown expectation": (POST_JSON + b"Content-Length: 2\r\nExpect: weird\r\n\r\n", 417),
    "declared too large": (POST_JSON + b"Content-Length: 99999999\r\n\r\n", 413),
    "stalled body": (POST_JSON + b"Content-Length: 20\r\n\r\n{", 408),
    "stalled head": (b"POST /v1/chat/completions HTTP/1.1\r\n" + HOST + b"Content-Type: applic", 408),
}


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_written_outside_the_routes_carries_an_id(server, kind):
    sent, status = KINDS[kind]
    [(got, headers)] = _exchange(server, sent)
    assert got == status, (kind, got, headers)
    first = _the_id(headers)
    assert OURS.fullmatch(first)
    [(_, again)] = _exchange(server, sent)
    assert _the_id(again) != first  # one per request


def test_a_stalled_head_keeps_the_clients_id_when_its_line_came_whole(server, caplog):
    caplog.set_level(logging.INFO, logger="jan.server.protocol")
    [(status, headers)] = _exchange(server, b"POST /v1/messages HTTP/1.1\r\n" + HOST
                                    + b"X-Request-Id: trace-77\r\nContent-Type: applic")
    assert status == 408 and _the_id(headers) == "trace-77"
    # and the log line that tells of it carries it (what an operator looks for with the client's id)
    told = [r for r in caplog.records if "did not come whole" in r.getMessage()]
    assert told and RequestIdLogFilter().filter(told[-1]) and told[-1].request_id == "trace-77"


def test_a_stalled_head_after_a_request_on_a_kept_alive_connection_gets_its_own_id(server):
    """The earlier request's X-Request-Id (still in what the connection received) is not the stalled one's."""
    [(ok, first), (stalled, second)] = _exchange(
        server, b"GET /health HTTP/1.1\r\n" + HOST + b"X-Request-Id: earlier-1\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\n" + HOST + b"Content-Type: applic")
    assert ok == 200 and _the_id(first) == "earlier-1"
    assert stalled == 408 and OURS.fullmatch(_the_id(second))
