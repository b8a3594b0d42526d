"""A run locks its thread, as OpenAI's does: no message of it can be added, modified or deleted while the run goes
on (400 ``run_active`` in OpenAI's error shape). The reply it is writing (``pending``) is named as such: the run saves
it whole as it generates, so an edit made meanwhile was answered 200 and then silently written over; and the
thread's other messages (the question the run answers) could be edited or deleted under it, though a message added
was refused. Every message is the user's to change once the run has ended."""

from __future__ import annotations

import pytest
from api_helpers import Client, running
from run_helpers import until_writing, wait_for_run

pytestmark = pytest.mark.timeout(600)

#: A run that goes on until it is cancelled (the test never waits for its end).
LONG_RUN = {"max_tokens": 6000, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("edits") / "data", stories_path, n_ctx=8192, n_parallel=1) as srv:
        yield srv


async def test_the_reply_a_run_is_writing_is_not_changed_under_it(server):
    async with Client(server.base_url) as api:
        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}],
                                                      "metadata": {}})
        tid = thread["id"]
        question = (await api.ok("GET", f"/v1/threads/{tid}/messages"))["data"][0]["id"]
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", LONG_RUN)
        await until_writing(api, tid, run["id"])
        reply = (await api.ok("GET", f"/v1/threads/{tid}/messages?run_id={run['id']}"))["data"][0]["id"]
        base = f"/v1/threads/{tid}/messages/{reply}"
        for method, body in [("POST", {"metadata": {"tag": "mine"}}), ("PATCH", {"content": "edited"}),
                             ("POST", {"status": "ready"}), ("DELETE", None)]:
            status, err = await api.call(method, base, body)
            assert status == 400 and err["error"]["code"] == "run_active", (method, body, err)
            assert run["id"] in err["error"]["message"] and err["error"]["param"] == "message_id", err
        # a run locks its thread: no other message of it changes meanwhile either (the question the run answers
        # was edited or deleted under it), as a message added is refused; in OpenAI's error shape
        other = f"/v1/threads/{tid}/messages/{question}"
        for method, path, body in [("POST", other, {"metadata": {"tag": "q"}}), ("PATCH", other, {"content": "x"}),
                                   ("DELETE", other, None), ("POST", f"/v1/threads/{tid}/messages",
                                                             {"role": "user", "content": "more"})]:
            status, err = await api.call(method, path, body)
            assert status == 400 and set(err) == {"error"}, (method, path, err)
            assert err["error"]["code"] == "run_active" and err["error"]["param"] == "thread_id", err
            assert err["error"]["type"] == "invalid_request_error" and run["id"] in err["error"]["message"], err
        assert (await api.ok("GET", other))["metadata"] == {}
        # another thread's messages are its own: a message named under the wrong thread is no message of it
        elsewhere = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "hi"}]})
        status, _ = await api.call("POST", f"/v1/threads/{elsewhere['id']}/messages/{question}", {"metadata": {}})
        assert status == 404
        # an unknown message is still a 404, not the run's refusal
        status, _ = await api.call("POST", f"/v1/threads/{tid}/messages/msg_nope", {"metadata": {}})
        assert status == 404

        cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        assert cancelled["status"] == "cancelled"
        await wait_for_run(api, tid, run["id"])
        # once the run has ended its thread's messages are the user's to change, and the change stays
        tagged = await api.ok("POST", f"/v1/threads/{tid}/messages/{question}", {"metadata": {"tag": "q"}})
        assert tagged["metadata"] == {"tag": "q"}
        tagged = await api.ok("POST", base, {"metadata": {"tag": "mine"}})
        assert tagged["metadata"]["tag"] == "mine"
        assert (await api.ok("GET", base))["metadata"]["tag"] == "mine"
        assert (await api.ok("GET", f"/v1/threads/{tid}/messages/{question}"))["metadata"] == {"tag": "q"}
        await api.ok("DELETE", base)
        assert [m["id"] for m in (await api.ok("GET", f"/v1/threads/{tid}/messages"))["data"]] == [question]


async def test_a_clients_metadata_keeps_jans_records_of_the_reply(server):
    """OpenAI's modify replaces a message's ``metadata``; the client's keys are replaced, but jan's records of the
    turn (its run, finish, usage...) stay: a reply tagged ``{"tag": "mine"}`` lost them, so an incomplete reply read
    ``completed`` and its usage was gone. A key the client gives is the client's."""
    async with Client(server.base_url) as api:
        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Once upon a time"}]})
        tid = thread["id"]
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", {"max_completion_tokens": 2, "temperature": 0})
        run = await wait_for_run(api, tid, run["id"])
        assert run["status"] == "incomplete", run
        [reply] = [m for m in (await api.ok("GET", f"/v1/threads/{tid}/messages"))["data"] if m["role"] == "assistant"]
        assert reply["status"] == "incomplete" and reply["incomplete_details"] == {"reason": "max_tokens"}, reply
        base = f"/v1/threads/{tid}/messages/{reply['id']}"
        for metadata in ({"tag": "mine"}, {}):
            changed = await api.ok("POST", base, {"metadata": metadata})
            for message in (changed, await api.ok("GET", base)):
                assert message["status"] == "incomplete", message
                assert message["incomplete_details"] == {"reason": "max_tokens"}, message
                assert message["metadata"]["usage"] == reply["metadata"]["usage"], message
                assert message["metadata"]["run_id"] == run["id"], message
                assert message["metadata"].get("tag") == metadata.get("tag"), message
        mine = await api.ok("POST", base, {"metadata": {"model": "mine"}})
        assert mine["metadata"]["model"] == "mine" and mine["metadata"]["run_id"] == run["id"], mine
