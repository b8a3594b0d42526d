"""Runs that call tools: a real MCP server (the SDK's, stdio and streamable HTTP), a tiny model with Qwen3's
real tool-calling template (calls forced with ``tool_choice``), approval, deny, timeout, crash, event replay."""

from __future__ import annotations

import asyncio

import pytest
from api_helpers import Client, message_text, parse_sse, running, summed_usage
from run_helpers import run_to_end, wait_for_run

from jan.services.tool_loop import chat_messages
from mcp_helpers import http_notes_server, notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(600)

LIST = {"type": "function", "function": {"name": "notes__list_notes"}}


@pytest.fixture
def server(tmp_path, tool_model):
    root = notes_folder(tmp_path)
    write_mcp_config(tmp_path / "data", {"notes": stdio_entry(root, tmp_path / "starts.txt")})
    with running(tmp_path / "data", tool_model, n_ctx=2048) as srv:
        yield srv


async def make_thread(api: Client, tools: list, policy: dict | None = None) -> str:
    assistant = await api.ok("POST", "/v1/assistants", {"name": "Notes", "model": "qwen3-tools", "tools": tools,
                                                        **({"metadata": {}} if policy is None else {})})
    if policy is not None:  # the thread's policy overrides the assistant's
        entry = {"assistant_id": assistant["id"], "tool_policy": policy}
    else:
        entry = {"assistant_id": assistant["id"]}
    thread = await api.ok("POST", "/v1/threads", {"assistants": [entry],
                                                  "messages": [{"role": "user", "content": "What notes do I have?"}]})
    return thread["id"]


async def messages_of(api: Client, tid: str) -> list[dict]:
    # all: the calling turns and tool results too, which OpenAI's list leaves to the run steps
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100&all=true"))["data"]


def run_body(**extra) -> dict:
    return {"tool_choice": LIST, "max_tokens": 60, "temperature": 0, "parallel_tool_calls": False, **extra}


async def test_auto_approved_call_runs_and_the_model_answers(server):
    async with Client(server.base_url) as api:
        assert (await api.ok("GET", "/v1/mcp/servers/notes"))["state"] == "running"  # (a listing waits for none)
        listed = {t["function"]["name"]: t["source"] for t in (await api.ok("GET", "/v1/tools"))["data"]}
        assert listed["notes__list_notes"] == "mcp:notes" and listed["current_time"] == "tools"
        tid = await make_thread(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"],
                                       "require_approval": "never"}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] in ("completed", "incomplete"), run
        assert [t["function"]["name"] for t in run["tools"]] == ["notes__list_notes"]
        msgs = await messages_of(api, tid)
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        call = msgs[1]["metadata"]["tool_calls"][0]
        assert call["function"]["name"] == "notes__list_notes" and msgs[1]["status"] == "completed"
        assert message_text(msgs[1]) == ""  # the forced call's markup is never the turn's text
        result = msgs[2]
        assert message_text(result) == "shopping.txt\ntodo.txt"
        meta = result["metadata"]
        assert meta["tool_call_id"] == call["id"] and meta["approved_by"] == "policy" and meta["is_error"] is False
        assert meta["run_id"] == run["id"] and meta["duration_ms"] >= 0 and "arguments" in meta
        assert msgs[3]["id"] == run["message_id"] and msgs[3]["status"] == run["status"]  # (cut: incomplete)
        # the second turn saw the result: the thread renders with the tool message in place
        rendered = chat_messages(msgs[:3], "")
        assert rendered[-1] == {"role": "tool", "tool_call_id": call["id"], "name": "notes__list_notes",
                                "content": "shopping.txt\ntodo.txt"}


