"""A run's cancel that comes after its last token, while its end is being saved, is answered as a cancel of an ended
run is: 400 ``run_not_active``, not a 200 with a run that was not cancelled.

It found the run still in progress, waited for its end and answered 200 with it ``completed`` (or ``incomplete``);
the same cancel a moment later was a 400. The end is held deterministically: the turn's finish waits on a gate the
test opens once the cancel has reached the run service."""

from __future__ import annotations

import asyncio
import threading

import pytest
from api_helpers import running
from extension_helpers import call

from jan.services import runs

WAIT_S = 120  # (bounds against a hang, never measures)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("run-cancel-late") / "data", stories_path) as server:
        yield server


def test_a_cancel_racing_the_end_of_a_run_is_refused_as_a_late_one(srv, monkeypatch):
    finishing, gate, asked = threading.Event(), threading.Event(), threading.Event()
    finish, cancel = runs._Execution._finish_now, runs.RunService.cancel

    async def held_finish(self, status, error):
        if status == "ready":  # (the turn ended by itself: its end is about to be saved)
            finishing.set()
            await asyncio.to_thread(gate.wait, WAIT_S)
        return await finish(self, status, error)

    async def noted_cancel(self, run, *args, **kwargs):
        asked.set()
        return await cancel(self, run, *args, **kwargs)

    monkeypatch.setattr(runs._Execution, "_finish_now", held_finish)
    monkeypatch.setattr(runs.RunService, "cancel", noted_cancel)
    status, thread = call(srv, "POST", "/v1/threads", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, thread
    status, run = call(srv, "POST", f"/v1/threads/{thread['id']}/runs",
                       {"assistant_id": "jan", "model": "stories260K", "max_completion_tokens": 3})
    assert status == 200, run
    assert finishing.wait(WAIT_S)
    path = f"/v1/threads/{thread['id']}/runs/{run['id']}"
    answer: list = []
    canceller = threading.Thread(target=lambda: answer.append(call(srv, "POST", f"{path}/cancel", {})))
    canceller.start()
    try:
        assert asked.wait(WAIT_S)  # the cancel reached the run while its end is held
    finally:
        gate.set()
        canceller.join(WAIT_S)
    status, body = answer[0]
    assert status == 400 and body["error"]["code"] == "run_not_active", body
    status, ended = call(srv, "GET", path)
    assert status == 200 and ended["status"] in ("completed", "incomplete"), ended
    status, body = call(srv, "POST", f"{path}/cancel", {})  # and one a moment later says the same
    assert status == 400 and body["error"]["code"] == "run_not_active", body
