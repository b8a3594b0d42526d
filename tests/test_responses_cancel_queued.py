"""A Responses request cancelled before it produced anything — a ``background`` one still ``queued``, waiting for
the model — ends ``status: "cancelled"`` with an empty ``output`` (OpenAI's shape), never an empty ``incomplete``
message a client would read as a cut-off answer: not when retrieved, not in the cancel's answer, not in its replayed
stream (``?stream=true&starting_after=N``), its input items or its stored conversation.

The model is held deterministically: the engine's ``acquire`` (where a request waits for its model) waits on a gate
the test opens, and the test waits until the response is there before it cancels."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

import pytest
from api_helpers import parse_sse, running
from cut_off_helpers import request

from jan.extensions.llamacpp.extension import LlamaCppExtension
from jan.server.dialects.responses import ResponseStream
from jan.services.types import ChatDelta

WAIT_S = 120


# -- the encoder ---------------------------------------------------------------------------------------------------
def test_an_answer_cancelled_before_any_output_has_no_items():
    encoder = ResponseStream()
    encoder.cancelled()
    assert encoder.finish() == [] and encoder.output == [] and encoder.status == "cancelled"


def test_the_engine_cutting_off_an_answer_before_any_output_leaves_no_items():
    encoder = ResponseStream()
    encoder.feed(ChatDelta(finish_reason="cancelled"))  # the model stopped or unloaded under it
    assert encoder.finish() == [] and encoder.output == [] and encoder.status == "cancelled"


def test_an_answer_that_ended_with_nothing_still_has_its_message():
    encoder = ResponseStream()
    encoder.feed(ChatDelta(finish_reason="stop"))
    events = encoder.finish()
    assert [item["type"] for item in encoder.output] == ["message"] and encoder.status == "completed"
    assert events[-1]["type"] == "response.output_item.done"


def test_an_answer_cancelled_after_some_output_keeps_it_incomplete():
    encoder = ResponseStream()
    encoder.feed(ChatDelta(content="Once"))
    encoder.cancelled()
    encoder.finish()
    assert [(i["type"], i["status"]) for i in encoder.output] == [("message", "incomplete")]


# -- through a server ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("cancel-queued") / "data", stories_path) as server:
        yield server


@pytest.fixture
def held(monkeypatch):
    """While the test runs, every generation waits for its model until ``opened`` is set; ``waiting`` is set as one
    begins to wait (the response is queued then)."""
    opened, waiting = threading.Event(), threading.Event()
    real = LlamaCppExtension.acquire

    async def acquire(self, model):
        waiting.set()
        await asyncio.to_thread(opened.wait)
        return await real(self, model)

    monkeypatch.setattr(LlamaCppExtension, "acquire", acquire)
    yield waiting
    opened.set()


def _no_empty_message(response: dict) -> None:
    assert response["status"] == "cancelled", response
    assert response["output"] == [], response["output"]
    assert response["incomplete_details"] is None and response["error"] is None


def _queued_then_cancelled(srv, held, body: dict) -> tuple[str, list]:
    """Create a background response, see it queued (waiting for the model), cancel it; (its id, the events its
    creating stream sent before the cancel, when streamed)."""
    req = urllib.request.Request(srv.base_url + "/v1/responses", method="POST",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps({"model": "stories260K", "input": "Once upon a time",
                                                  "max_output_tokens": 8, "background": True, **body}).encode())
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        if body.get("stream"):
            first = b""
            while not first.endswith(b"\n\n"):  # response.created
                first += resp.readline()
            created = parse_sse(first.decode())[0][1]["response"]
        else:
            created = json.loads(resp.read())
    assert created["status"] == "queued", created
    assert held.wait(WAIT_S), "the response never asked for its model"
    status, _, got = request(srv, "GET", f"/v1/responses/{created['id']}")
    assert status == 200 and got["status"] == "queued" and got["output"] == [], got
    status, _, cancelled = request(srv, "POST", f"/v1/responses/{created['id']}/cancel")
    assert status == 200, cancelled
    _no_empty_message(cancelled)
    return created["id"], cancelled


def test_a_queued_background_response_cancelled_has_no_message_anywhere(srv, held):
    response_id, _ = _queued_then_cancelled(srv, held, {"stream": True})
    status, _, got = request(srv, "GET", f"/v1/responses/{response_id}")
    assert status == 200
    _no_empty_message(got)
    # its stream, replayed from the start and from after its first event: no item added, the end "cancelled"
    for after in (-1, 0):
        with urllib.request.urlopen(f"{srv.base_url}/v1/responses/{response_id}?stream=true&starting_after={after}",
                                    timeout=WAIT_S) as resp:
            events = [data for _, data in parse_sse(resp.read().decode())]
        kinds = [e["type"] for e in events]
        assert not [k for k in kinds if k.startswith(("response.output_item", "response.content_part",
                                                      "response.output_text"))], kinds
        assert kinds[-1] == "response.incomplete" and "response.in_progress" not in kinds, kinds
        assert all(e["sequence_number"] > after for e in events)
        _no_empty_message(events[-1]["response"])
    # its input items are its input, nothing more
    status, _, items = request(srv, "GET", f"/v1/responses/{response_id}/input_items")
    assert status == 200 and [(i["type"], i["role"]) for i in items["data"]] == [("message", "user")], items


def test_a_queued_response_not_streamed_cancelled_stores_no_answer(srv, held):
    response_id, _ = _queued_then_cancelled(srv, held, {})
    status, _, got = request(srv, "GET", f"/v1/responses/{response_id}")
    _no_empty_message(got)
    # its conversation (a thread, named in the response's index file) holds the question, and no empty answer
    index = json.loads((srv.config.data_folder / "responses" / f"{response_id}.json").read_text())
    assert index["response"]["output"] == [] and index["response"]["status"] == "cancelled"
    status, _, messages = request(srv, "GET", f"/v1/threads/{index['thread_id']}/messages?order=asc")
    assert status == 200 and [m["role"] for m in messages["data"]] == ["user"], messages
    status, _, items = request(srv, "GET", f"/v1/responses/{response_id}/input_items")
    assert [i["role"] for i in items["data"]] == ["user"], items