async def test_an_assistants_own_tool_policy_approves_its_calls(server):
    """docs/tools.md: a ``tool_policy`` may be the assistant's (then a thread entry's, then a run's); runs read an
    assistant's, but ``POST /v1/assistants`` refused the field ("Unrecognized request argument supplied")."""
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {
            "model": "qwen3-tools", "tools": [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}],
            "tool_policy": {"auto_approve": ["notes__list_*"]}})
        assert assistant["tool_policy"] == {"auto_approve": ["notes__list_*"]}
        tid = (await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                    "messages": [{"role": "user", "content": "What notes?"}]}))["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] in ("completed", "incomplete"), run  # (not requires_action: the policy approved it)
        result = (await messages_of(api, tid))[2]
        assert result["role"] == "tool" and result["metadata"]["approved_by"] == "policy", result


async def test_streamable_http_server_in_a_run(tmp_path, tool_model):
    root = notes_folder(tmp_path)
    with http_notes_server(root, tmp_path / "http.log") as url:
        write_mcp_config(tmp_path / "data", {"web": {"url": url}})
        with running(tmp_path / "data", tool_model, n_ctx=2048) as srv:
            async with Client(srv.base_url) as api:
                servers = await api.ok("GET", "/v1/mcp/servers")
                assert [s["name"] for s in servers["data"]] == ["web"] and servers["data"][0]["transport"] == "http"
                tid = await make_thread(api, [{"type": "function", "function": {"name": "web__list_notes"}}],
                                        policy={"auto_approve": ["web__*"]})
                run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(
                    tool_choice={"type": "function", "function": {"name": "web__list_notes"}}))
                assert run["status"] in ("completed", "incomplete"), run
                tool = [m for m in await messages_of(api, tid) if m["role"] == "tool"]
                assert message_text(tool[0]) == "shopping.txt\ntodo.txt"


async def test_requires_action_then_approve_streams_the_answer(server):
    async with Client(server.base_url) as api:
        tid = await make_thread(api, [{"type": "mcp", "server_label": "notes"}])  # approval: always (the default)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] == "requires_action"
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert run["required_action"]["type"] == "submit_tool_outputs" and call["function"]["name"] == "notes__list_notes"
        calling = await messages_of(api, tid)
        assert [m["role"] for m in calling] == ["user", "assistant"]  # nothing ran
        assert message_text(calling[1]) == "" and calling[1]["metadata"]["tool_calls"][0]["id"] == call["id"]
        fetched = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert fetched["status"] == "requires_action" and fetched["required_action"] == run["required_action"]
        # a wrong id is refused; the run still waits
        got, err = await api.post(f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                  {"tool_outputs": [{"tool_call_id": "call_nope", "approve": True}]})
        assert got == 400 and err["error"]["code"] == "invalid_tool_call_id"
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                    json={"tool_outputs": [{"tool_call_id": call["id"], "approve": True}],
                                          "stream": True}) as resp:
            assert resp.status == 200
            events = parse_sse(await resp.text())
        names = [e for e, _ in events]
        assert names[0] == "thread.run.in_progress" and "thread.message.delta" in names
        assert names[-2] in ("thread.run.completed", "thread.run.incomplete") and names[-1] == "done"
        msgs = await messages_of(api, tid)
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        assert msgs[2]["metadata"]["approved_by"] == "user" and message_text(msgs[2]) == "shopping.txt\ntodo.txt"
        got, err = await api.post(f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                  {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert got == 400 and err["error"]["code"] == "run_not_waiting"


async def test_deny_tells_the_model(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = await make_thread(api, [{"type": "mcp", "server_label": "notes"}])
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "approve": False, "reason": "private"}]})
        assert done["status"] in ("completed", "incomplete")
        msgs = await messages_of(api, tid)
        denied = msgs[2]
        assert denied["role"] == "tool" and denied["metadata"]["is_error"] and denied["metadata"]["approved_by"] == "user"
        assert message_text(denied) == "The user denied this tool call. Reason: private"
        rendered = chat_messages(msgs[:3], "")
        assert rendered[-1]["role"] == "tool" and "denied" in rendered[-1]["content"]


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {}}}}


