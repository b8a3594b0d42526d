"""A streamed answer whose client leaves while its deltas write nothing stops then, in every dialect.

A stream noticed a client that left only when it next wrote. Deltas a dialect has nothing to send for (thinking with
Anthropic's ``display: "omitted"``, an encoder with nothing new to say) wrote nothing, so a generation whose client
had gone went on for nobody, up to its token limit, its slot held. Each streaming loop now asks after every delta.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import pytest

from jan.core import Extension, InferenceExtension
from jan.services.types import ChatDelta, CompletionDelta
from jan.store import DataFolder
from extension_helpers import call
from server_helpers import http_post

M = [{"role": "user", "content": "hi"}]
STREAMED = {
    "/v1/chat/completions": {"messages": M, "stream": True},
    "/v1/completions": {"prompt": "hi", "stream": True},
    "/v1/messages": {"messages": M, "stream": True, "max_tokens": 100},
    "/v1/responses": {"input": "hi", "stream": True},
    "/api/chat": {"messages": M},  # (Ollama streams by default)
    "/api/generate": {"prompt": "hi"},
    "/completion": {"prompt": "hi", "stream": True},
}


class Quiet(Extension, InferenceExtension):
    """Says "ok ", then makes deltas with nothing in them until it is closed (which sets ``closed``)."""

    name = "quiet-ext"
    engine_name = "quiet"

    def __init__(self):
        super().__init__()
        self.closed = threading.Event()

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...
    async def loaded_models(self): return []
    async def model_status(self, model_id): return {"id": model_id, "status": "ready"}

    async def _endless(self, first, empty):
        try:
            yield first
            while True:
                await asyncio.sleep(0.005)  # (the engine's pace; a tight loop would starve the event loop)
                yield empty
        finally:
            self.closed.set()

    def chat(self, model, request):
        return self._endless(ChatDelta(content="ok "), ChatDelta())

    def complete(self, model, request):
        return self._endless(CompletionDelta(text="ok "), CompletionDelta(text=""))

    async def embed(self, model, request): ...
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): return [1, 2]
    async def detokenize(self, model, tokens): return ""


@pytest.fixture(scope="module")
def engine():
    return Quiet()


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine):
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    data = tmp_path_factory.mktemp("quiet") / "data"
    DataFolder(data).models.create({"id": "quiet", "engine": "quiet", "object": "model"})
    with ServerThread(ServerConfig(data_folder=data, models=[], n_threads=1), extensions=[engine]) as srv:
        yield srv


def _leave_after_first_words(server, path: str, body: dict) -> bytes:
    """Start the stream, read until its first words arrived, close the connection; what was read."""
    host, port = server.base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:  # (a guard against a hang, no measure)
        sock.sendall(http_post(path, {"model": "quiet", **body}))
        seen = b""
        while b"ok " not in seen:
            more = sock.recv(4096)
            assert more, seen
            seen += more
    return seen


@pytest.mark.parametrize("path", list(STREAMED))
def test_a_stream_that_writes_nothing_stops_when_its_client_leaves(server, engine, path):
    engine.closed.clear()
    seen = _leave_after_first_words(server, path, STREAMED[path])
    assert b" 200 " in seen.split(b"\r\n", 1)[0]
    assert engine.closed.wait(60), "the generation went on after its client left"


def test_a_stored_response_whose_client_left_is_cancelled(server, engine):
    engine.closed.clear()
    seen = _leave_after_first_words(server, "/v1/responses", {"input": "hi", "stream": True, "store": True})
    assert engine.closed.wait(60)
    response_id = re.search(rb'"id":"(resp_[^"]+)"', seen).group(1).decode()
    deadline = time.monotonic() + 60  # (its end is saved a moment after the generation stopped: a bound, no measure)
    while True:
        status, answer = call(server, "GET", f"/v1/responses/{response_id}")
        if status != 200 or answer["status"] != "in_progress" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert status == 200 and answer["status"] == "cancelled", json.dumps(answer)[:300]
