"""Runs against the things around them: a deleted thread takes its runs with it (cancelled at once, 404 after); a
deleted assistant leaves its runs their tools; an ``interrupted`` run ends the openai SDK's polling; tool entries
that name nothing are refused (or told, when their server is only off); each call is answered once; the steps'
usage adds up to the run's on every path."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from api_helpers import Client, message_text, running
from jan.server.keys import SERVICES
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def server(tmp_path, tool_model):
    write_mcp_config(tmp_path / "data", {"notes": stdio_entry(notes_folder(tmp_path))})
    with running(tmp_path / "data", tool_model, n_ctx=4096) as srv:
        yield srv


def forced(name: str, **extra) -> dict:
    return {"tool_choice": {"type": "function", "function": {"name": name}}, "max_tokens": 60, "temperature": 0,
            "parallel_tool_calls": False, **extra}


async def thread_with(api: Client, tools: list, **assistant) -> tuple[str, str]:
    created = await api.ok("POST", "/v1/assistants", {"name": "Notes", "model": "qwen3-tools", "tools": tools,
                                                      **assistant})
    thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": created["id"]}],
                                                  "messages": [{"role": "user", "content": "What notes do I have?"}]})
    return created["id"], thread["id"]


async def steps_usage(api: Client, tid: str, run_id: str) -> dict:
    steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps?order=asc"))["data"]
    assert all(s["usage"] is not None for s in steps), steps  # every step ended
    prompt = sum(s["usage"]["prompt_tokens"] for s in steps)
    completion = sum(s["usage"]["completion_tokens"] for s in steps)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def counts(usage: dict) -> dict:
    return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def test_deleting_a_thread_cancels_its_runs_and_they_are_gone(server):
    runs = server.app[SERVICES].runs
    async with Client(server.base_url) as api:
        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Tell a story"}]})
        tid = thread["id"]
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.base_url}/v1/threads/{tid}/runs", json={
                    "stream": True, "background": True, "max_tokens": 1500, "ignore_eos": True}) as resp:
                async for line in resp.content:
                    if line.startswith(b"event: thread.message.delta"):
                        break  # generating; the background run goes on without this client
        run = next(r for r in list(runs._runs.values()) if r.thread_id == tid)
        assert run.active
        await api.ok("DELETE", f"/v1/threads/{tid}")
        # the deletion returns once the run stopped: its slot is free, nothing generates into the gone thread
        assert run.finished.is_set() and run.status == "cancelled", run.status
        for path in (f"/v1/threads/{tid}/runs/{run.id}", f"/v1/threads/{tid}/runs/{run.id}/steps"):
            got, err = await api.call("GET", path)
            assert got == 404 and err["error"]["code"] == "not_found", (path, got, err)

        # a run waiting for approval goes with its thread too
        _aid, waiting_tid = await thread_with(api, [{"type": "mcp", "server_label": "notes"}])
        waiting = await run_to_end(api, f"/v1/threads/{waiting_tid}/runs", forced("notes__list_notes"))
        assert waiting["status"] == "requires_action"
        await api.ok("DELETE", f"/v1/threads/{waiting_tid}")
        [call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
        got, err = await api.post(f"/v1/threads/{waiting_tid}/runs/{waiting['id']}/submit_tool_outputs",
                                  {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert got == 404, (got, err)


async def test_a_deleted_assistants_run_keeps_its_tools(server):
    """As OpenAI's, a run outlives its assistant's deletion; it goes on with the tools (and their approval rules)
    it started with, not with none."""
    async with Client(server.base_url) as api:
        aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        assert run["status"] == "requires_action"
        await api.ok("DELETE", f"/v1/assistants/{aid}")
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert done["status"] in ("completed", "incomplete"), done
        tool = [m for m in (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&all=true"))["data"]
                if m["role"] == "tool"]
        assert message_text(tool[0]) == "shopping.txt\ntodo.txt" and not tool[0]["metadata"]["is_error"]
        assert [t["function"]["name"] for t in done["tools"]] == ["notes__list_notes"]


async def test_each_call_is_answered_once(server):
    async with Client(server.base_url) as api:
        _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes"}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        got, err = await api.post(f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs", {"tool_outputs": [
            {"tool_call_id": call["id"], "approve": True}, {"tool_call_id": call["id"], "approve": False}]})
        assert got == 400 and err["error"]["code"] == "duplicate_tool_call_id", err
        assert err["error"]["param"] == "tool_outputs[1].tool_call_id" and err["error"]["type"] == "invalid_request_error"
        still = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert still["status"] == "requires_action"  # nothing ran
        # (the calling turn is kept, listed with all=true: OpenAI's list leaves it to the run steps)
        listed = (await api.ok("GET", f"/v1/threads/{tid}/messages?all=true"))["data"]
        assert [m["role"] for m in listed] == ["assistant", "user"]


def test_an_interrupted_run_ends_the_sdk_polling_and_resumes(server, tmp_path):
    """``interrupted`` is no status the openai SDK knows: its polling helpers would wait for ever. On the wire such
    a run is ``incomplete`` for the reason ``interrupted`` (a terminal status to the SDK), and resume takes it."""
    from jan.services.run_records import save_record
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url + "/v1", api_key="-", max_retries=0, timeout=120)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What notes do I have?"}])
    cut = "run_cutbyastopofjan"  # as jan's start-up leaves a run a stop cut off before it wrote its reply
    save_record(tmp_path / "data", {
        "id": cut, "object": "thread.run", "thread_id": thread.id, "assistant_id": "jan", "model": "qwen3-tools",
        "instructions": "", "parameters": {"max_tokens": 20, "temperature": 0}, "metadata": {},
        "status": "interrupted", "step": 0, "pending": []})
    polled = client.beta.threads.runs.poll(cut, thread_id=thread.id, poll_interval_ms=50)
    assert polled.status == "incomplete" and polled.incomplete_details.reason == "interrupted"
    assert polled.completed_at is None and polled.usage is not None
    resumed = client.post(f"/threads/{thread.id}/runs/{cut}/resume", body={}, cast_to=object)
    assert resumed["status"] in ("queued", "in_progress"), resumed  # answered at once: the SDK polls it
    resumed = client.beta.threads.runs.poll(cut, thread_id=thread.id, poll_interval_ms=50)
    assert resumed.status in ("completed", "incomplete"), resumed
    assert resumed.incomplete_details is None or resumed.incomplete_details.reason != "interrupted", resumed


async def test_tool_entries_that_name_nothing_are_refused_or_told(server):
    async with Client(server.base_url) as api:
        for tools, param, code in (
                ([{"type": "mcp", "server_label": "nosuch"}], "tools[0].server_label", "unknown_mcp_server"),
                ([LIST, {"type": "function", "function": {"name": "broken__x"}}], "tools[1].function.name",
                 "unknown_mcp_server"),
                ([{"type": "function", "function": {"name": "no_such_tool"}}], "tools[0].function.name",
                 "unknown_tool"),
                ([{"type": "mcp", "server_label": "notes", "allowed_tools": ["nonexistent"]}],
                 "tools[0].allowed_tools", "unknown_tool")):
            aid, tid = await thread_with(api, tools)  # stored as given: the configuration may change later
            got, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 5})
            assert got == 400, (tools, got, err)
            error = err["error"]
            assert error["code"] == code and error["param"] == param and error["type"] == "invalid_request_error"
            assert aid in error["message"], error  # it says whose tools they are
            # a run's own tools are checked the same way
            got, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 5, "tools": tools})
            assert got == 400 and err["error"]["code"] == code and err["error"]["param"] == param, err
            assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []  # nothing was written
        # a server name can hold no '__' (it separates a server's name from its tool's)
        got, err = await api.post("/v1/assistants", {"model": "qwen3-tools",
                                                     "tools": [{"type": "mcp", "server_label": "a__b"}]})
        assert got == 400 and err["error"]["param"] == "tools[0].server_label", err

        # a server that is there but off: the run goes on without it, and says so
        _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}])
        waiting = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        assert waiting["status"] == "requires_action" and waiting["warnings"] == []
        await api.ok("POST", "/v1/mcp/servers/notes/disable")
        try:
            [call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
            done = await run_to_end(api, f"/v1/threads/{tid}/runs/{waiting['id']}/submit_tool_outputs",
                                    {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
            assert done["status"] in ("completed", "incomplete"), done
            assert any("'notes' is disabled" in w for w in done["warnings"]), done["warnings"]
            tool = next(m for m in (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&all=true"))["data"]
                        if m["role"] == "tool")
            assert tool["metadata"]["is_error"] and "MCP server 'notes' is disabled" in message_text(tool), tool
            _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes"}])
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 5})
            assert run["tools"] == [] and any("'notes' is disabled" in w for w in run["warnings"]), run
        finally:
            await api.ok("POST", "/v1/mcp/servers/notes/enable")


LIST = {"type": "function", "function": {"name": "notes__list_notes"}}


async def test_steps_usage_adds_up_to_the_runs_on_every_path(server):
    async with Client(server.base_url) as api:
        # allowlisted call, then the answer
        _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes", "require_approval": "never"}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        assert run["status"] in ("completed", "incomplete")
        assert await steps_usage(api, tid, run["id"]) == counts(run["usage"])
        # approval: the waiting run, then the answered one
        _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes"}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert await steps_usage(api, tid, run["id"]) == counts(done["usage"])
        # cancelled while waiting for approval
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced("notes__list_notes"))
        cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        assert cancelled["status"] == "cancelled"
        assert await steps_usage(api, tid, run["id"]) == counts(cancelled["usage"])
        # cancelled inside an allowlisted call: at once, with the call cut off
        _aid, tid = await thread_with(api, [{"type": "mcp", "server_label": "notes", "require_approval": "never"}])
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", forced("notes__hang", background=True,
                                                                     tool_policy={"timeout": 300}))
        for _ in range(2400):
            steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps"))["data"]
            if any(s["type"] == "tool_calls" for s in steps):
                break
            await asyncio.sleep(0.05)
        cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        assert cancelled["status"] == "cancelled"
        assert await steps_usage(api, tid, run["id"]) == counts(cancelled["usage"])
