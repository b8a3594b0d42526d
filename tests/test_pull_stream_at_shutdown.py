"""A pull's progress stream open when the server stops ends then, with an ``error`` event that says why.

It went on sending progress through the stop's grace period (the download stops with the extensions, after it),
then was cut off mid-body: the client read a broken chunked body and no reason. The file is served on 127.0.0.1
and its body held, so the download is still running when the stop comes; nothing reaches the network."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from api_helpers import parse_sse, running
from range_server import FileServer

WAIT_S = 120  # (a bound against a hang, never a measure)


async def test_a_pull_stream_open_at_the_stop_ends_with_a_shutdown_error(tmp_path, stories_path):
    blob = stories_path.read_bytes()
    server = running(tmp_path / "data")
    srv = server.__enter__()
    stopper = threading.Thread(target=server.__exit__, args=(None, None, None))
    try:
        async with FileServer(blob, hold=True, etag='"v1"') as source, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
            async with session.post(f"{srv.base_url}/v1/models/pull",
                                    json={"url": source.url, "id": "held", "stream": True}) as resp:
                assert resp.status == 200
                assert (await resp.content.readline()).startswith(b"data: {")  # (a progress event: it runs)
                stopper.start()
                rest = await resp.read()  # (a body cut off mid-way raises here)
    finally:
        if stopper.ident is None:  # (failed before the stop: the server is stopped all the same)
            stopper.start()
        await asyncio.to_thread(stopper.join, WAIT_S)
    name, data = parse_sse(rest.decode())[-1]
    assert name == "error" and data["error"]["code"] == "server_shutdown", rest[-300:]
