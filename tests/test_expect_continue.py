"""``Expect: 100-continue``: a request refused anyway (its API key, its declared size against its route's limit) gets
its final answer, in its dialect's shape, before it is invited to send its body; every other one gets ``100
Continue`` as before (raw sockets: what comes back before a byte of the body is sent)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from aiohttp import web

from jan.core import Extension
from jan.server.config import ServerConfig
from jan.testing.raw_http import read_head, read_response
from jan.testing.server import ServerThread

KEY = "sk-expect-1"
MAX_BODY = 4096
MAX_UPLOAD = 100_000
AUTH = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


class Uploads(Extension):
    """An extension's route, which reads its body as it chooses (its size is its own business)."""

    name = "expect-uploads"
    requires_api = ">=1,<2"

    async def on_load(self, ctx):
        async def take(request):
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
            return web.json_response({"size": size})

        ctx.add_route("POST", "/v1/expect-uploads", take)
        sub = web.Application()
        sub.router.add_post("/put", take)
        ctx.add_subapp("/expect-sub", lambda: sub)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("expect") / "data", api_key=KEY,
                       max_body_bytes=MAX_BODY, max_upload_bytes=MAX_UPLOAD)
    with ServerThread(cfg, extensions=[Uploads()]) as srv:
        yield srv


def ask(server, path: str, length: int, headers: dict | None = None, *, expect: str = "100-continue",
        content_type: str = "application/json", body: bytes | None = None):
    """Send the headers only; what comes back before the body: ``("continue", final)`` after sending ``body``
    (when given) upon ``100 Continue``, or ``("final", (status, headers, body))``."""
    host, port = server.base_url.split("//")[1].split(":")
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}",
            f"Content-Length: {length}", f"Expect: {expect}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        first, rest = read_head(sock)
        if first.startswith(b"HTTP/1.1 100"):
            if body is None:
                return "continue", None
            sock.sendall(body)
            return "continue", read_response(sock, rest)
        return "final", read_response(sock, first + b"\r\n\r\n" + rest)


#: One route of each dialect, and how its error body names the 401's and 413's cause.
DIALECTS = {
    "openai": ("/v1/chat/completions", {}, lambda b: b["error"]["code"]),
    "anthropic": ("/v1/messages", {"anthropic-version": "2023-06-01"},
                  lambda b: (b["type"], b["error"]["type"])),
    "ollama": ("/api/chat", {}, lambda b: b["error"]),
    "llama-server": ("/completion", {}, lambda b: (b["error"]["code"], b["error"]["type"])),
}


def _with_key(dialect: str, extra: dict) -> dict:
    return {**extra, **(ANTHROPIC if dialect == "anthropic" else AUTH)}


#: Each refusal that comes before the body: the request's headers (from the dialect and its own ones), its declared
#: length, the status, and how each dialect's body names the cause (Ollama's {"error": message}: words in it).
REFUSALS = {
    "no key": (lambda dialect, extra: extra, 10_000_000, 401),
    "a wrong key": (lambda dialect, extra: {**extra, "Authorization": "Bearer wrong"}, 10_000_000, 401),
    "over max_body_bytes": (_with_key, MAX_BODY + 1, 413),
}
CAUSES = {
    401: {"openai": "invalid_api_key", "anthropic": ("error", "authentication_error"),
          "llama-server": (401, "authentication_error"), "ollama": "API key"},
    413: {"openai": "request_too_large", "anthropic": ("error", "request_too_large"),
          "llama-server": (413, "invalid_request_error"), "ollama": "too large"},
}


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_refused_request_is_answered_before_its_body_in_its_dialects_shape(server, dialect, refusal):
    path, extra, cause = DIALECTS[dialect]
    headers, length, expected_status = REFUSALS[refusal]
    kind, (status, response_headers, body) = ask(server, path, length, headers(dialect, extra))
    assert kind == "final" and status == expected_status, (dialect, refusal, kind, status)
    assert response_headers.get("connection", "").lower() == "close"
    got, expected = cause(json.loads(body)), CAUSES[expected_status][dialect]
    assert (expected in got) if dialect == "ollama" else (got == expected), (dialect, refusal, got)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_request_that_passes_gets_100_continue_and_is_answered_after_its_body(server, dialect):
    path, extra, _ = DIALECTS[dialect]
    headers = _with_key(dialect, extra)
    body = b"{}"
    kind, (status, _, answer) = ask(server, path, len(body), headers, body=body)
    assert kind == "continue"
    assert status not in (401, 413) and status < 500, (status, answer)


