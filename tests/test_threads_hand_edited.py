"""A thread's ``messages.jsonl`` edited by hand (or by another tool) into shapes jan never writes, inside a message
whose own fields are of the right types: a text part whose ``value`` is no string, a stopped reply whose
``stop_reason``/``finish_reason`` is a list. Each failed with a 500 (a TypeError): every run started on the thread,
or every listing of its messages. The field is read as absent, and the thread reads and runs on."""

from __future__ import annotations

import asyncio
import json

import pytest
from api_helpers import Client, running

pytestmark = pytest.mark.timeout(300)

DAMAGES = {
    "text_value_a_number": {"content": [{"type": "text", "text": {"value": 5, "annotations": []}}]},
    "text_value_a_list": {"content": [{"type": "text", "text": {"value": ["a"], "annotations": []}}]},
    "reasoning_value_a_number": {"content": [{"type": "reasoning", "text": {"value": 5}},
                                             {"type": "text", "text": {"value": "there", "annotations": []}}]},
    "stop_reason_a_list": {"status": "stopped", "metadata": {"stop_reason": ["x"]}},
    "finish_reason_a_list": {"status": "stopped", "metadata": {"finish_reason": []}},
    "ready_finish_reason_an_object": {"status": "ready", "metadata": {"finish_reason": {"a": 1}}},
    # calls that are no list: every reader iterated them (a run's prompt, a conversation's items, jan threads show)
    "tool_calls_a_number": {"metadata": {"tool_calls": 5}},
    "tool_calls_true": {"metadata": {"tool_calls": True}},
}


async def test_hand_edited_messages_leave_their_thread_readable_and_runnable(tmp_path, stories_path):
    data = tmp_path / "data"
    with running(data, stories_path) as srv:
        async with Client(srv.base_url) as api:
            assistant = await api.ok("POST", "/v1/assistants", {"model": "stories260K"})
            for name, damage in DAMAGES.items():
                thread = await api.ok("POST", "/v1/threads", {"messages": [
                    {"role": "user", "content": "hi"}, {"role": "assistant", "content": "there"}]})
                path = data / "threads" / thread["id"] / "messages.jsonl"
                first, second = path.read_bytes().splitlines()
                edited = {**json.loads(second), **damage}
                path.write_bytes(first + b"\n" + json.dumps(edited).encode() + b"\n")

                listed = await api.ok("GET", f"/v1/threads/{thread['id']}/messages?order=asc")
                assert [m["id"] for m in listed["data"]] == [json.loads(first)["id"], edited["id"]], name
                await api.ok("GET", f"/v1/threads/{thread['id']}/messages/{edited['id']}")
                run = await api.ok("POST", f"/v1/threads/{thread['id']}/runs",
                                   {"assistant_id": assistant["id"], "max_completion_tokens": 2})
                assert run["status"] in ("queued", "in_progress"), (name, run)
                deadline = asyncio.get_running_loop().time() + 120  # (a bound: its reply is two tokens)
                while run["status"] in ("queued", "in_progress"):
                    assert asyncio.get_running_loop().time() < deadline, (name, run)
                    await asyncio.sleep(0.02)
                    run = await api.ok("GET", f"/v1/threads/{thread['id']}/runs/{run['id']}")
                assert run["status"] in ("completed", "incomplete"), (name, run)



@pytest.mark.parametrize("calls", [5, True])
def test_jan_threads_show_reads_calls_that_are_no_list_as_none(calls):
    from jan.cli.threads import _shown

    shown = _shown({"role": "assistant", "content": [{"type": "text", "text": {"value": "there"}}],
                    "metadata": {"tool_calls": calls}})
    assert shown.text == "there" and shown.calls == []
