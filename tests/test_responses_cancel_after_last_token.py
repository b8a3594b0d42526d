"""A cancel that comes after a response's last token, while its end is being saved, is answered as a cancel of an
ended response is: 400 ``invalid_state``, not a 200 with a response that was not cancelled.

It found the response still running, waited for its end and answered 200 with it ``completed`` (or ``incomplete``);
the same cancel a moment later was a 400. The end's saving is held deterministically (the store's ``complete`` waits
on a gate the test opens once the cancel has reached the response)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from api_helpers import running
from extension_helpers import call

from jan.server.dialects.responses_run import ResponseRun
from jan.server.dialects.responses_store import ResponsesStore

WAIT_S = 120  # (bounds against a hang, never measures)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("cancel-late") / "data", stories_path) as server:
        yield server


def test_a_cancel_racing_the_end_of_a_response_is_refused_as_a_late_one(srv, monkeypatch):
    saving, gate, asked = threading.Event(), threading.Event(), threading.Event()
    complete, cancel = ResponsesStore.complete, ResponseRun.cancel

    async def held_complete(self, *args, **kwargs):
        saving.set()
        await asyncio.to_thread(gate.wait, WAIT_S)
        return await complete(self, *args, **kwargs)

    async def noted_cancel(self):
        asked.set()
        return await cancel(self)

    monkeypatch.setattr(ResponsesStore, "complete", held_complete)
    monkeypatch.setattr(ResponseRun, "cancel", noted_cancel)
    status, created = call(srv, "POST", "/v1/responses", {"model": "stories260K", "input": "Once", "background": True,
                                                          "max_output_tokens": 3})
    assert status == 200, created
    assert saving.wait(WAIT_S)  # every token made: the end is being saved
    answer: list = []
    canceller = threading.Thread(target=lambda: answer.append(
        call(srv, "POST", f"/v1/responses/{created['id']}/cancel", {})))
    canceller.start()
    try:
        assert asked.wait(WAIT_S)  # the cancel reached the response while its end is saved
    finally:
        gate.set()
        canceller.join(WAIT_S)
    status, body = answer[0]
    assert status == 400 and body["error"]["code"] == "invalid_state", body
    status, stored = call(srv, "GET", f"/v1/responses/{created['id']}")
    assert status == 200 and stored["status"] == "incomplete", stored
    # and one a moment later says the same
    status, body = call(srv, "POST", f"/v1/responses/{created['id']}/cancel", {})
    assert status == 400 and body["error"]["code"] == "invalid_state", body
