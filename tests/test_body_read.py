"""A request's body is read within the server's read_timeout between its pieces and within its route's size limit,
whatever its framing (jan.server.body_read); a request's head within read_timeout (jan.server.protocol). Raw sockets:
a client that stops halfway is answered (408, 413) in its dialect's shape, and its connection ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import socket
import struct
import time

import pytest
from api_helpers import until

from jan.server.config import ServerConfig
from jan.testing.raw_http import read_response
from jan.testing.server import ServerThread

#: The server's read_timeout here: short, so that a stalled body is answered soon. Each test waits for the answer
#: with WAIT, far longer: what is asserted is the answer, never how soon it came.
READ_TIMEOUT = 1.0
WAIT = 60
MAX_BODY = 4096
MAX_UPLOAD = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("bodyread") / "data", max_body_bytes=MAX_BODY,
                       max_upload_bytes=MAX_UPLOAD, read_timeout=READ_TIMEOUT)
    with ServerThread(cfg) as srv:
        yield srv


def _address(server) -> tuple[str, int]:
    host, port = server.base_url.split("//")[1].split(":")
    return host, int(port)


def _head(path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket, received: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """The response on ``sock`` (its status, headers, body), read to its Content-Length."""
    return read_response(sock, received, timeout=WAIT)


def _closed(sock: socket.socket) -> bool:
    """Whether the server ends the connection (what follows the answer is its end, not another answer)."""
    sock.settimeout(WAIT)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True


def _send_then_wait(server, path: str, headers: dict[str, str], sent: bytes) -> tuple[int, dict, bytes, bool]:
    """Send the head and ``sent`` (a part of the body it declares), then nothing more: the answer, and whether the
    connection ended after it."""
    host, port = _address(server)
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(_head(path, port, headers) + sent)
        status, response_headers, body = _answer(sock)
        return status, response_headers, body, _closed(sock)


#: One JSON route of each dialect, and how its error body says a 408's cause.
DIALECTS = {
    "openai": ("/v1/chat/completions", {}, lambda b: b["error"]["code"], "request_timeout"),
    "anthropic": ("/v1/messages", {"anthropic-version": "2023-06-01"}, lambda b: (b["type"], "read_timeout" in
                                                                                  b["error"]["message"]),
                  ("error", True)),
    "ollama": ("/api/chat", {}, lambda b: "read_timeout" in b["error"], True),
    "llama-server": ("/completion", {}, lambda b: (b["error"]["code"], "read_timeout" in b["error"]["message"]),
                     (408, True)),
    "responses": ("/v1/responses", {}, lambda b: b["error"]["code"], "request_timeout"),
}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_body_that_stops_coming_is_a_408_in_its_dialects_shape_and_the_connection_ends(server, dialect, framing,
                                                                                       caplog):
    caplog.set_level(logging.INFO)
    path, extra, cause, expected = DIALECTS[dialect]
    headers = {"Content-Type": "application/json", **extra}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        sent = b"5\r\n{\"mod\r\n"  # one chunk, and never the next (nor the last)
    else:
        headers["Content-Length"] = "1000"
        sent = b'{"model": "x", '
    status, response_headers, body, closed = _send_then_wait(server, path, headers, sent)
    assert status == 408, (status, body)
    assert cause(json.loads(body)) == expected
    assert response_headers.get("connection", "").lower() == "close" and closed
    # a client's stall: no error, no traceback in the log
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


FORM = "multipart/form-data; boundary=xyz"
FORM_START = (b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
              b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
              b"Content-Type: text/plain\r\n\r\nsome bytes of the file")


@pytest.mark.parametrize("path", ["/v1/files", "/v1/audio/transcriptions", "/audio/translations"])
def test_a_form_that_stops_coming_is_a_408(server, path):
    start = FORM_START if path == "/v1/files" else FORM_START.replace(b'"purpose"\r\n\r\nassistants',
                                                                      b'"model"\r\n\r\nwhisper')
    status, _, body, closed = _send_then_wait(server, path, {"Content-Type": FORM, "Content-Length": "100000"},
                                              start)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout" and closed


def test_an_ollama_blob_that_stops_coming_is_a_408_in_ollamas_shape(server):
    blob = "/api/blobs/sha256:" + "1" * 64
    status, _, body, closed = _send_then_wait(server, blob, {"Content-Length": "100000"}, b"x" * 1000)
    assert status == 408 and "read_timeout" in json.loads(body)["error"] and closed
    # nothing of it was kept
    assert not list((server.config.data_folder / "blobs").glob("*1111*"))


def test_a_slow_body_that_keeps_coming_is_read_whole(tmp_path):
    """The bound is between two pieces, not on the whole body: an upload whose pieces keep coming, for longer than
    read_timeout in all, is stored. (A server of its own, with a bound far above the pauses: a loaded machine's
    late wake-up is no stall: each pause leaves 4.5 s to spare.)"""
    bound = 6.0
    with ServerThread(ServerConfig(data_folder=tmp_path / "data", read_timeout=bound)) as server:
        _upload_slowly(server, bound)


def _upload_slowly(server, bound: float) -> None:
    host, port = _address(server)
    content = b"slow upload. " * 400
    body = FORM_START.replace(b"some bytes of the file", content) + b"\r\n--xyz--\r\n"
    pieces = [body[i:i + len(body) // 6 + 1] for i in range(0, len(body), len(body) // 6 + 1)]
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(_head("/v1/files", port, {"Content-Type": FORM, "Content-Length": str(len(body))}))
        started = time.monotonic()
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(bound / 4)  # (pacing: each pause well inside the bound)
        assert time.monotonic() - started > bound  # (the whole took longer than the bound)
        status, _, answer = _answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["bytes"] == len(content)


@pytest.mark.parametrize("path,shape", [("/v1/messages", lambda b: b["type"] == "error"),
                                        ("/api/chat", lambda b: list(b) == ["error"]),
                                        ("/v1/chat/completions", lambda b: b["error"]["code"] == "request_timeout")])
def test_a_head_that_stops_coming_is_a_408_in_its_paths_shape(server, path, shape, caplog):
    caplog.set_level(logging.INFO)
    host, port = _address(server)
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: applic".encode())
        status, headers, body = _answer(sock)
        assert status == 408 and shape(json.loads(body)), body
        assert headers["connection"].lower() == "close" and _closed(sock)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(_address(server), timeout=WAIT) as sock:
        assert _closed(sock)


def test_a_kept_alive_connection_answers_its_next_request_after_the_first(server):
    """The head's bound starts again with each request's first byte: a connection kept alive serves on."""
    host, port = _address(server)
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        for _ in range(2):
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status, headers, _ = _answer(sock)
            assert status == 200 and headers.get("connection", "").lower() != "close"


def test_other_requests_are_answered_while_a_body_stalls(server):
    host, port = _address(server)
    with socket.create_connection((host, port), timeout=WAIT) as stalled:
        stalled.sendall(_head("/v1/chat/completions", port, {"Content-Type": "application/json",
                                                              "Content-Length": "1000"}) + b"{")
        with socket.create_connection((host, port), timeout=WAIT) as other:
            other.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert _answer(other)[0] == 200
        assert _answer(stalled)[0] == 408


def test_read_timeout_must_be_a_positive_number_of_seconds(tmp_path):
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="read_timeout"):
            ServerConfig(data_folder=tmp_path, read_timeout=bad)


def test_jan_serve_takes_read_timeout(tmp_path):
    from click.testing import CliRunner

    from jan.cli.serve import serve

    # a usage error naming the flag, for every value the server's config refuses (inf and nan were a traceback)
    for bad in ("0", "-1", "nan", "inf", "1e400"):
        result = CliRunner().invoke(serve, ["--read-timeout", bad, "--data-folder", str(tmp_path)])
        assert result.exit_code == 2 and "--read-timeout" in result.output, (bad, result.output)
    assert "--read-timeout" in CliRunner().invoke(serve, ["--help"]).output


# -- the route's limit, whatever the framing (item: chunked bodies, audio without Expect) -----------------------
def _over_the_limit(server, path: str, headers: dict[str, str], limit: int, *, expect: bool,
                    chunked: bool) -> tuple[int, dict, bytes, bool]:
    """Send more than ``limit`` bytes of a body that never ends (chunked without its last chunk, or a declared
    Content-Length far past what is sent): the answer must come while it is still being sent."""
    host, port = _address(server)
    headers = dict(headers)
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(limit + 1024 * 1024)  # (more than is sent: the body never ends)
    if expect:
        headers["Expect"] = "100-continue"
    piece = b"x" * 16383 + b"\n"  # (lines: no boundary, no JSON; a form's preamble)
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(_head(path, port, headers))
        if expect:
            sock.settimeout(WAIT)
            first = sock.recv(65536)
            if not first.startswith(b"HTTP/1.1 100"):  # refused before the body (a declared size): that answer
                status, response_headers, body = _answer(sock, first)
                return status, response_headers, body, _closed(sock)
        sent = 0
        try:
            # until the answer comes (then no more is sent: it was not waited for) or well past the limit
            while sent <= limit + 256 * 1024 and not select.select([sock], [], [], 0)[0]:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
        except OSError:
            pass  # (the server ended the connection after its answer)
        status, response_headers, body = _answer(sock)
        return status, response_headers, body, _closed(sock)


FRAMINGS = [pytest.param(False, True, id="chunked"), pytest.param(True, True, id="chunked+expect"),
            pytest.param(False, False, id="length"), pytest.param(True, False, id="length+expect")]


@pytest.mark.parametrize("expect,chunked", FRAMINGS)
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "ollama", "llama-server"])
def test_a_json_body_past_max_body_bytes_is_a_413_before_it_ends(server, dialect, expect, chunked):
    path, extra, _, _ = DIALECTS[dialect]
    status, _, body, closed = _over_the_limit(server, path, {"Content-Type": "application/json", **extra},
                                              MAX_BODY, expect=expect, chunked=chunked)
    assert status == 413, (status, body)
    data = json.loads(body)
    assert {"openai": lambda: data["error"]["code"] == "request_too_large",
            "anthropic": lambda: data["error"]["type"] == "request_too_large",
            "ollama": lambda: "too large" in data["error"],
            "llama-server": lambda: data["error"]["code"] == 413}[dialect]()
    assert closed


@pytest.mark.parametrize("expect,chunked", FRAMINGS)
def test_an_upload_past_its_limit_is_a_413_before_it_ends(server, expect, chunked):
    from jan.server.body_read import FORM_OVERHEAD_BYTES

    status, _, body, closed = _over_the_limit(server, "/v1/files", {"Content-Type": FORM},
                                              MAX_UPLOAD + FORM_OVERHEAD_BYTES, expect=expect, chunked=chunked)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large" and closed


@pytest.mark.parametrize("expect,chunked", FRAMINGS)
def test_an_audio_form_past_its_limit_is_a_413_before_it_ends(server, expect, chunked):
    from jan.engine.media import DEFAULT_LIMITS
    from jan.server.body_read import FORM_OVERHEAD_BYTES

    status, _, body, closed = _over_the_limit(server, "/v1/audio/translations", {"Content-Type": FORM},
                                              DEFAULT_LIMITS.max_bytes + FORM_OVERHEAD_BYTES, expect=expect,
                                              chunked=chunked)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large" and closed


def test_a_body_within_its_limit_is_still_read_whole(server):
    """(the limit's check is no refusal of what is allowed: a chunked upload under it is stored)"""
    host, port = _address(server)
    body = FORM_START + b"\r\n--xyz--\r\n"
    chunks = b"".join(f"{len(body[i:i + 50]):x}\r\n".encode() + body[i:i + 50] + b"\r\n"
                      for i in range(0, len(body), 50)) + b"0\r\n\r\n"
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(_head("/v1/files", port, {"Content-Type": FORM, "Transfer-Encoding": "chunked"}) + chunks)
        status, _, answer = _answer(sock)
    assert status == 200, answer


def test_every_route_that_takes_a_form_or_a_stream_declares_its_limit():
    """The limit is declared on the handler (jan.server.body_read.body_limit), the one the Expect check and the
    reading both use: every route that reads its body otherwise than as JSON has one."""
    from jan.server.body_read import JSON_BODY
    from jan.server.routes import audio, files, ollama

    declared = {(r.method, r.path): getattr(r.handler, "jan_body_limit", JSON_BODY)
                for module in (audio, files, ollama) for r in module.routes if hasattr(r, "handler")}
    assert declared[("POST", "/v1/files")] is files.UPLOAD_BODY
    assert declared[("POST", "/api/blobs/{digest}")] is ollama.BLOB_BODY
    for path in ("/v1/audio/transcriptions", "/audio/transcriptions", "/v1/audio/translations",
                 "/audio/translations"):
        assert declared[("POST", path)] is audio.CLIP_BODY


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/files"])
def test_a_refused_body_leaves_nothing_for_the_cyclic_collector(server, path):
    """The guard and the body's stream referred to each other: every request's stream, with what it still buffered
    (a gzip body's inflated bytes past its 413: up to three 16 MiB chunks, from a few hundred KB sent), stayed in
    memory after its connection ended, until Python's cyclic collector ran. Freed at once now."""
    import gc
    import zlib

    from aiohttp.streams import StreamReader

    from jan.server.body_read import _BodyGuard

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    inflated = b"[" + b"0," * 2_000_000 if path.startswith("/v1/chat") else FORM_START + b"x" * 4_000_000 + b"\r\n--xyz--\r\n"
    bomb = packer.compress(inflated) + packer.flush()
    host, port = _address(server)
    gc.collect()
    gc.disable()  # (what is then found unreachable was kept by a cycle only)
    try:
        with socket.create_connection((host, port), timeout=WAIT) as sock:
            content_type = "application/json" if path.startswith("/v1/chat") else FORM
            sock.sendall(_head(path, port, {"Content-Type": content_type, "Content-Encoding": "gzip",
                                            "Content-Length": str(len(bomb))}) + bomb)
            assert _answer(sock)[0] == 413
        # another request answered after: the loop has run the refused connection's end by then
        with socket.create_connection((host, port), timeout=WAIT) as other:
            other.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            assert _answer(other)[0] == 200
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept = [type(o).__name__ for o in gc.garbage if isinstance(o, (StreamReader, _BodyGuard))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not kept


# -- a body answered before its end, whose client then left ------------------------------------------------------
def _connection_tasks(srv: ServerThread) -> int:
    """The server's connection handlers still running (aiohttp's ``RequestHandler.start``, one per connection)."""
    async def count() -> int:
        return sum(1 for task in asyncio.all_tasks() if not task.done()
                   and getattr(task.get_coro(), "__qualname__", "") == "RequestHandler.start")

    return srv.call(count())


#: Requests answered before their body is read, and the Host each is sent with: its Host not allowed (403), no API
#: key (401), a path no route has (404).
EARLY_ANSWERS = {"host": ("/v1/chat/completions", "evil.example", 403),
                 "key": ("/v1/chat/completions", None, 401),
                 "path": ("/v1/no-such-route", None, 404)}


@pytest.mark.parametrize("leave", ["close", "reset"])
@pytest.mark.parametrize("answer", list(EARLY_ANSWERS))
def test_a_client_gone_after_an_answer_before_its_body_ends_leaves_no_handler(tmp_path, answer, leave):
    """A request answered before its body came whole leaves aiohttp reading the rest for its ``lingering_time``
    (so that a client still sending reads the answer, not a reset). Its client going away ended nothing there: the
    connection's handler waited out the whole time for bytes that could not come, holding its task and request (and
    left running when the server stopped meanwhile). It ends with the connection now. (A lingering time of an hour:
    what is asserted is that it is not waited out, not how soon the handler ends.)"""
    path, host, status = EARLY_ANSWERS[answer]
    cfg = ServerConfig(data_folder=tmp_path / "data", api_key="sk-soak-test-key-0123456789")
    with ServerThread(cfg, lingering_time=3600) as srv:
        _, port = _address(srv)
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            head = _head(path, port, {"Content-Type": "application/json", "Content-Length": "1000",
                                      **({} if answer == "key" else {"Authorization": f"Bearer {cfg.api_key}"})})
            if host is not None:
                head = head.replace(f"Host: 127.0.0.1:{port}".encode(), f"Host: {host}".encode())
            sock.sendall(head + b'{"model": ')
            got, _, _ = _answer(sock)
            assert got == status
            assert _connection_tasks(srv) == 1  # (the test's premise: the handler reads on, after its answer)
            if leave == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
        until(lambda: _connection_tasks(srv) == 0, "the connection's handler ended with its client", wait_s=WAIT)
