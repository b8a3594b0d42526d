"""An answer still being generated when the server stops is told so, in its dialect's shape, whole or streamed.

Streams in flight end with the dialect's ``server_shutdown`` error when the server stops; an answer that is not
streamed was left generating through the stop's grace period, then dropped: its client got no answer at all, only a
closed connection. It is now a 503 ``server_shutdown`` (Anthropic's ``overloaded_error``, Ollama's ``{"error"}``) as
the stop begins, and its generation is stopped; so is a slot action waiting for its busy slot. A foreground response
is answered as the app's stop ends it: cancelled (and saved so, even when the stop came while it was storing its
start). A stream whose deltas have nothing to send ends with its dialect's shutdown error as the stop begins, in every
dialect.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from jan.server.config import ServerConfig
from jan.server.dialects.responses_store import ResponsesStore
from jan.server.keys import SHUTTING_DOWN
from jan.server.route_state import RUNS
from jan.store import DataFolder
from jan.testing.server import ServerThread
from endless_engine import STREAMED, EndlessEngine, endless_server
from extension_helpers import call
from server_helpers import post_read_whole

WAIT_S = 60  # (bounds against a hang, never measures)
M = [{"role": "user", "content": "hi"}]
WHOLE = {
    "/v1/chat/completions": {"messages": M},
    "/v1/completions": {"prompt": "hi"},
    "/v1/messages": {"messages": M, "max_tokens": 100},
    "/api/chat": {"messages": M, "stream": False},
    "/api/generate": {"prompt": "hi", "stream": False},
    "/completion": {"prompt": "hi"},
    "/v1/responses": {"input": "hi"},
}


def _stopped_while_answering(tmp_path, path: str, ready=lambda srv: True, body: dict | None = None,
                             seen: bytes = b"") -> bytes:
    """Send ``path`` its body (``WHOLE``'s unless given), stop the server once its generation runs (and
    ``ready(srv)``, and the client got ``seen``); what the client got."""
    engine = EndlessEngine()
    with endless_server(tmp_path / "data", engine) as srv:
        answer, reader = post_read_whole(srv.base_url, path, {"model": "endless", **(WHOLE[path] if body is None else body)},
                                         WAIT_S)
        assert engine.started.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not ready(srv) or seen not in answer:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        srv.stop()
        reader.join(WAIT_S)
        assert engine.closed.is_set(), "the generation outlived the server"
    assert answer, "the client got no answer"
    return bytes(answer)


def _whole(answer: bytes) -> tuple[int, dict]:
    """The status and JSON body of an answer that is not streamed."""
    head, body = answer.split(b"\r\n\r\n", 1)
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize("path", [p for p in WHOLE if p != "/v1/responses"])
def test_an_answer_in_progress_when_the_server_stops_is_a_503_in_its_dialect(tmp_path, path):
    status, body = _whole(_stopped_while_answering(tmp_path, path))
    assert status == 503, body
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "overloaded_error", body
    elif path.startswith("/api/"):
        assert "shutting down" in body["error"], body
    elif path == "/completion":  # (llama-server's shape)
        assert body["error"]["code"] == 503 and "shutting down" in body["error"]["message"], body
    else:
        assert body["error"]["code"] == "server_shutdown", body





@pytest.mark.parametrize("path", list(STREAMED))
def test_a_stream_writing_nothing_when_the_server_stops_ends_with_its_error(tmp_path, path):
    """Its deltas have nothing to send (the Anthropic and llama-server streams asked of the stop only after an event
    they sent): it still ends, as the stop begins, with the dialect's shutdown error and the end of its body; it was
    held through the stop's grace period, then cut off without them."""
    # (a response once it runs: one the stop finds starting is refused, a plain 503, "no response starts now")
    ready = (lambda srv: bool(srv.app[RUNS])) if path == "/v1/responses" else (lambda srv: True)
    # (once its first words are out: the stop then finds it relaying deltas with nothing to send)
    answer = _stopped_while_answering(tmp_path, path, ready, body=STREAMED[path], seen=b"ok ")
    assert b" 200 " in answer.split(b"\r\n", 1)[0]
    assert answer.endswith(b"\r\n0\r\n\r\n"), answer[-300:]  # (the chunked body's end)
    assert b"shutting down" in answer.rsplit(b"\r\n0\r\n\r\n", 1)[0][-400:], answer[-300:]