def test_the_streamed_uploads_are_judged_by_their_own_limits(server):
    form = "multipart/form-data; boundary=xyz"
    # /v1/files: past max_upload_bytes (and the form's overhead) is its 413, OpenAI's or Anthropic's shape
    kind, (status, _, body) = ask(server, "/v1/files", MAX_UPLOAD + 10_000_000, AUTH, content_type=form)
    assert kind == "final" and status == 413 and json.loads(body)["error"]["code"] == "file_too_large"
    kind, (status, _, body) = ask(server, "/v1/files", MAX_UPLOAD + 10_000_000, ANTHROPIC, content_type=form)
    assert kind == "final" and status == 413 and json.loads(body)["error"]["type"] == "request_too_large"
    # over max_body_bytes is no reason to refuse an upload: its limit is max_upload_bytes
    assert ask(server, "/v1/files", MAX_BODY * 4, AUTH, content_type=form)[0] == "continue"
    # an audio clip: past the most the route reads, a 413; over max_body_bytes only, invited
    from jan.engine.media import DEFAULT_LIMITS

    for path in ("/v1/audio/transcriptions", "/audio/translations"):
        kind, (status, _, body) = ask(server, path, DEFAULT_LIMITS.max_bytes * 2, AUTH, content_type=form)
        assert kind == "final" and status == 413 and json.loads(body)["error"]["code"] == "file_too_large"
        assert ask(server, path, MAX_BODY * 4, AUTH, content_type=form)[0] == "continue"
    # an Ollama blob is bound by the disk's free space, not max_body_bytes
    blob = "/api/blobs/sha256:" + "0" * 64
    assert ask(server, blob, MAX_BODY * 4, AUTH, content_type="application/octet-stream")[0] == "continue"
    kind, (status, _, body) = ask(server, blob, 1 << 62, AUTH, content_type="application/octet-stream")
    assert kind == "final" and status == 413 and "free" in json.loads(body)["error"]
    # and without the key, each is a 401 before its body
    kind, (status, _, _) = ask(server, blob, 10, content_type="application/octet-stream")
    assert kind == "final" and status == 401


def test_an_unknown_route_without_the_key_is_a_401_before_the_body(server):
    kind, (status, _, body) = ask(server, "/v1/nowhere", 10_000_000)
    assert kind == "final" and status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"


def test_an_expectation_other_than_100_continue_is_still_a_417(server):
    kind, (status, _, body) = ask(server, "/v1/chat/completions", 10, AUTH, expect="200-ok")
    assert kind == "final" and status == 417 and json.loads(body)["error"]["code"] == "expectation_failed"


def test_an_extensions_route_gets_the_key_check_before_its_body_and_judges_its_own_size(server):
    path = "/v1/expect-uploads"
    kind, (status, _, body) = ask(server, path, 10_000_000)
    assert kind == "final" and status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    body = b"x" * (MAX_BODY * 2)
    kind, (status, _, answer) = ask(server, path, len(body), AUTH, body=body)
    assert kind == "continue" and status == 200 and json.loads(answer) == {"size": len(body)}


def test_an_extensions_sub_application_gets_the_key_check_before_its_body(server):
    kind, (status, _, body) = ask(server, "/expect-sub/put", 10_000_000)
    assert kind == "final" and status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    kind, (status, _, answer) = ask(server, "/expect-sub/put", 3, AUTH, body=b"abc")
    assert kind == "continue" and status == 200 and json.loads(answer) == {"size": 3}