async def weather_call(api) -> tuple[str, dict, dict]:
    """A thread whose run called the client's get_weather (forced) and waits for its output: (thread id, run, call)."""
    tid = await make_thread(api, [WEATHER])
    run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert run["status"] == "requires_action", run
    [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    return tid, run, call


async def test_a_run_waiting_for_tool_outputs_locks_its_threads_messages(server):
    """``requires_action`` holds the thread as ``in_progress`` does: no message of it is added, modified or deleted
    until the calls are answered (or the run cancelled); then they may be."""
    async with Client(server.base_url) as api:
        tid, run, call = await weather_call(api)
        question = (await messages_of(api, tid))[0]["id"]
        base = f"/v1/threads/{tid}/messages/{question}"
        for method, body in [("POST", {"metadata": {"tag": "q"}}), ("DELETE", None)]:
            status, err = await api.call(method, base, body)
            assert status == 400 and err["error"]["code"] == "run_active", (method, err)
            assert "answer its tool calls" in err["error"]["message"] and run["id"] in err["error"]["message"], err
        await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                         {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]})
        assert (await api.ok("POST", base, {"metadata": {"tag": "q"}}))["metadata"] == {"tag": "q"}


async def test_client_tool_output(server):
    async with Client(server.base_url) as api:
        tid, run, call = await weather_call(api)
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]})
        assert done["status"] in ("completed", "incomplete")
        tool = [m for m in await messages_of(api, tid) if m["role"] == "tool"][0]
        assert message_text(tool) == "sunny" and tool["metadata"]["approved_by"] == "client"


async def test_tool_timeout_and_server_crash_mid_call(server, tmp_path):
    async with Client(server.base_url) as api:
        for name, expected in (("hang", "did not answer within 2 seconds"), ("crash", "stopped while running crash")):
            tid = await make_thread(api, [{"type": "mcp", "server_label": "notes", "require_approval": "never"}],
                                    policy={"timeout": 2})
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(
                tool_choice={"type": "function", "function": {"name": f"notes__{name}"}}))
            assert run["status"] in ("completed", "incomplete"), run
            tool = [m for m in await messages_of(api, tid) if m["role"] == "tool"][0]
            assert tool["metadata"]["is_error"] and expected in message_text(tool), message_text(tool)
        status = await api.ok("GET", "/v1/mcp/servers/notes")  # restarted on next use
        assert status["state"] == "running" and status["restarts"] >= 1
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] in ("completed", "incomplete")


async def test_reattach_replays_a_background_run(server):
    async with Client(server.base_url) as api:
        tid = await make_thread(api, [])
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs",
                                    json={"max_tokens": 200, "background": True, "stream": True,
                                          "temperature": 0}) as resp:
            seen = []
            async for line in resp.content:
                text = line.decode()
                if text.startswith("id: "):
                    seen.append(int(text[4:]))
                if text.startswith("event: thread.message.delta"):
                    break  # the client goes away mid-run
        run_id = None
        async with api.session.get(f"{server.base_url}/v1/threads/{tid}/runs?limit=1") as _:
            pass
        msgs = await messages_of(api, tid)
        run_id = msgs[-1]["metadata"]["run_id"]
        last = seen[-1]
        async with api.session.get(f"{server.base_url}/v1/threads/{tid}/runs/{run_id}/events?after={last}") as resp:
            body = await resp.text()
        ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
        assert ids[0] == last + 1 and ids == list(range(last + 1, last + 1 + len(ids)))
        events = parse_sse(body)
        assert events[-2][0] in ("thread.run.completed", "thread.run.incomplete") and events[-1][0] == "done"
        final = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        assert final["status"] in ("completed", "incomplete")  # not stopped by the disconnect
        # a finished run replays from any point
        async with api.session.get(f"{server.base_url}/v1/threads/{tid}/runs/{run_id}/events?after=-1") as resp:
            replay = parse_sse(await resp.text())
        assert replay[0][0] == "thread.run.created" and [e for e, _ in replay[-len(events):]] == [e for e, _ in events]
        text = "".join(d["delta"]["content"][0]["text"]["value"] for e, d in replay if e == "thread.message.delta")
        assert text == message_text(final["message"])