def test_a_foreground_response_in_progress_when_the_server_stops_is_answered_cancelled(tmp_path):
    # (once it runs: a response the stop finds starting is refused, "no response starts now", also a 503)
    status, body = _whole(_stopped_while_answering(tmp_path, "/v1/responses", lambda srv: bool(srv.app[RUNS])))
    assert status == 200 and body["status"] == "cancelled", (body["status"], body.get("error"))


def test_a_response_storing_its_start_when_the_server_stops_ends_cancelled_and_saved(tmp_path, monkeypatch):
    """The stop cancelled a response's task wherever it was: one still writing its start to the store was torn there,
    answered ``failed`` ("The server stopped.") and left unsaved. It now ends as a cancel asked then does: cancelled,
    and saved so (read back after a restart on the same data folder). The start's writing is held on a gate the test
    opens once the stop has begun."""
    storing, gate = threading.Event(), threading.Event()
    begin = ResponsesStore.begin

    async def held_begin(self, *args, **kwargs):
        storing.set()
        await asyncio.to_thread(gate.wait, WAIT_S)
        return await begin(self, *args, **kwargs)

    monkeypatch.setattr(ResponsesStore, "begin", held_begin)
    engine = EndlessEngine()
    with endless_server(tmp_path / "data", engine) as srv:
        answer, reader = post_read_whole(srv.base_url, "/v1/responses", {"model": "endless", "input": "hi"},
                                         WAIT_S)
        assert storing.wait(WAIT_S)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        deadline = time.monotonic() + WAIT_S
        while not srv.app[SHUTTING_DOWN].is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gate.set()
        stopper.join(WAIT_S)
        reader.join(WAIT_S)
    head, body = bytes(answer).split(b"\r\n\r\n", 1)
    response = json.loads(body)
    assert b" 200 " in head.split(b"\r\n")[0] and response["status"] == "cancelled", response
    with ServerThread(ServerConfig(data_folder=tmp_path / "data", models=[], n_threads=1),
                      extensions=[EndlessEngine()]) as srv:
        status, stored = call(srv, "GET", f"/v1/responses/{response['id']}")
    assert status == 200 and stored["status"] == "cancelled", stored


class _WaitingEngine(EndlessEngine):
    """An engine whose slot actions (as a busy slot's does, until its request ends), tokenizing and spelling (as a
    model's load before them does) wait on a gate the test opens; ``waiting`` is set once one does."""

    def __init__(self):
        super().__init__()
        self.waiting, self.gate = threading.Event(), threading.Event()

    async def wait(self):
        self.waiting.set()
        await asyncio.to_thread(self.gate.wait, WAIT_S)

    async def slot_action(self, model, action, id_slot, path=None):
        await self.wait()
        return {"id_slot": id_slot, "n_tokens": 0, "n_bytes": 0, "ms": 0.0}

    async def tokenize(self, model, text, *, add_special=True, parse_special=False):
        await self.wait()
        return [1, 2]

    async def detokenize(self, model, tokens):
        await self.wait()
        return "ok"

    async def token_pieces(self, model, tokens):  # (an engine that tells them: llama-server's prompts are tokenized)
        await self.wait()
        return [b"ok" for _ in tokens]


