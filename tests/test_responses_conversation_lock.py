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


# -- across processes, and against Assistants runs ----------------------------------------------------------------
# The hold used to be this server's alone: a second process sharing the data folder (another ``jan serve``, the CLI's
# local mode) read the same history and added its turn too, and an Assistants run on the conversation's thread (a
# conversation is a thread) ran beside a response. It is now the thread's one claim (jan.services.thread_claims).

#: A second jan process holding a conversation as a response of its does (the thread's claim, a lease held until
#: the process ends), then telling the test so by a marker file and waiting to be killed.
_HOLDER = """
import asyncio, sys
from pathlib import Path
from jan.services.thread_claims import thread_claims

folder, conversation, marker = sys.argv[1:]

async def main():
    claims = thread_claims(folder)
    async with claims.lock(conversation):
        assert await asyncio.to_thread(claims.take_turn, conversation)
    Path(marker).write_text("held")
    await asyncio.sleep(3600)

asyncio.run(main())
"""

BOUND = 120.0  # (a generous bound on each wait: a busy 2-core machine)


def _hold_elsewhere(server, conversation: str, tmp_path):
    """A second process holding ``conversation``, once it holds it (its marker file written)."""
    import subprocess
    import sys
    import time

    from jan.server.keys import CONFIG

    marker = tmp_path / f"{conversation}.held"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(server.app[CONFIG].data_folder), conversation,
                               str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + BOUND
    while not marker.exists():
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline, "the second process never held the conversation"
        time.sleep(0.02)
    return holder


def _kill(holder) -> None:
    import signal

    holder.send_signal(signal.SIGKILL)  # (no cleanup of its own: the OS lets its lease go)
    holder.wait(BOUND)


def test_a_conversation_another_process_holds_is_locked_until_that_process_dies(server, tmp_path):
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        holder = _hold_elsewhere(server, conversation, tmp_path)
        try:
            for extra in ({}, {"stream": True}, {"background": True}):
                refused = http.post("/v1/responses", json=_body(conversation, "Hi", **extra))
                assert refused.status_code == 400, refused.text
                assert refused.json()["error"]["code"] == "conversation_locked", refused.text
        finally:
            _kill(holder)
        # killed (SIGKILL): its hold died with it
        after = http.post("/v1/responses", json=_body(conversation, "Hi"))
        assert after.status_code == 200 and after.json()["status"] in ENDED, after.text
        assert [t[1] for t in _texts(http, conversation)][:1] == ["Hi"]


