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

from jan.server.dialects.conversation_locks import LOCKED_MESSAGE, ConversationLocks
from jan.server.errors import APIError
from gate_helpers import gate_engine
from server_helpers import start_server

MODEL = "stories260K"
ENDED = ("completed", "incomplete")  # (its whole answer, or up to max_output_tokens)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("convlock"), [stories_path], n_parallel=4)
    yield srv
    srv.stop()


@pytest.fixture
def gate(monkeypatch):
    gate = gate_engine(monkeypatch)
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
        # nor an item added through the Conversations API (the run answers the thread it was started with)
        added = http.post(f"/v1/conversations/{conversation}/items", json={"items": [
            {"type": "message", "role": "user", "content": "Meanwhile"}]})
        assert added.status_code == 400 and added.json()["error"]["code"] == "conversation_locked", added.text
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


# -- the Conversations API's writes while a response is being made in the conversation -------------------------
# They took no hold: an item added (or the conversation deleted) during a response landed before the response's own
# turn, which had answered without it (the items listed out of order), or the response's turn was appended to a
# conversation deleted under it. Each write is now OpenAI's 400 conversation_locked while a response holds it.

def _first_text(lines) -> None:
    for line in lines:  # up to its first text: the response is being made, held at the gate
        if line.startswith("data: ") and json.loads(line[6:])["type"] == "response.output_text.delta":
            return
    raise AssertionError("the response told no text")


def test_every_conversation_write_is_locked_while_a_response_is_made_in_it(server, gate):
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={"metadata": {"k": "v"}, "items": [
            {"type": "message", "role": "user", "content": "Hello"}]}).json()["id"]
        other = http.post("/v1/conversations", json={"items": [
            {"type": "message", "role": "user", "content": "Hi"}]}).json()["id"]
        kept = http.get(f"/v1/conversations/{conversation}/items").json()["data"][0]["id"]
        other_item = http.get(f"/v1/conversations/{other}/items").json()["data"][0]["id"]
        with http.stream("POST", "/v1/responses", json=_body(conversation, "Once upon a time", stream=True)) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            _first_text(lines)
            writes = [("POST", f"/v1/conversations/{conversation}/items",
                       {"items": [{"type": "message", "role": "user", "content": "Meanwhile"}]}),
                      ("DELETE", f"/v1/conversations/{conversation}/items/{kept}", None),
                      ("POST", f"/v1/conversations/{conversation}", {"metadata": {"k": "changed"}}),
                      ("DELETE", f"/v1/conversations/{conversation}", None)]
            for method, path, body in writes:
                refused = http.request(method, path, json=body)
                assert refused.status_code == 400, (method, path, refused.text)
                assert refused.json()["error"] == {"message": LOCKED_MESSAGE, "type": "invalid_request_error",
                                                   "param": "conversation_id", "code": "conversation_locked"}
            # reads go on, and another conversation's writes are not held by it
            assert http.get(f"/v1/conversations/{conversation}").json()["metadata"] == {"k": "v"}
            assert http.post(f"/v1/conversations/{other}/items", json={"items": [
                {"type": "message", "role": "user", "content": "More"}]}).status_code == 200
            assert http.delete(f"/v1/conversations/{other}/items/{other_item}").status_code == 200
            assert http.delete(f"/v1/conversations/{other}").status_code == 200
            gate.set()
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        answer = events[-1]["response"]["output"][0]["content"][0]["text"]
        # nothing the refused writes asked was done; the response's turn follows the history it answered
        assert _texts(http, conversation) == [("user", "Hello"), ("user", "Once upon a time"), ("assistant", answer)]
        assert http.get(f"/v1/conversations/{conversation}").json()["metadata"] == {"k": "v"}
        # the response ended (its final event told): the conversation is free for every write at once
        added = http.post(f"/v1/conversations/{conversation}/items", json={"items": [
            {"type": "message", "role": "user", "content": "After"}]})
        assert added.status_code == 200, added.text
        assert http.delete(f"/v1/conversations/{conversation}/items/{kept}").status_code == 200
        assert http.post(f"/v1/conversations/{conversation}", json={"metadata": {"k": "w"}}).status_code == 200
        assert _texts(http, conversation) == [("user", "Once upon a time"), ("assistant", answer), ("user", "After")]
        assert http.delete(f"/v1/conversations/{conversation}").status_code == 200
        assert http.get(f"/v1/conversations/{conversation}").status_code == 404


