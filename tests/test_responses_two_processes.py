"""Two ``jan`` servers on one data folder: a stored response one of them is generating is no response "the server
stopped while generating" to the other.

The second server read the first one's unfinished record as left behind by a server that stopped: ``failed``
("The server stopped while generating this response."), a cancel refused as "it is failed", a delete that the
first server's save then undid, and a ``previous_response_id`` naming it taken as if it had ended. The server
generating a stored response now holds its lease (an OS lock that its end drops, however it ends): the other reads
the record as it stands and refuses to cancel, delete or continue it, saying why — until that server is gone.
"""

from __future__ import annotations

import os
import signal

import pytest
from api_helpers import Client, ServerProcess

#: The first server's one slot, taken by a long answer while the test runs: the response waits behind it.
BLOCKER = {"model": "stories260K", "messages": [{"role": "user", "content": "Once upon a time"}], "stream": True,
           "max_tokens": 8000, "ignore_eos": True}

pytestmark = pytest.mark.timeout(600)


async def test_a_response_another_server_generates_reads_as_running_until_that_server_is_gone(tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as one, ServerProcess(data, stories_path) as two:
        async with Client(one.base_url) as api_one, Client(two.base_url) as api_two:
            blocker = await api_one.session.post(one.base_url + "/v1/chat/completions", json=BLOCKER)
            assert blocker.status == 200 and await blocker.content.readline()  # (generating: the slot is taken)
            made = await api_one.ok("POST", "/v1/responses", {"model": "stories260K", "input": "Once upon a time",
                                                              "background": True, "max_output_tokens": 4000})
            rid = made["id"]  # (on disk before the answer; queued behind the blocker)
            os.kill(one.proc.pid, signal.SIGSTOP)  # alive, its lease held, generating nothing meanwhile
            try:
                seen = await api_two.ok("GET", f"/v1/responses/{rid}")
                # as the first server left it on disk (before: "failed", the server stopped)
                assert seen["status"] in ("queued", "in_progress") and seen["error"] is None, seen
                # (a stream of it: before, "its events are not kept", as if lost; that server has them)
                for method, path, body in (("POST", f"/v1/responses/{rid}/cancel", {}),
                                           ("GET", f"/v1/responses/{rid}?stream=true", None),
                                           ("DELETE", f"/v1/responses/{rid}", None)):
                    status, answer = await api_two.call(method, path, body)
                    assert status == 400 and "another jan process" in answer["error"]["message"], (path, answer)
                status, answer = await api_two.post("/v1/responses", {"model": "stories260K", "input": "Then",
                                                                      "previous_response_id": rid,
                                                                      "max_output_tokens": 4})
                assert status == 400 and answer["error"]["code"] == "previous_response_in_progress", answer
            finally:
                one.kill()  # (SIGKILL: no stop of its own; its lease goes with it)
                blocker.close()
            gone = await api_two.ok("GET", f"/v1/responses/{rid}")
            assert gone["status"] == "failed" and "stopped" in gone["error"]["message"], gone
            await api_two.ok("DELETE", f"/v1/responses/{rid}")