async def test_a_hung_tool_stalls_nothing_else(server):
    async with Client(server.base_url) as api:
        tid = await make_thread(api, [{"type": "mcp", "server_label": "notes", "require_approval": "never"}],
                                policy={"timeout": 120})
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", run_body(
            background=True, tool_choice={"type": "function", "function": {"name": "notes__hang"}}))
        assert run["status"] in ("queued", "in_progress")  # background: answered at once
        # while the tool hangs, the server answers other requests and other runs
        servers = await api.ok("GET", "/v1/mcp/servers")
        assert servers["data"][0]["name"] == "notes"
        other = await make_thread(api, [])
        answered = await run_to_end(api, f"/v1/threads/{other}/runs", {"max_tokens": 4})
        assert answered["status"] in ("completed", "incomplete")
        waiting = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert waiting["status"] == "in_progress"
        cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        assert cancelled["status"] == "cancelled"


async def test_a_call_cut_off_by_max_tokens_is_not_run(server):
    """The token limit inside a call's arguments ends the run ``incomplete``: a half-written call is neither run
    nor put to the user, and none of its markup becomes text."""
    async with Client(server.base_url) as api:
        for tools in ([{"type": "mcp", "server_label": "notes", "require_approval": "never"}],  # would run at once
                      [{"type": "mcp", "server_label": "notes"}]):                              # would ask
            tid = await make_thread(api, tools)
            # 30 tokens: the call's name is written, its string argument is not finished
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(
                max_tokens=30, tool_choice={"type": "function", "function": {"name": "notes__read_note"}}))
            assert run["status"] == "incomplete" and run["required_action"] is None, run
            msgs = await messages_of(api, tid)
            assert [m["role"] for m in msgs] == ["user", "assistant"]
            assert message_text(msgs[1]) == "" and msgs[1]["metadata"]["finish_reason"] == "length"


# -- one run at a time per thread (OpenAI: "Thread ... already has an active run ...") ---------------------------
ASK = [{"type": "mcp", "server_label": "notes"}]  # approval: always (the default): the run waits in requires_action


def assert_held(answer: tuple[int, dict], tid: str, run_id: str) -> str:
    """The refusal, in OpenAI's error shape, naming the thread and the run that holds it; returns its message."""
    got, err = answer
    assert got == 400, err
    error = err["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "run_active" and error["param"] == "thread_id"
    assert tid in error["message"] and run_id in error["message"], error
    return error["message"]


async def test_a_waiting_run_holds_its_thread_until_it_is_answered_or_cancelled(server):
    async with Client(server.base_url) as api:
        tid = await make_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] == "requires_action", run
        before = await messages_of(api, tid)
        message = assert_held(await api.post(f"/v1/threads/{tid}/runs", run_body()), tid, run["id"])
        assert message.startswith(f"Thread {tid} already has an active run {run['id']}"), message
        # refused before anything is written: not even a run's additional messages
        assert_held(await api.post(f"/v1/threads/{tid}/runs", run_body(
            additional_messages=[{"role": "user", "content": "And the other notes?"}])), tid, run["id"])
        message = assert_held(await api.post(f"/v1/threads/{tid}/messages", {"role": "user", "content": "Hello?"}),
                              tid, run["id"])
        assert message.startswith(f"Can't add messages to {tid} while a run {run['id']} is active"), message
        assert await messages_of(api, tid) == before
        # another thread is not held
        other = await make_thread(api, ASK)
        assert (await run_to_end(api, f"/v1/threads/{other}/runs", run_body()))["status"] == "requires_action"

        # answered, the run goes on to its end: then the thread takes a message and a run again
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert done["status"] in ("completed", "incomplete"), done
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Read me the first one."})
        again = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert again["status"] == "requires_action", again
        assert_held(await api.post(f"/v1/threads/{tid}/runs", run_body()), tid, again["id"])
        # cancelled, likewise
        assert (await api.ok("POST", f"/v1/threads/{tid}/runs/{again['id']}/cancel"))["status"] == "cancelled"
        third = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(tool_choice="none"))
        assert third["status"] in ("completed", "incomplete"), third