def test_every_thread_write_to_a_conversation_is_refused_while_a_response_is_made_in_it(server, gate):
    """A conversation is a thread: the Assistants API's writes to it (the thread modified or deleted, a message
    modified or deleted) are refused as the Conversations API's are (they went through, and the thread deleted under
    the response took its turn with it)."""
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={"metadata": {"k": "v"}, "items": [
            {"type": "message", "role": "user", "content": "Hello"}]}).json()["id"]
        kept = http.get(f"/v1/threads/{conversation}/messages").json()["data"][0]["id"]
        with http.stream("POST", "/v1/responses", json=_body(conversation, "Once upon a time", stream=True)) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            _first_text(lines)
            writes = [("POST", f"/v1/threads/{conversation}", {"metadata": {"k": "changed"}}),
                      ("POST", f"/v1/threads/{conversation}/messages/{kept}", {"metadata": {"k": "changed"}}),
                      ("DELETE", f"/v1/threads/{conversation}/messages/{kept}", None),
                      ("DELETE", f"/v1/threads/{conversation}", None)]
            for method, path, body in writes:
                refused = http.request(method, path, json=body)
                assert refused.status_code == 400, (method, path, refused.text)
                error = refused.json()["error"]
                assert error["code"] == "run_active" and error["param"] == "thread_id", error
            gate.set()
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        answer = events[-1]["response"]["output"][0]["content"][0]["text"]
        assert _texts(http, conversation) == [("user", "Hello"), ("user", "Once upon a time"), ("assistant", answer)]
        assert http.get(f"/v1/conversations/{conversation}").json()["metadata"] == {"k": "v"}
        # the response ended: the thread's writes go through at once
        assert http.post(f"/v1/threads/{conversation}", json={"metadata": {"k": "w"}}).status_code == 200
        assert http.post(f"/v1/threads/{conversation}/messages/{kept}",
                         json={"metadata": {"k": "w"}}).status_code == 200
        assert http.delete(f"/v1/threads/{conversation}/messages/{kept}").status_code == 200
        assert http.delete(f"/v1/threads/{conversation}").status_code == 200
        assert http.get(f"/v1/conversations/{conversation}").status_code == 404


def test_a_conversation_write_is_locked_while_another_process_holds_it(server, tmp_path):
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        holder = _hold_elsewhere(server, conversation, tmp_path)
        try:
            refused = http.post(f"/v1/conversations/{conversation}/items", json={"items": [
                {"type": "message", "role": "user", "content": "Meanwhile"}]})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "conversation_locked"
            assert http.delete(f"/v1/conversations/{conversation}").json()["error"]["code"] == "conversation_locked"
        finally:
            _kill(holder)
        assert http.delete(f"/v1/conversations/{conversation}").status_code == 200


# -- letting a conversation go does its file work off the event loop ----------------------------------------------
# Its release unlinked the turn's lease file on the event loop: a slow disk stalled every request meanwhile.

