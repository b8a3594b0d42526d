"""Many clients at once: parallel streams, a responsive event loop, disconnects that cancel."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import aiohttp
import pytest

from api_helpers import running

from jan.server.keys import MANAGER
from server_helpers import http_post


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("load") / "data", stories_path, n_ctx=4096, n_parallel=8) as srv:
        yield srv


def metrics(server) -> dict:
    local = server.app[MANAGER].get_inference("llama.cpp")
    return local.metrics()["stories260K"]


async def stream_completion(session, base_url, prompt, max_tokens, received: list[int] | None = None):
    """Stream a completion; ``received[0]`` counts the chunks read so far (shared by several streams)."""
    body = {"model": "stories260K", "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0}
    text = []
    async with session.post(base_url + "/v1/completions", json=body) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: {"):
                text.append(json.loads(line[6:])["choices"][0]["text"])
                if received is not None:
                    received[0] += 1
    return "".join(text)


def test_parallel_streams_all_complete_and_health_answers_between_their_chunks(server):
    """8 streams at once all complete, and /health is answered *while* they stream: between chunks, not
    after them (behaviour, not a latency figure, so it holds on a loaded 2-core machine). A loop blocked by
    generation would answer /health only before the first chunk or after the last."""
    async def main():
        received = [0]
        async with aiohttp.ClientSession() as session:
            streams = [asyncio.create_task(stream_completion(session, server.base_url, f"Story {i}:", 600, received))
                       for i in range(8)]
            seen_at = []  # chunks received when each /health answer arrived
            while not all(s.done() for s in streams) and len(seen_at) < 40:
                async with session.get(server.base_url + "/health") as resp:
                    assert resp.status == 200
                    await resp.read()
                seen_at.append(received[0])
                await asyncio.sleep(0.02)
            texts = await asyncio.gather(*streams)
            return texts, seen_at, received[0]

    before = metrics(server)["requests_finished"]
    texts, seen_at, total = asyncio.run(main())
    assert all(len(t) > 100 for t in texts)
    assert metrics(server)["requests_finished"] - before == 8
    mid_stream = [n for n in seen_at if 0 < n < total]
    assert len(mid_stream) >= 3, f"/health answered only before or after the streams: {seen_at} of {total} chunks"
    assert len(set(mid_stream)) >= 2, "the streams made progress between /health answers"


def disconnect_mid_generation(server, path: str, body: dict, *, streamed: bool, openai: bool = True) -> None:
    """Start a (practically endless) generation, drop the connection mid-way, and check the slot is freed.

    ``openai``: add OpenAI's token limit and llama.cpp's ``ignore_eos``; other dialects' bodies come whole
    (stories260K rarely ends a story on its own before its context is full)."""
    before = metrics(server)
    host, port = server.base_url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)))
    base = {"model": "stories260K", "max_tokens": 100_000, "ignore_eos": True} if openai else {}
    sock.sendall(http_post(path, {**base, **({"stream": True} if streamed else {}), **body}))
    if streamed:
        assert b"200" in sock.recv(4096)
    deadline = time.monotonic() + 30
    while metrics(server)["slots_busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics(server)["slots_busy"] == 1
    sock.close()
    deadline = time.monotonic() + 30
    while metrics(server)["slots_busy"] and time.monotonic() < deadline:
        time.sleep(0.01)
    after = metrics(server)
    assert after["slots_busy"] == 0
    assert after["requests_cancelled"] == before["requests_cancelled"] + 1
    # it stopped long before 100,000 tokens
    assert after["generated_tokens_total"] - before["generated_tokens_total"] < 50_000


def assert_quiet_disconnect(caplog, path: str) -> None:
    """The server noted that the client of ``path`` left (a DEBUG line) and logged no ERROR or traceback
    for it: a client that goes away is no server failure. Waits (bounded) for the note, which comes when
    the handler ends, after the generation was cancelled."""
    def noted() -> bool:
        return any(f"{path}: the client disconnected" in r.getMessage() for r in caplog.records)

    deadline = time.monotonic() + 30
    while not noted() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert noted(), [r.getMessage() for r in caplog.records]
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, loud


def test_disconnect_cancels_the_generation(server):
    disconnect_mid_generation(server, "/v1/completions", {"prompt": "Once"}, streamed=True)


def test_keep_alive_and_max_loaded_from_the_command_line(tmp_path, stories_path, tiny_random_path, monkeypatch):
    import threading

    from jan.engine.registry import ModelPool
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    # the keep-alive reaper waits until the eviction was seen: keep_alive (0.5 s) could otherwise unload the
    # model left loaded before a slow start or a descheduled test thread gets to look at it
    reaping = threading.Event()
    reap_idle = ModelPool.reap_idle

    def held_reap_idle(pool):
        reaping.wait(120)
        return reap_idle(pool)

    monkeypatch.setattr(ModelPool, "reap_idle", held_reap_idle)
    cfg = ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path), str(tiny_random_path)], n_ctx=256,
                       n_threads=1, max_loaded_models=1, keep_alive=0.5)
    try:
        with ServerThread(cfg) as srv:
            local = srv.app[MANAGER].get_inference("llama.cpp")
            assert srv.call(local.loaded_models()) == ["llama-2-tiny-random"]  # the first was evicted
            reaping.set()
            deadline = time.monotonic() + 120  # a bound, not a measurement: keep_alive (0.5 s) unloads it first
            while srv.call(local.loaded_models()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert srv.call(local.loaded_models()) == []
    finally:
        reaping.set()


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "Once"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Once"}]}),
])
def test_disconnect_cancels_a_non_streaming_generation(server, path, body, caplog):
    """Issue 10 item 16: a client that goes away before its (non-streamed) answer frees the slot."""
    caplog.set_level(logging.DEBUG, logger="jan.server")
    disconnect_mid_generation(server, path, body, streamed=False)
    assert_quiet_disconnect(caplog, path)


_ONCE = [{"role": "user", "content": "Once"}]


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "stories260K", "max_tokens": 100_000, "messages": _ONCE}),
    ("/v1/responses", {"model": "stories260K", "max_output_tokens": 100_000, "input": "Once", "store": False}),
    ("/api/chat", {"model": "stories260K", "stream": False, "messages": _ONCE, "options": {"num_predict": 100_000}}),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": "Once",
                       "options": {"num_predict": 100_000}}),
], ids=["anthropic", "responses", "ollama-chat", "ollama-generate"])
def test_disconnect_cancels_a_non_streaming_generation_in_every_dialect(server, path, body, caplog):
    """Issue 10 item 16, by its kind: every dialect's non-streamed request is cancelled when its client goes."""
    caplog.set_level(logging.DEBUG, logger="jan.server")
    disconnect_mid_generation(server, path, body, streamed=False, openai=False)
    assert_quiet_disconnect(caplog, path)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/chat",
                                  "/v1/threads"])
def test_a_client_that_leaves_while_sending_its_body_is_no_error(server, path, caplog):
    """The body announced (Content-Length 1000) never comes whole: reading it fails; that is noted, not an ERROR."""
    caplog.set_level(logging.DEBUG, logger="jan.server")
    host, port = server.base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # "100 Continue" comes once the handler runs, so the body is cut off while the handler waits for it
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100")
        sock.sendall(b'{"model": ')
    assert_quiet_disconnect(caplog, path)
    # the server goes on answering
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
        assert b" 200 " in sock.recv(4096)
