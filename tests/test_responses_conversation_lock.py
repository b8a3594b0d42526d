"""One response at a time in a conversation, as OpenAI's Responses API: a second request on a ``conversation`` while
a response is being made in it is a 400 ``conversation_locked`` (param ``conversation``, OpenAI's words). Both used
to run on the same history, and both were added to it, each answer missing the other's turn.

The first response is held mid-generation by a gate on the engine's request (no sleeps): the test goes on once its
stream has told its first text, and lets it finish by opening the gate."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from jan.engine.model import Model
from jan.server.dialects.conversation_locks import LOCKED_MESSAGE, ConversationLocks
from jan.server.errors import APIError
from server_helpers import start_server

MODEL = "stories260K"
ENDED = ("completed", "incomplete")  # (its whole answer, or up to max_output_tokens)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("convlock"), [stories_path], n_parallel=4)
    yield srv
    srv.stop()


class _Gate(threading.Event):
    """Holds the next engine request made (one: the others run freely) once it has told some text."""

    def __init__(self):
        super().__init__()
        self.to_hold = 1


class _Gated:
    """An engine request that tells chunks up to its first text, then waits for ``gate`` before the rest."""

    def __init__(self, request, gate: _Gate | None):
        self._request, self._gate, self._told_text = request, gate, False

    def __getattr__(self, name):
        return getattr(self._request, name)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._told_text and self._gate is not None:
            assert await asyncio.to_thread(self._gate.wait, 120), "the test never opened the gate"
            self._gate = None
        chunk = await self._request.__anext__()
        self._told_text = self._told_text or bool(chunk.text)
        return chunk


@pytest.fixture
def gate(monkeypatch):
    gate = _Gate()
    original = Model.stream

    def stream(self, prompt, **kw):
        held = gate.to_hold > 0
        gate.to_hold -= 1
        return _Gated(original(self, prompt, **kw), gate if held else None)

    monkeypatch.setattr(Model, "stream", stream)
    yield gate
    gate.set()  # (a failed test leaves no generation waiting)


def _body(conversation: str, text: str, **extra) -> dict:
    return {"model": MODEL, "input": text, "conversation": conversation, "max_output_tokens": 12,
            "temperature": 0} | extra


def _texts(http: httpx.Client, conversation: str) -> list[tuple[str, str]]:
    items = http.get(f"/v1/conversations/{conversation}/items", params={"order": "asc", "limit": 100}).json()["data"]
    return [(i["role"], "".join(p.get("text", "") for p in i["content"])) for i in items if i["type"] == "message"]


def test_a_second_response_in_a_busy_conversation_is_conversation_locked(server, gate):
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        other = http.post("/v1/conversations", json={}).json()["id"]
        with http.stream("POST", "/v1/responses", json=_body(conversation, "Once upon a time", stream=True)) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            events = []
            for line in lines:  # up to its first text: the response is being made, held at the gate
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "response.output_text.delta":
                        break
            for extra in ({}, {"stream": True}, {"background": True}):
                second = http.post("/v1/responses", json=_body(conversation, "And then?", **extra))
                assert second.status_code == 400, second.text
                assert second.json()["error"] == {"message": LOCKED_MESSAGE, "type": "invalid_request_error",
                                                  "param": "conversation", "code": "conversation_locked"}
            # another conversation is not held by it
            assert http.post("/v1/responses", json=_body(other, "Hello")).json()["status"] in ENDED
            gate.set()
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
            assert events[-1]["type"] in ("response.completed", "response.incomplete"), events[-1]
            assert events[-1]["response"]["status"] in ENDED
        first_answer = events[-1]["response"]["output"][0]["content"][0]["text"]
        # the refused requests added nothing; once the first ended, the next one reads its turn
        assert _texts(http, conversation) == [("user", "Once upon a time"), ("assistant", first_answer)]
        third = http.post("/v1/responses", json=_body(conversation, "The end."))
        assert third.status_code == 200 and third.json()["status"] in ENDED, third.text
        assert [t[1] for t in _texts(http, conversation)][:3] == ["Once upon a time", first_answer, "The end."]


def test_a_batch_line_in_a_busy_conversation_waits_its_turn(server, gate):
    import time

    from jan.server.route_state import CONVERSATION_LOCKS

    locks = server.app[CONVERSATION_LOCKS]
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        line = {"custom_id": "later", "method": "POST", "url": "/v1/responses", "body": _body(conversation, "Later")}
        upload = http.post("/v1/files", data={"purpose": "batch"},
                           files={"file": ("in.jsonl", json.dumps(line).encode(), "application/jsonl")}).json()
        with http.stream("POST", "/v1/responses", json=_body(conversation, "First", stream=True)) as first:
            lines = first.iter_lines()
            for text in lines:  # up to its first text: held at the gate
                if text.startswith("data: ") and json.loads(text[6:])["type"] == "response.output_text.delta":
                    break
            batch = http.post("/v1/batches", json={"input_file_id": upload["id"], "endpoint": "/v1/responses",
                                                   "completion_window": "24h"}).json()
            deadline = time.monotonic() + 120
            while locks.waiting(conversation) == 0:  # (the line has reached the conversation, and waits there)
                assert time.monotonic() < deadline, "the batch's line never came to the conversation"
                time.sleep(0.02)
            gate.set()
            for _ in lines:
                pass
        deadline = time.monotonic() + 120
        while (batch := http.get(f"/v1/batches/{batch['id']}").json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, batch
            time.sleep(0.05)
        assert batch["request_counts"] == {"total": 1, "completed": 1, "failed": 0}, batch
        # it ran after the live response, reading its turn
        assert [t[1] for t in _texts(http, conversation)][0::2] == ["First", "Later"]


def test_a_refused_or_cancelled_response_lets_the_next_one_in(server, gate):
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        # refused after the conversation was held (no such model): not left held
        refused = http.post("/v1/responses", json=_body(conversation, "Hi") | {"model": "no-such-model"})
        assert refused.status_code == 404, refused.text
        # a background response, cancelled: held until it ended (the first request the engine is given: gated)
        started = http.post("/v1/responses", json=_body(conversation, "Hi", background=True)).json()
        assert http.post("/v1/responses", json=_body(conversation, "Hi")).json()["error"]["code"] == \
            "conversation_locked"
        assert http.post(f"/v1/responses/{started['id']}/cancel").json()["status"] == "cancelled"
        gate.set()
        after = http.post("/v1/responses", json=_body(conversation, "Again"))
        assert after.status_code == 200 and after.json()["status"] in ENDED, after.text


async def test_a_queued_taker_waits_for_the_conversation_and_others_are_refused():
    locks = ConversationLocks()
    hold = await locks.take("conv_a")
    with pytest.raises(APIError) as refused:
        await locks.take("conv_a")
    assert refused.value.status == 400 and refused.value.code == "conversation_locked"
    other = await locks.take("conv_b")  # (one conversation's hold is not another's)
    waiting = asyncio.ensure_future(locks.wait_take("conv_a"))
    await asyncio.sleep(0)
    assert not waiting.done()
    hold.release()
    hold.release()  # (twice: nothing more)
    second = await asyncio.wait_for(waiting, 10)
    assert locks.held("conv_a") and hold.released
    second.release()
    other.release()
    assert not locks.held("conv_a") and not locks.held("conv_b")
    (await locks.take("conv_a")).release()
