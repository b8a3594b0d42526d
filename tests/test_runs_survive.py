"""Runs outlive the process: SIGKILL jan mid-run, start it again, the run is ``interrupted`` with its text, and
``resume`` completes it in the same message."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from api_helpers import (Client, RunStream, ServerProcess, message_text, parse_sse, post_streamed_run, saved_text,
                         summed_usage)
from mcp_helpers import forced_call, tool_thread
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"


def interrupted(run: dict) -> bool:
    """Whether a run (as the API answers it) is one a stop of jan cut off: ``incomplete`` on OpenAI's wire (a
    status its SDK's polling helpers end on), for the reason ``interrupted`` (resumable)."""
    return run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "interrupted"} \
        and run["completed_at"] is None


async def story_thread(proc: ServerProcess) -> str:
    """A new thread holding one user message (the story's start) on ``proc``; returns its id."""
    async with Client(proc.base_url) as api:
        return (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]


async def test_sigkill_mid_run_then_resume(tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        tid = await story_thread(proc)
        stream = RunStream()
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, tid, 3000)
            deltas = 0
            async for raw in resp.content:
                line = stream.feed(raw)
                if line.startswith("data: {") and '"thread.message.delta"' in line:
                    deltas += 1
                    if deltas % 20 == 0 and saved_text(data, tid, stream.message_id):
                        break  # past a throttled save: some of the reply is on disk
                assert "thread.run.completed" not in line, "the run ended before the kill; make it longer"
            proc.kill()
            resp.close()
    received, run_id, message_id = stream.text, stream.run_id, stream.message_id
    assert run_id and message_id and received

    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
            assert interrupted(run) and run["message_id"] == message_id
            message = await api.ok("GET", f"/v1/threads/{tid}/messages/{message_id}")
            partial = message_text(message)
            assert message["status"] == "incomplete" and message["metadata"]["stop_reason"] == "interrupted"
            assert partial and received.startswith(partial)  # the text saved before the kill is kept
            async with api.session.get(f"{proc.base_url}/v1/threads/{tid}/runs/{run_id}/events") as resp:
                assert resp.status == 200 and await resp.text() == ""  # nothing to replay, and no hang
            got, err = await api.post(f"/v1/threads/{tid}/runs/{run_id}/submit_tool_outputs",
                                      {"tool_outputs": []})
            assert got == 400
            resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert resumed["status"] in ("completed", "incomplete") and resumed["message_id"] == message_id
            final = resumed["message"]
            assert final["status"] == resumed["status"] and message_text(final).startswith(partial)
            # one turn, both legs: the reply's usage (its earlier tokens counted again) is the run's
            assert resumed["usage"] == final["metadata"]["usage"] and resumed["usage"]["completion_tokens"] > 0
            assert len(message_text(final)) > len(partial)
            msgs = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc"))["data"]
            assert [m["role"] for m in msgs] == ["user", "assistant"]  # completed in place, no second reply
            # The message tells how the resumed reply ended, nothing of the interruption it went on from.
            ended = msgs[1]
            assert ended["metadata"].get("stop_reason") != "interrupted" and "interrupted_at" not in ended["metadata"]
            if ended["status"] == "completed":
                assert ended["incomplete_details"] is None and ended["incomplete_at"] is None
                assert ended["completed_at"] is not None
            else:  # the token limit cut the resumed leg too
                assert ended["incomplete_details"] == {"reason": "max_tokens"}
                assert ended["metadata"].get("finish_reason") == "length" and ended["incomplete_at"] is not None
            assert (ended["completed_at"] or ended["incomplete_at"]) >= message["incomplete_at"]
            got, err = await api.post(f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert got == 400 and err["error"]["code"] == "run_not_interrupted"


async def test_sigterm_mid_run_leaves_it_interrupted_and_its_stream_told(tmp_path, stories_path):
    """A stop of jan (SIGTERM) is no client going away: the streamed run and a background run queued behind it
    end ``interrupted`` (resumable, as after a crash), the stream ends with an ``error`` event saying why, and
    nothing is left cancelled or in progress."""
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        tid = await story_thread(proc)
        queued_tid = await story_thread(proc)
        stream = RunStream()
        events: list[str] = []
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, tid, 3000)
            queued = None
            async for raw in resp.content:
                line = stream.feed(raw)
                if line.startswith("event: "):
                    events.append(line[len("event: "):])
                if queued is None and line == "event: thread.message.delta":
                    # the streamed run holds the one slot now: this one waits behind it
                    async with Client(proc.base_url) as api:
                        queued = await api.ok("POST", f"/v1/threads/{queued_tid}/runs",
                                              {"background": True, "max_tokens": 50, "ignore_eos": True})
                if line == "event: thread.message.delta" and events.count("thread.message.delta") == 5:
                    proc.terminate()  # once: a second signal is a hurried stop
                assert "thread.run.completed" not in line, "the run ended before the stop; make it longer"
            resp.close()
        proc.proc.wait(120)
    assert events[-2:] == ["error", "done"], events[-6:]
    run_id, message_id = stream.run_id, stream.message_id

    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
            assert interrupted(run) and run["message_id"] == message_id, run
            assert all(step["status"] != "in_progress" for step in await _steps(api, tid, run_id))
            message = await api.ok("GET", f"/v1/threads/{tid}/messages/{message_id}")
            assert message["status"] == "incomplete" and message["metadata"]["stop_reason"] == "interrupted"
            assert stream.text.startswith(message_text(message))
            other = await api.ok("GET", f"/v1/threads/{queued_tid}/runs/{queued['id']}")
            assert interrupted(other), other
            resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert resumed["status"] in ("completed", "incomplete") and resumed["message_id"] == message_id
            # as after a crash, the reply's tokens are counted once, by the leg that finished it (its earlier ones
            # counted again), never also when the stop cut it: the run's usage is the reply's, and so is the steps'
            assert resumed["usage"] == resumed["message"]["metadata"]["usage"]
            steps = await _steps(api, tid, run_id)
            assert [s["status"] for s in steps] == ["cancelled", "completed"]
            assert sum(s["usage"]["completion_tokens"] for s in steps) == resumed["usage"]["completion_tokens"]
            assert sum(s["usage"]["prompt_tokens"] for s in steps) == resumed["usage"]["prompt_tokens"]