def test_a_client_that_sends_its_body_after_the_refusal_leaves_no_error_in_the_log(server, caplog):
    """curl sends the body after a second without an answer: the refused connection is closed, quietly."""
    host, port = server.base_url.split("//")[1].split(":")
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY * 64}\r\nExpect: 100-continue\r\n\r\n").encode()
    with caplog.at_level(logging.INFO):
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(head)
            status, headers, _ = read_response(sock)
            assert status == 401 and headers["connection"].lower() == "close"
            try:
                sock.sendall(b"x" * (MAX_BODY * 64))
            except OSError:
                pass  # (the server closed the connection: what a client may see)
            sock.settimeout(60)
            try:
                assert sock.recv(65536) == b""  # closed: nothing more is answered
            except ConnectionResetError:
                pass
        # a request after it is served as usual (nothing of the refused one is left over)
        assert ask(server, "/v1/chat/completions", 2, AUTH, body=b"{}")[0] == "continue"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


#: What the late extension's on_load waits for (set by the test once the server runs).
LATE_RELEASE: dict[str, asyncio.Event] = {}


class LateUploads(Extension):
    """An extension whose load ends after the server started: its route is mounted late (jan.server.late_routes)."""

    name = "expect-late"
    requires_api = ">=1,<2"

    async def on_load(self, ctx):
        async def take(request):
            return web.json_response({"size": len(await request.content.read())})

        ctx.add_route("POST", "/api/expect-late", take)  # (under /api: Ollama's error shape)
        await LATE_RELEASE["release"].wait()


async def test_a_route_mounted_after_the_start_gets_the_checks_before_its_body(tmp_path):
    from aiohttp.test_utils import TestServer

    from jan.core import ExtensionLoaded, ExtensionManager, LocalEventBus
    from jan.server.app import create_app
    from test_extension_lifecycle_bounds import BOUND, watch

    LATE_RELEASE["release"] = asyncio.Event()
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), discover_entry_points=False, load_timeout=None,
                               load_wait=0)
    manager.register(LateUploads)
    await manager.start()
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=tmp_path / "data", api_key=KEY),
                                            manager=manager), BOUND)
    server = TestServer(app)
    await server.start_server()
    try:
        loaded = watch(manager, ExtensionLoaded, "expect-late")
        LATE_RELEASE["release"].set()
        await asyncio.wait_for(loaded, BOUND)

        async def first_answer(headers: str) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"POST /api/expect-late HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 3\r\n"
                         f"Expect: 100-continue\r\n{headers}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
            if head.startswith(b"HTTP/1.1 401"):
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                head += await asyncio.wait_for(reader.readexactly(length), BOUND)
            writer.close()
            return head

        refused = await first_answer("")
        assert refused.startswith(b"HTTP/1.1 401")
        body = json.loads(refused.partition(b"\r\n\r\n")[2])
        assert list(body) == ["error"] and "API key" in body["error"]  # Ollama's shape, as for a route at start
        assert (await first_answer(f"Authorization: Bearer {KEY}\r\n")).startswith(b"HTTP/1.1 100 Continue")
    finally:
        await server.close()


def test_every_other_refusal_that_needs_no_body_comes_before_it_too(server):
    """The Origin, Content-Type and Content-Encoding checks answer as their middlewares do, without 100 Continue."""
    kind, (status, _, body) = ask(server, "/v1/chat/completions", 10, {**AUTH, "Origin": "http://evil.example"})
    assert kind == "final" and status == 403 and json.loads(body)["error"]["code"] == "origin_not_allowed"
    kind, (status, _, body) = ask(server, "/v1/messages", 10, ANTHROPIC, content_type="text/plain")
    assert kind == "final" and status == 415 and json.loads(body)["type"] == "error"
    kind, (status, _, body) = ask(server, "/api/chat", 10, {**AUTH, "Content-Encoding": "foo"})
    assert kind == "final" and status == 415 and "Content-Encoding" in json.loads(body)["error"]