async def test_a_run_in_progress_holds_its_thread(server, tmp_path):
    root = tmp_path / "notes"  # the server fixture's notes folder: wait_for_go answers once "go" is there
    async with Client(server.base_url) as api:
        tid = await make_thread(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["wait_for_go"],
                                       "require_approval": "never"}])
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", run_body(
            background=True, tool_choice={"type": "function", "function": {"name": "notes__wait_for_go"}}))
        # inside the tool call (an event, not a clock): the run is in progress until "go" is written
        deadline = asyncio.get_running_loop().time() + 120
        while not (root / "waiting").exists():
            assert asyncio.get_running_loop().time() < deadline, "the tool was never called"
            await asyncio.sleep(0.05)
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["status"] == "in_progress"
        assert_held(await api.post(f"/v1/threads/{tid}/runs", run_body()), tid, run["id"])
        assert_held(await api.post(f"/v1/threads/{tid}/messages", {"role": "user", "content": "Still there?"}),
                    tid, run["id"])
        (root / "go").write_text("", encoding="utf-8")
        deadline = asyncio.get_running_loop().time() + 120
        while (status := (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["status"]) == "in_progress":
            assert asyncio.get_running_loop().time() < deadline, "the run never ended"
            await asyncio.sleep(0.05)
        assert status in ("completed", "incomplete"), status
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Thanks."})
        after = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body(tool_choice="none"))
        assert after["status"] in ("completed", "incomplete"), after


async def test_runs_and_answers_sent_at_once_yield_one_run(server):
    """Several POSTs at once on one thread: the check and the claim are one step, so exactly one run starts (the
    others are refused, naming it) and one submit of its tool outputs goes on (the other finds it claimed)."""
    async with Client(server.base_url) as api:
        tid = await make_thread(api, ASK)
        answers = await asyncio.gather(*(api.post(f"/v1/threads/{tid}/runs", run_body()) for _ in range(4)))
        started = [body for got, body in answers if got == 200]
        assert len(started) == 1, answers
        for answer in answers:
            if answer[0] != 200:
                assert_held(answer, tid, started[0]["id"])
        run = await wait_for_run(api, tid, started[0]["id"])
        assert run["status"] == "requires_action", run
        assert [m["role"] for m in await messages_of(api, tid)] == ["user", "assistant"]  # one reply

        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        submit = f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs"
        answers = await asyncio.gather(*(api.post(submit, {"tool_outputs": [
            {"tool_call_id": call["id"], "approve": True}]}) for _ in range(2)))
        assert sorted(got for got, _ in answers) == [200, 400], answers
        refused = next(body for got, body in answers if got == 400)
        assert refused["error"]["code"] == "run_not_waiting"
        assert (await wait_for_run(api, tid, run["id"]))["status"] in ("completed", "incomplete")
        assert [m["role"] for m in await messages_of(api, tid)] == ["user", "assistant", "tool", "assistant"]