async def test_a_live_run_is_left_alone_by_another_process_until_its_runner_dies(tmp_path, stories_path):
    """Issue 10 item 20 with runs: two processes share a folder. The other one's start-up sweep and its reads
    never mark the live run (nor its pending reply); once the runner is SIGKILLed, the next reader sees the run
    ``interrupted`` and its reply ``stopped`` (``interrupted``), and ``resume`` completes it."""
    from jan.services.run_records import interrupt_if_orphaned, load_record, mark_interrupted
    from jan.store import DataFolder

    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        tid = await story_thread(proc)
        stream = RunStream()
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, tid, 4000)
            async for raw in resp.content:
                stream.feed(raw)
                if stream.message_id:
                    break
            run_id, message_id = stream.run_id, stream.message_id
            assert run_id and message_id
            # this test process is the other process: what its start-up and its reads do
            assert mark_interrupted(data) == []
            record = load_record(data, tid, run_id)
            assert interrupt_if_orphaned(data, record)["status"] == "in_progress"
            assert load_record(data, tid, run_id)["status"] == "in_progress"  # nothing written
            assert DataFolder(data, ensure_default_assistant=False).messages.get(tid, message_id)["status"] == "pending"
            proc.kill()
            resp.close()
    assert proc.proc.returncode == -9

    marked = mark_interrupted(data)  # the runner is dead: its lease is free
    assert [r["id"] for r in marked] == [run_id] and load_record(data, tid, run_id)["status"] == "interrupted"
    assert not list((data / ".live").glob(f"{run_id}.lock")), "the dead runner's lease file was cleaned up"
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
            assert interrupted(run)
            message = await api.ok("GET", f"/v1/threads/{tid}/messages/{message_id}")
            assert message["status"] == "incomplete" and message["metadata"]["stop_reason"] == "interrupted"
            resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert resumed["status"] in ("completed", "incomplete") and resumed["message"]["status"] == resumed["status"]
            assert not list((data / ".live").glob(f"{run_id}.lock")), "a finished run holds no lease"


async def _steps(api: Client, tid: str, run_id: str) -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps?order=asc"))["data"]




