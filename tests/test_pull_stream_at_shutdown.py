"""A pull still downloading when the server stops is answered then, saying why, in its dialect: jan's progress stream
ends with an ``error`` event, Ollama's ``/api/pull`` with its ``{"error"}`` line (or, not streamed, a 503).

They went on waiting through the stop's grace period (the download stops with the extensions, after it), then were
cut off: a broken chunked body or a dropped connection, and no reason. The file is served on 127.0.0.1 and its body
held, so the download is still running when the stop comes; nothing reaches the network."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
from api_helpers import parse_sse, running
from range_server import FileServer

WAIT_S = 120  # (a bound against a hang, never a measure)


async def _answer_at_stop(tmp_path, stories_path, path: str, body: dict, started=None) -> tuple[int, bytes]:
    """POST ``body`` (its ``url`` or ``model`` the held file's URL) to ``path``; stop the server once
    ``started(resp)`` returned (None: an answer not streamed, once the file was asked for); (status, what came after)."""
    server = running(tmp_path / "data")
    srv = server.__enter__()
    stopper = threading.Thread(target=server.__exit__, args=(None, None, None))
    try:
        async with FileServer(stories_path.read_bytes(), hold=True, etag='"v1"') as source, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
            body = {**body, **{key: source.url for key in ("url", "model") if key in body}}
            if started is None:
                answer = asyncio.ensure_future(session.post(f"{srv.base_url}{path}", json=body))
                await asyncio.wait_for(source.asked.wait(), WAIT_S)
                stopper.start()
                async with await answer as resp:
                    return resp.status, await resp.read()
            async with session.post(f"{srv.base_url}{path}", json=body) as resp:
                await started(resp)
                stopper.start()
                return resp.status, await resp.read()  # (a body cut off mid-way raises here)
    finally:
        if stopper.ident is None:  # (failed before the stop: the server is stopped all the same)
            stopper.start()
        await asyncio.to_thread(stopper.join, WAIT_S)


async def _a_progress_event(resp) -> None:
    assert resp.status == 200
    assert (await resp.content.readline()).startswith(b"data: {")  # (a progress event: it runs)


async def _a_pulling_line(resp) -> None:
    assert resp.status == 200
    while "total" not in json.loads(await resp.content.readline()):  # (the file's size is known: it runs)
        pass


async def test_a_pull_stream_open_at_the_stop_ends_with_a_shutdown_error(tmp_path, stories_path):
    status, rest = await _answer_at_stop(tmp_path, stories_path, "/v1/models/pull",
                                         {"url": "", "id": "held", "stream": True}, _a_progress_event)
    name, data = parse_sse(rest.decode())[-1]
    assert name == "error" and data["error"]["code"] == "server_shutdown", rest[-300:]


async def test_an_ollama_pull_stream_open_at_the_stop_ends_with_its_error_line(tmp_path, stories_path):
    status, rest = await _answer_at_stop(tmp_path, stories_path, "/api/pull", {"model": ""}, _a_pulling_line)
    last = json.loads(rest.decode().strip().splitlines()[-1])
    assert "shutting down" in last["error"], rest[-300:]


async def test_an_ollama_pull_not_streamed_at_the_stop_is_a_503(tmp_path, stories_path):
    status, rest = await _answer_at_stop(tmp_path, stories_path, "/api/pull", {"model": "", "stream": False})
    assert status == 503 and "shutting down" in json.loads(rest)["error"], rest