def test_a_batch_line_waits_for_a_conversation_another_process_holds(server, tmp_path):
    import time

    from jan.server.route_state import CONVERSATION_LOCKS

    locks = server.app[CONVERSATION_LOCKS]
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        line = {"custom_id": "later", "method": "POST", "url": "/v1/responses", "body": _body(conversation, "Later")}
        upload = http.post("/v1/files", data={"purpose": "batch"},
                           files={"file": ("in.jsonl", json.dumps(line).encode(), "application/jsonl")}).json()
        holder = _hold_elsewhere(server, conversation, tmp_path)
        try:
            batch = http.post("/v1/batches", json={"input_file_id": upload["id"], "endpoint": "/v1/responses",
                                                   "completion_window": "24h"}).json()
            deadline = time.monotonic() + BOUND
            while locks.waiting(conversation) == 0:  # (the line has reached the conversation, and waits there)
                status = http.get(f"/v1/batches/{batch['id']}").json()["status"]
                assert status not in ("completed", "failed"), "the line did not wait for the other process"
                assert time.monotonic() < deadline, "the batch's line never came to the conversation"
                time.sleep(0.02)
            assert _texts(http, conversation) == []  # (nothing added while the other process holds it)
        finally:
            _kill(holder)
        deadline = time.monotonic() + BOUND
        while (batch := http.get(f"/v1/batches/{batch['id']}").json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, batch
            time.sleep(0.05)
        assert batch["request_counts"] == {"total": 1, "completed": 1, "failed": 0}, batch
        assert [t[1] for t in _texts(http, conversation)][:1] == ["Later"]


def test_a_run_on_the_conversations_thread_and_a_response_exclude_each_other(server, gate):
    import time

    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={"items": [
            {"type": "message", "role": "user", "content": "Once upon a time"}]}).json()["id"]
        # a run active on the conversation's thread (held at the gate: the first engine request): no response
        run = http.post(f"/v1/threads/{conversation}/runs", json={"model": MODEL, "max_tokens": 12,
                                                                    "background": True})
        assert run.status_code == 200, run.text
        run = run.json()
        refused = http.post("/v1/responses", json=_body(conversation, "Hi"))
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "conversation_locked", refused.text
        gate.set()
        deadline = time.monotonic() + BOUND
        while http.get(f"/v1/threads/{conversation}/runs/{run['id']}").json()["status"] in ("queued", "in_progress"):
            assert time.monotonic() < deadline, "the run never ended"
            time.sleep(0.05)
        # a response being made in it (held at a gate of its own): no run, no message added through the runs API
        gate.clear()
        gate.to_hold = 1
        with http.stream("POST", "/v1/responses", json=_body(conversation, "Once upon a time", stream=True)) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            for text in lines:  # up to its first text: held at the gate
                if text.startswith("data: ") and json.loads(text[6:])["type"] == "response.output_text.delta":
                    break
            run = http.post(f"/v1/threads/{conversation}/runs", json={"model": MODEL, "max_tokens": 12})
            assert run.status_code == 400, run.text
            error = run.json()["error"]
            assert error["code"] == "run_active" and error["param"] == "thread_id", error
            assert error["message"].startswith(f"Thread {conversation} already has an active response"), error
            added = http.post(f"/v1/threads/{conversation}/messages", json={"role": "user", "content": "Hello"})
            assert added.status_code == 400 and added.json()["error"]["code"] == "run_active", added.text
            gate.set()
            for _ in lines:
                pass
        # both let go: a run starts again
        run = http.post(f"/v1/threads/{conversation}/runs", json={"model": MODEL, "max_tokens": 12})
        assert run.status_code == 200, run.text


async def test_a_read_only_data_folder_holds_conversations_in_its_process(tmp_path, monkeypatch):
    """A folder that refuses every write (EROFS) records no claim on disk: a hold is taken (no error) and excludes
    within the process, as before; let go, the conversation is free again."""
    import errno
    import pathlib

    from jan.services.thread_claims import ThreadClaims

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    claims = ThreadClaims(tmp_path / "data")

    async def claim(conversation):
        async with claims.lock(conversation):
            return await asyncio.to_thread(claims.take_turn, conversation)

    locks = ConversationLocks(claim, claims.release_turn)
    hold = await locks.take("conv_a")
    with pytest.raises(APIError) as refused:
        await locks.take("conv_a")
    assert refused.value.code == "conversation_locked"
    assert not claims.turn_held("conv_a") and not (tmp_path / "data").exists()  # (nothing written)
    hold.release()
    (await asyncio.wait_for(locks.wait_take("conv_a"), BOUND)).release()


def test_a_turn_is_never_named_by_a_path(tmp_path):
    """A turn's lease is a file named by its thread's id: an id that is a path (``..``, ``/``) is never one, so no
    check of such a thread (a run's, through the runs API) reads or removes a file outside the lease folder."""
    from jan.services.thread_claims import ThreadClaims

    outside = tmp_path / "turn.x.lock"
    outside.write_text("")
    (tmp_path / "data").mkdir()
    claims = ThreadClaims(tmp_path / "data")
    for bad in ("../x", "a/b", "x\n", ""):
        assert not claims.turn_held(bad)
        with pytest.raises(ValueError):
            claims.take_turn(bad)
        claims.release_turn(bad)
    assert outside.exists()
    assert claims.take_turn("conv_ok") and claims.turn_held("conv_ok")
    claims.release_turn("conv_ok")
    assert not claims.turn_held("conv_ok")