async def test_tool_runs_survive_sigkill(tmp_path, tool_model):
    """SIGKILL with one run waiting for approval and another inside a tool call: after the restart the first still
    waits (and approving it completes it); the second is ``interrupted``, and resume runs the call it was in,
    then the model answers — the calling turn is not written twice."""
    from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

    data = tmp_path / "data"
    root = notes_folder(tmp_path)
    write_mcp_config(data, {"notes": stdio_entry(root)})
    with ServerProcess(data, tool_model, n_ctx=2048) as proc:
        async with Client(proc.base_url) as api:
            ask_tid = await tool_thread(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}])
            asked = await run_to_end(api, f"/v1/threads/{ask_tid}/runs", forced_call("notes__list_notes"))
            assert asked["status"] == "requires_action", asked
            go_tid = await tool_thread(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["wait_for_go"],
                                               "require_approval": "never"}])
            going = await api.ok("POST", f"/v1/threads/{go_tid}/runs", forced_call("notes__wait_for_go", background=True))
            deadline = time.monotonic() + 120
            while not (root / "waiting").exists():  # the MCP server is inside the call
                assert time.monotonic() < deadline, "the tool was never called"
                await asyncio.sleep(0.05)
            # (the calling turns wrote nothing but their calls: a tool_calls step each, no message_creation step)
            waited = await _steps(api, ask_tid, asked["id"])
            assert [(s["type"], s["status"]) for s in waited] == [("tool_calls", "in_progress")]
            inside = await _steps(api, go_tid, going["id"])
            assert [(s["type"], s["status"]) for s in inside] == [("tool_calls", "in_progress")]
        proc.kill()

    with ServerProcess(data, tool_model, n_ctx=2048) as proc:
        async with Client(proc.base_url) as api:
            # still waiting, the earlier process's run holds its thread (found from its record, asked first thing)
            got, err = await api.post(f"/v1/threads/{ask_tid}/runs", forced_call("notes__list_notes"))
            assert got == 400 and err["error"]["code"] == "run_active" and asked["id"] in err["error"]["message"], err
            still = await api.ok("GET", f"/v1/threads/{ask_tid}/runs/{asked['id']}")
            assert still["status"] == "requires_action" and still["required_action"] == asked["required_action"]
            assert still["usage"] == asked["usage"] and asked["usage"]["prompt_tokens"] > 0  # the calling turn's
            cut = await api.ok("GET", f"/v1/threads/{go_tid}/runs/{going['id']}")
            assert interrupted(cut)
            # the steps as they were saved: the waiting run's still waits; the call jan stopped inside is over
            assert await _steps(api, ask_tid, asked["id"]) == waited
            [stopped] = await _steps(api, go_tid, going["id"])
            assert stopped["id"] == inside[0]["id"] and stopped["status"] == "cancelled"
            # the calling turn was counted in the record before its call ran (and jan stopped inside it)
            calling = (await api.ok("GET", f"/v1/threads/{go_tid}/messages?order=asc&all=true"))["data"][1]
            assert cut["usage"] == calling["metadata"]["usage"] and cut["usage"]["prompt_tokens"] > 0
            (root / "go").write_text("", encoding="utf-8")
            # a background run: resume answers at once; its stream goes to the end of the leg
            async with api.session.post(f"{proc.base_url}/v1/threads/{go_tid}/runs/{going['id']}/resume",
                                        json={"stream": True}) as resp:
                assert resp.status == 200
                names = [name for name, _ in parse_sse(await resp.text())]
            assert "thread.run.step.completed" in names, names  # the call it was in ran again
            steps = await _steps(api, go_tid, going["id"])
            assert [(s["type"], s["status"]) for s in steps] == [
                ("tool_calls", "cancelled"), ("tool_calls", "completed"), ("message_creation", "completed")]
            assert steps[0] == stopped and steps[1]["step_details"]["tool_calls"][0]["function"]["output"] == "go"
            assert names[-2] in ("thread.run.completed", "thread.run.incomplete"), names
            resumed = await api.ok("GET", f"/v1/threads/{go_tid}/runs/{going['id']}")
            assert resumed["status"] in ("completed", "incomplete"), resumed
            msgs = (await api.ok("GET", f"/v1/threads/{go_tid}/messages?order=asc&all=true"))["data"]
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            [call] = msgs[1]["metadata"]["tool_calls"]
            assert call["function"]["name"] == "notes__wait_for_go" and message_text(msgs[1]) == ""
            assert msgs[2]["metadata"]["tool_call_id"] == call["id"] and message_text(msgs[2]) == "go"
            assert msgs[2]["metadata"]["approved_by"] == "policy" and msgs[3]["id"] == resumed["message_id"]
            # the run's usage is both turns', across the restart: the one before it and the one after
            assert resumed["usage"] == summed_usage([msgs[1]["metadata"]["usage"], msgs[3]["metadata"]["usage"]])

            [pending] = still["required_action"]["submit_tool_outputs"]["tool_calls"]
            done = await run_to_end(api, f"/v1/threads/{ask_tid}/runs/{asked['id']}/submit_tool_outputs",
                                    {"tool_outputs": [{"tool_call_id": pending["id"], "approve": True}]})
            assert done["status"] in ("completed", "incomplete"), done
            steps = await _steps(api, ask_tid, asked["id"])  # the step it waited in, across the restart, completes
            assert [s["id"] for s in steps[:1]] == [s["id"] for s in waited] and steps[0]["status"] == "completed"
            assert steps[0]["step_details"]["tool_calls"][0]["function"]["output"] == "shopping.txt\ntodo.txt"
            msgs = (await api.ok("GET", f"/v1/threads/{ask_tid}/messages?order=asc&all=true"))["data"]
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert message_text(msgs[2]) == "shopping.txt\ntodo.txt" and msgs[2]["metadata"]["approved_by"] == "user"
            assert msgs[1]["metadata"]["usage"] == asked["usage"]
            assert done["usage"] == summed_usage([asked["usage"], msgs[3]["metadata"]["usage"]])