async def test_an_interrupted_run_does_not_hold_its_thread_and_resumes_only_when_it_is_free(server, tmp_path):
    """``interrupted`` (cut off by a stop of jan) is not a holding status: a crash never locks a conversation.
    Resuming such a run starts it again, so it is refused while another run holds the thread."""
    from jan.services.run_records import save_record

    async with Client(server.base_url) as api:
        tid = await make_thread(api, ASK)
        cut = "run_cutoffbyastop"  # as jan's start-up leaves a run stopped before it wrote its reply
        save_record(tmp_path / "data", {
            "id": cut, "object": "thread.run", "thread_id": tid, "assistant_id": "jan", "model": "qwen3-tools",
            "instructions": "", "parameters": {"max_tokens": 20, "temperature": 0}, "metadata": {},
            "status": "interrupted", "step": 0, "pending": []})
        waiting = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert waiting["status"] == "requires_action", waiting
        assert_held(await api.post(f"/v1/threads/{tid}/runs/{cut}/resume", {}), tid, waiting["id"])
        untouched = await api.ok("GET", f"/v1/threads/{tid}/runs/{cut}")  # interrupted, on the wire incomplete
        assert untouched["status"] == "incomplete" and untouched["incomplete_details"] == {"reason": "interrupted"}
        await api.ok("POST", f"/v1/threads/{tid}/runs/{waiting['id']}/cancel")
        resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{cut}/resume", {})
        assert resumed["status"] in ("completed", "incomplete"), resumed
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Thanks."})


# -- usage: the whole run's, as OpenAI's ("over the course of the run") ---------------------------------------------
async def turn_usages(api: Client, tid: str) -> list[dict]:
    """Each model turn's own usage: its assistant message's ``metadata.usage`` (the calling turns' too)."""
    turns = [m["metadata"]["usage"] for m in await messages_of(api, tid) if m["role"] == "assistant"]
    assert all(t["prompt_tokens"] > 0 and t["total_tokens"] == t["prompt_tokens"] + t["completion_tokens"]
               for t in turns), turns
    return turns


async def test_a_runs_usage_is_the_sum_of_its_model_turns(server):
    """A tool loop's two turns (the call, then the answer after its result): the run's usage adds them up, streamed
    or not, and read back; each reply message keeps its own turn's, and the tool_calls step the calling turn's."""
    auto = [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"], "require_approval": "never"}]
    async with Client(server.base_url) as api:
        tid = await make_thread(api, auto)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", run_body())
        assert run["status"] in ("completed", "incomplete") and run["step"] == 1, run
        turns = await turn_usages(api, tid)
        assert len(turns) == 2 and turns[0]["prompt_tokens"] < turns[1]["prompt_tokens"]  # the answer saw the call
        assert run["usage"] == summed_usage(turns) and run["message"]["metadata"]["usage"] == turns[1]
        assert run["usage"]["prompt_tokens"] > turns[1]["prompt_tokens"]  # not the last turn's alone
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["usage"] == run["usage"]
        [listed] = (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"]
        assert listed["usage"] == run["usage"] and "prompt_tokens_used" not in listed

        tid = await make_thread(api, auto)
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs",
                                    json={**run_body(), "stream": True}) as resp:
            assert resp.status == 200
            events = parse_sse(await resp.text())
        turns = await turn_usages(api, tid)
        assert len(turns) == 2
        by_name = {}
        for name, data in events:
            if name.startswith("thread.run.step.") and data.get("type") == "message_creation":  # (a delta: none)
                name = name.replace("thread.run.step.", "message step ")
            by_name.setdefault(name, []).append(data)
        assert [s["usage"] for s in by_name["thread.run.step.created"]] == [None]  # null while in_progress
        assert [s["usage"] for s in by_name["thread.run.step.completed"]] == [turns[0]]
        # each turn counted once: the calling turn's in its tool_calls step, the answer's in its message's step (the
        # calling turn wrote no message: no step of its own, no message event)
        assert [s["usage"] for s in by_name["message step created"]] == [None]
        assert [s["usage"] for s in by_name["message step completed"]] == [turns[1]]
        told = by_name.get("thread.message.completed", []) + by_name.get("thread.message.incomplete", [])
        assert [m["metadata"]["usage"] for m in told] == turns[1:]
        name, final = events[-2]
        assert name in ("thread.run.completed", "thread.run.incomplete") and final["usage"] == summed_usage(turns)
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{final['id']}"))["usage"] == final["usage"]


async def test_usage_adds_up_over_submit_tool_outputs(server):
    """A run that waits for the client: its usage so far is the calling turn's; the leg after the output adds the
    answer's (streamed: ``thread.run.completed`` carries the sum)."""
    async with Client(server.base_url) as api:
        for stream in (False, True):
            tid, run, call = await weather_call(api)
            [calling] = await turn_usages(api, tid)
            assert run["usage"] == calling
            body = {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]}
            path = f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs"
            if stream:
                async with api.session.post(server.base_url + path, json={**body, "stream": True}) as resp:
                    assert resp.status == 200
                    events = parse_sse(await resp.text())
                name, done = events[-2]
                assert name in ("thread.run.completed", "thread.run.incomplete"), events
            else:
                done = await run_to_end(api, path, body)
            assert done["status"] in ("completed", "incomplete"), done
            turns = await turn_usages(api, tid)
            assert len(turns) == 2 and turns[0] == calling
            assert done["usage"] == summed_usage(turns)
            assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["usage"] == done["usage"]


