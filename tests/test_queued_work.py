"""Work the API models as queued waits for room when the model's wait queue is full; interactive
requests still hear "busy" at once (503 ``queue_full``).

One slot, no wait queue: a streamed completion that runs until the test lets it go fills the model (its token limit
and the context are far past what the test does meanwhile: 400 tokens in a 512 context ended within 0.1 s on a
fast core, before the requests it was to hold up)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from api_helpers import until
from cut_off_helpers import HOLD_N_CTX, only_slot_held
from extension_helpers import call
from server_helpers import start_server

WAIT_S = 120  # generous: a busy 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("queued"), [stories_path], n_parallel=1, max_queue=0,
                       n_ctx=HOLD_N_CTX)
    yield srv
    srv.stop()


def _until(predicate, what: str):
    return until(predicate, what, WAIT_S)


def _busy_then_queued(server, model: str, max_tokens: int) -> dict:
    """With the model's queue full: an interactive response is refused at once (503 ``queue_full``, as
    before), a background one is accepted ``queued`` and stays so (neither failed nor started)."""
    status, body = call(server, "POST", "/v1/responses", {"model": model, "input": "Hi", "max_output_tokens": 4})
    assert status == 503 and body["error"]["code"] == "queue_full", body
    status, created = call(server, "POST", "/v1/responses", {"model": model, "input": "Hi",
                                                              "max_output_tokens": max_tokens, "background": True})
    assert status == 200 and created["status"] == "queued", created
    assert _response(server, created["id"])["status"] == "queued"
    return created


def _finished(server, response_id: str, what: str = "the background response finishes") -> dict:
    return _until(lambda: (r := _response(server, response_id))["status"] not in ("queued", "in_progress") and r, what)


def _response(server, response_id: str) -> dict:
    status, body = call(server, "GET", f"/v1/responses/{response_id}")
    assert status == 200, body
    return body


def test_a_background_response_waits_for_room_and_then_answers(server):
    blocker = only_slot_held(server)
    try:
        created = _busy_then_queued(server, "stories260K", 8)
    finally:
        blocker.release()
    done = _finished(server, created["id"])
    assert done["status"] == "incomplete" and done["incomplete_details"]["reason"] == "max_output_tokens", done
    assert done["usage"]["output_tokens"] == 8 and done["output"][0]["content"][0]["text"]


def test_a_background_response_started_when_the_blocker_ends_by_itself(server):
    # the room is made by a request read to its end (the engine's own signal, not the periodic recheck)
    blocker = only_slot_held(server, max_tokens=60)
    with blocker.stream as stream:
        status, created = call(server, "POST", "/v1/responses", {"model": "stories260K", "input": "Hi",
                                                                  "max_output_tokens": 4, "background": True})
        assert status == 200, created
        stream.read()  # the blocker runs to its end
    done = _finished(server, created["id"])
    assert done["status"] == "incomplete" and done["usage"]["output_tokens"] == 4


def test_a_queued_background_response_can_be_cancelled(server):
    blocker = only_slot_held(server)
    try:
        status, created = call(server, "POST", "/v1/responses", {"model": "stories260K", "input": "Hi",
                                                                  "max_output_tokens": 4, "background": True})
        assert status == 200 and created["status"] == "queued"
        status, cancelled = call(server, "POST", f"/v1/responses/{created['id']}/cancel")
        assert status == 200 and cancelled["status"] == "cancelled", cancelled
    finally:
        blocker.release()
    assert _response(server, created["id"])["status"] == "cancelled"
    # the model serves the next one normally (queued too: the blocker's slot is freed at the engine's next step)
    status, created = call(server, "POST", "/v1/responses", {"model": "stories260K", "input": "Hi",
                                                              "max_output_tokens": 2, "background": True})
    assert status == 200
    done = _finished(server, created["id"], "the next response finishes")
    assert done["usage"]["output_tokens"] == 2


def test_a_background_response_to_a_busy_remote_server_waits_for_it(server, tmp_path):
    # the front proxies to this module's server (one slot, no queue): busy there is a 503 queue_full
    from jan.store import DataFolder

    data = tmp_path / "front"
    DataFolder(data / "data").models.create({
        "id": "remote-stories", "engine": "openai",
        "settings": {"base_url": server.base_url + "/v1", "model": "stories260K", "api_key": "unused"}})
    front = start_server(data, [])
    try:
        blocker = only_slot_held(server)
        try:
            created = _busy_then_queued(front, "remote-stories", 4)
        finally:
            blocker.release()
        done = _finished(front, created["id"])
        assert done["status"] == "incomplete" and done["usage"]["output_tokens"] == 4, done
    finally:
        front.stop()


def test_a_run_nobody_waits_on_waits_for_room_and_a_streamed_one_fails_busy(server):
    status, thread = call(server, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon"}]})
    assert status == 200, thread
    tid = thread["id"]
    blocker = only_slot_held(server)
    try:
        # streamed: its client is there to hear "busy", as an interactive request
        with urllib.request.urlopen(urllib.request.Request(
                f"{server.base_url}/v1/threads/{tid}/runs", method="POST",
                headers={"Content-Type": "application/json"},
                data=json.dumps({"max_tokens": 4, "stream": True}).encode()), timeout=WAIT_S) as resp:
            events = resp.read().decode()
        assert "thread.run.failed" in events and "queue_full" in events, events
        # not streamed (answered at once, polled), or background: queued work, nobody waits on it
        for body in ({"max_tokens": 4}, {"max_tokens": 4, "background": True}):
            status, run = call(server, "POST", f"/v1/threads/{tid}/runs", body)
            assert status == 200 and run["status"] in ("queued", "in_progress"), run
            status, fetched = call(server, "GET", f"/v1/threads/{tid}/runs/{run['id']}")
            assert fetched["status"] in ("queued", "in_progress"), fetched  # waiting, not failed
            blocker.release()
            done = _until(lambda: (r := call(server, "GET", f"/v1/threads/{tid}/runs/{run['id']}")[1])["status"]
                          not in ("queued", "in_progress") and r, "the run finishes once there is room")
            assert done["status"] == "incomplete" and done["usage"]["completion_tokens"] == 4, done
            blocker = only_slot_held(server)
    finally:
        blocker.release()