async def test_a_release_lets_its_claim_go_in_a_worker_thread():
    entered, unblock, done = threading.Event(), threading.Event(), threading.Event()

    def unclaim(conversation):
        entered.set()
        unblock.wait(BOUND)  # (a disk that does not answer: the event loop must not wait on it)
        done.set()

    async def claim(conversation):
        return True

    locks = ConversationLocks(claim, unclaim)
    hold = await locks.take("conv_a")
    hold.release()  # returns at once: the unlink waits in a worker thread
    assert not done.is_set()
    assert await asyncio.to_thread(entered.wait, BOUND)
    # the loop runs meanwhile; a take waits for the release to finish rather than being refused
    taking = asyncio.ensure_future(locks.take("conv_a"))
    await asyncio.sleep(0)
    assert not taking.done() and locks.held("conv_a")
    unblock.set()
    again = await asyncio.wait_for(taking, BOUND)
    assert done.is_set()
    await asyncio.wait_for(again.let_go(), BOUND)
    assert not locks.held("conv_a")


def _slow_release():
    """A ``ThreadClaims.release_turn`` that removes the lease file only once the test allows it, as on a disk that
    does not answer: ``(entered, unblock, original, slow_release)``; ``entered`` is set as a release begins, ``unblock``
    lets it (and every later one) go on, ``original`` is the real method to put back."""
    from jan.services.thread_claims import ThreadClaims

    entered, unblock = threading.Event(), threading.Event()
    original = ThreadClaims.release_turn

    def slow_release(self, thread_id):
        entered.set()
        unblock.wait(BOUND)
        original(self, thread_id)

    return entered, unblock, original, slow_release


def test_a_slow_lease_removal_stalls_no_other_request(server, monkeypatch):
    """The turn's lease file removed on a disk that does not answer (``release_turn`` blocked on an event): the
    response waits for it, ``/health`` is answered meanwhile."""
    import concurrent.futures

    from jan.services.thread_claims import ThreadClaims

    entered, unblock, original, slow_release = _slow_release()

    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        monkeypatch.setattr(ThreadClaims, "release_turn", slow_release)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            response = pool.submit(http.post, "/v1/responses", json=_body(conversation, "Hi"))
            try:
                assert entered.wait(BOUND), "the response never let its conversation go"
                # (the loop blocked in the unlink would answer nothing until it returned: BOUND later)
                health = httpx.get(server.base_url + "/health", timeout=BOUND / 4)
                assert health.status_code == 200
                assert not response.done()  # (its conversation is let go before it answers)
            finally:
                unblock.set()
            assert response.result(BOUND).json()["status"] in ENDED
        monkeypatch.setattr(ThreadClaims, "release_turn", original)
        assert http.post(f"/v1/conversations/{conversation}/items", json={"items": [
            {"type": "message", "role": "user", "content": "After"}]}).status_code == 200


def test_a_refused_response_answers_once_its_conversation_is_free(server, monkeypatch):
    """A response refused after it took its conversation (an item reference to nothing: 400) let the conversation
    go without waiting for its lease file to be removed: on a slow disk its 4xx came first, and the client's next
    write to the conversation was ``conversation_locked``. The refusal is answered once the conversation is free."""
    import concurrent.futures

    from jan.services.thread_claims import ThreadClaims

    entered, unblock, original, slow_release = _slow_release()

    with httpx.Client(base_url=server.base_url, timeout=BOUND) as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        monkeypatch.setattr(ThreadClaims, "release_turn", slow_release)
        body = _body(conversation, "unused") | {"input": [{"type": "item_reference", "id": "msg_nowhere"}]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            refused = pool.submit(http.post, "/v1/responses", json=body)
            try:
                assert entered.wait(BOUND), "the refused response never let its conversation go"
                # (answered meanwhile, the client's next write would find the conversation still held)
                assert httpx.get(server.base_url + "/health", timeout=BOUND / 4).status_code == 200
                assert not refused.done()
            finally:
                unblock.set()
            assert refused.result(BOUND).status_code == 400
        monkeypatch.setattr(ThreadClaims, "release_turn", original)
        added = http.post(f"/v1/conversations/{conversation}/items", json={"items": [
            {"type": "message", "role": "user", "content": "After"}]})
        assert added.status_code == 200, added.text