def test_add_usage_sums_each_count_and_keeps_an_unknown_one_unknown():
    from jan.services.runs import add_usage

    first = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
             "prompt_tokens_details": {"cached_tokens": 0}}
    second = {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35,
              "prompt_tokens_details": {"cached_tokens": 9}}
    assert add_usage(None, first) == first and add_usage(first, None) == first
    assert add_usage(first, second) == {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47,
                                        "prompt_tokens_details": {"cached_tokens": 9}}
    # a reply cut off before the engine told its usage: re-counted, its prompt maybe unknown
    cut = {"prompt_tokens": None, "completion_tokens": 4, "total_tokens": None, "estimated": True}
    assert add_usage(None, cut) == cut
    assert add_usage(first, cut) == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16,
                                     "prompt_tokens_details": {"cached_tokens": 0}, "estimated": True}


async def test_a_cancel_keeps_the_outputs_a_submit_was_answered_with(server, monkeypatch):
    """``submit_tool_outputs`` answered 200: the client's outputs are the run's (OpenAI's step holds them from then
    on). A cancel landing while the leg is still taking them in (held here in its call of the tools, as a slow
    approved call beside them would hold it) ends the run cancelled and keeps them: the step completed with the
    output, the result saved in the thread. They were dropped: the step ended cancelled, its output null."""
    import threading

    from jan.services import runs as runs_module

    real, entered = runs_module.run_calls, threading.Event()

    async def held_run_calls(*args, **kwargs):
        if kwargs.get("approved_by") == "user":  # the submit's leg taking its answers in: held until cancelled
            entered.set()
            await asyncio.Event().wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(runs_module, "run_calls", held_run_calls)
    async with Client(server.base_url) as api:
        tid, run, call = await weather_call(api)
        path = f"/v1/threads/{tid}/runs/{run['id']}"
        taken = await api.ok("POST", f"{path}/submit_tool_outputs",
                             {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]})
        assert taken["status"] == "in_progress"
        assert await asyncio.to_thread(entered.wait, 300), "the submit's leg never took its answers in"
        assert (await api.ok("POST", f"{path}/cancel"))["status"] == "cancelled"
        [step] = [s for s in (await api.ok("GET", f"{path}/steps"))["data"] if s["type"] == "tool_calls"]
        assert step["status"] == "completed", step
        assert step["step_details"]["tool_calls"][0]["function"]["output"] == "sunny"
        tool = [m for m in await messages_of(api, tid) if m["role"] == "tool"]
        assert [message_text(m) for m in tool] == ["sunny"]
        assert tool[0]["metadata"]["tool_call_id"] == call["id"] and tool[0]["metadata"]["approved_by"] == "client"
        assert (await api.ok("GET", path))["status"] == "cancelled"
