"""A streamed answer whose client goes away before its first byte is cancelled then, in every dialect.

A streamed answer sends nothing until its first delta (setup errors are a plain 4xx), so a client that gave up while
its request waited in the model's queue (Claude Code's Esc, a timed-out agent) was noticed only at that first write:
the request stayed queued, then had its whole prompt evaluated ahead of everyone still waiting. Non-streamed answers
were already cancelled as their client left (tests/test_server_load.py); streamed ones now are too.
"""

from __future__ import annotations

import asyncio
import socket
import time
from unittest import mock

import pytest

from api_helpers import running
from jan.server.disconnect import first_item
from jan.server.keys import BUS, MANAGER
from server_helpers import http_post

HI = [{"role": "user", "content": "Hi"}]
STREAMED = {
    "/v1/chat/completions": {"max_tokens": 100_000, "stream": True, "messages": HI},
    "/v1/completions": {"max_tokens": 100_000, "stream": True, "prompt": "Hi"},
    "/v1/messages": {"max_tokens": 100_000, "stream": True, "messages": HI},
    "/v1/responses": {"max_output_tokens": 100_000, "stream": True, "input": "Hi", "store": False},
    "/api/chat": {"messages": HI, "options": {"num_predict": 100_000}},  # (Ollama streams by default)
    "/api/generate": {"prompt": "Hi", "options": {"num_predict": 100_000}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    # one slot, and a context the holder below cannot fill while a test runs (it generates until it is told to stop)
    with running(tmp_path_factory.mktemp("left") / "data", stories_path, n_ctx=16384, n_parallel=1) as srv:
        yield srv


def _metrics(server) -> dict:
    return server.app[MANAGER].get_inference("llama.cpp").metrics()["stories260K"]


def _until(condition, bound: float = 60) -> bool:
    deadline = time.monotonic() + bound  # a bound, not a measurement
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def _connect(server) -> socket.socket:
    host, port = server.base_url.split("//")[1].split(":")
    return socket.create_connection((host, int(port)))


@pytest.mark.parametrize("path", list(STREAMED))
def test_a_queued_stream_whose_client_left_is_cancelled_before_it_starts(server, path):
    holder = _connect(server)  # the one slot, busy with a generation that lasts until its client goes
    holder.sendall(http_post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 100_000,
                                                 "ignore_eos": True, "stream": True}))
    try:
        assert b" 200 " in holder.recv(4096)  # (sent after its first token: its prompt is evaluated)
        started = _metrics(server)["generated_tokens_total"]
        assert _until(lambda: _metrics(server)["generated_tokens_total"] > started)  # and counted
        before = _metrics(server)
        waiting = _connect(server)
        waiting.sendall(http_post(path, {"model": "stories260K", **STREAMED[path]}))
        assert _until(lambda: _metrics(server)["queue_depth"] == 1)
        waiting.close()
        # it leaves the queue while the holder still generates: cancelled, its prompt never evaluated
        assert _until(lambda: _metrics(server)["queue_depth"] == 0)
        after = _metrics(server)
        assert after["slots_busy"] == 1
        assert after["requests_cancelled"] == before["requests_cancelled"] + 1
        assert after["prompt_tokens_total"] == before["prompt_tokens_total"]
    finally:
        holder.close()
    assert _until(lambda: _metrics(server)["slots_busy"] == 0)


def test_first_item_closes_a_stream_whose_client_left():
    """The helper itself, without a model: a stream that has no first item yet is closed when the connection is."""
    closed = asyncio.Event()

    async def never():
        try:
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    async def main():
        transport = mock.Mock()
        transport.is_closing.return_value = False
        request = mock.Mock(transport=transport)
        request.app = {BUS: mock.Mock()}  # (where the server tells that the inference stopped)
        stream = never()
        waiting = asyncio.ensure_future(first_item(request, stream, "m"))
        await asyncio.sleep(0)  # (the generator is entered; nothing else happens until the client goes)
        assert not waiting.done()
        transport.is_closing.return_value = True
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(waiting, 60)
        assert closed.is_set()

    asyncio.run(main())


@pytest.mark.parametrize("items, first", [([], None), (["a", "b"], "a")])
def test_first_item_of_a_stream_with_or_without_items(items, first):
    async def stream():
        for item in items:
            yield item

    async def main():
        transport = mock.Mock()
        transport.is_closing.return_value = False
        return await first_item(mock.Mock(transport=transport), stream(), "m")

    assert asyncio.run(main()) == first