def _stopped_while_waiting(tmp_path, path: str, body: dict, engine: _WaitingEngine | None = None) -> bytes:
    """Send ``path`` its ``body`` on a server whose engine waits (or a patched service, on ``engine``'s gate), stop
    the server once the request waits, and return what the client got while it still waited (the gate is opened
    only then: an answer that waited for it would come too late, once the stop's long grace period is over)."""
    data = tmp_path / "data"
    (tmp_path / "slots").mkdir()
    engine = engine or _WaitingEngine()
    DataFolder(data).models.create({"id": "endless", "engine": "endless", "object": "model"})
    config = ServerConfig(data_folder=data, models=[], n_threads=1, slot_save_path=str(tmp_path / "slots"))
    with ServerThread(config, extensions=[engine], shutdown_timeout=WAIT_S) as srv:
        stopper = threading.Thread(target=srv.stop)
        try:
            answer, reader = post_read_whole(srv.base_url, path, body, WAIT_S)
            assert engine.waiting.wait(WAIT_S)
            stopper.start()
            reader.join(WAIT_S)  # (before the work is let go: the answer may not wait for it)
            assert not engine.gate.is_set() and answer, "the client got no answer while its request waited"
        finally:
            engine.gate.set()
            if stopper.is_alive():
                stopper.join(WAIT_S)
    return bytes(answer)


@pytest.mark.parametrize("action", ["save", "restore", "erase"])
def test_a_slot_action_waiting_when_the_server_stops_is_a_503_at_once(tmp_path, action):
    """``POST /slots/{id}`` waits for its slot while the slot's request runs (llama-server's defer); one waiting when
    the server stopped was answered only once the action ended, or dropped at the end of the stop's grace period
    (long here: the test would see no answer). It is now llama-server's 503 ``server_shutdown`` as the stop begins,
    as every other request still waiting is. The action is held on a gate the test opens only once answered."""
    body = {"model": "endless"} if action == "erase" else {"model": "endless", "filename": "slot.bin"}
    status, error = _whole(_stopped_while_waiting(tmp_path, f"/slots/0?action={action}", body))
    assert status == 503 and error["error"]["code"] == 503, error  # (llama-server's shape)
    assert "shutting down" in error["error"]["message"], error


M_COUNT = {"model": "endless", "messages": M}
WAITING = {  # a request that waits on its model (its load first) without generating: each route, its body
    "/tokenize": {"model": "endless", "content": "hi"},
    "/v1/tokenize": {"model": "endless", "content": "hi", "with_pieces": True},
    "/detokenize": {"model": "endless", "tokens": [1, 2]},
    "/apply-template": M_COUNT,
    "/v1/chat/completions/input_tokens": M_COUNT,
    "/v1/messages/count_tokens": M_COUNT,
    "/v1/responses/input_tokens": {"model": "endless", "input": "hi"},
    "/completion": {"model": "endless", "prompt": "hi"},  # (llama-server's prompts: tokenized before they run)
    "/embedding": {"model": "endless", "content": "hi"},
    # (a logit_bias given as text is tokenized first: an infill's first wait)
    "/infill": {"model": "endless", "input_prefix": "a", "input_suffix": "b", "logit_bias": [["Hello", -0.5]]},
}


@pytest.mark.parametrize("path", list(WAITING))
def test_a_request_waiting_on_its_model_when_the_server_stops_is_a_503_at_once(tmp_path, monkeypatch, path):
    """Tokenizing (llama-server's prompts and text logit biases too, before they run), spelling, rendering a chat's
    prompt and counting its tokens load the model first where it is not loaded, and a long text takes seconds: one
    waiting when the server stopped was answered once its work ended, or dropped at the end of the stop's grace
    period, where a generation waiting is the dialect's 503 at once. It is now that 503 too. (A local model's
    rendering and counting are the chat service's: held here on the same gate.)"""
    from jan.services.chat import ChatService

    engine = _WaitingEngine()

    async def held(self, request):
        await engine.wait()
        raise AssertionError("let go only once the client was answered")

    monkeypatch.setattr(ChatService, "render", held)
    monkeypatch.setattr(ChatService, "count", held)
    status, error = _whole(_stopped_while_waiting(tmp_path, path, WAITING[path], engine))
    assert status == 503, error
    if path == "/v1/messages/count_tokens":
        assert error["type"] == "error" and error["error"]["type"] == "overloaded_error", error
    else:
        assert "shutting down" in error["error"]["message"], error
