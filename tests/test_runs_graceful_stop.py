"""A graceful stop of jan (SIGTERM) leaves every active run as a crash would, at every stage: a run inside a tool
call comes back ``interrupted`` (no result saved for the call, no error reply; resume runs the call again), a run
answering ``submit_tool_outputs`` whose approved call was running waits in ``requires_action`` again, a run waiting
for approval still waits. The runs are settled before the extensions stop: a tool's failure when its MCP server
goes away is never saved as its result, and no model turn starts without a model. Across all of it the steps'
usage adds up to the run's."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from api_helpers import Client, ServerProcess, message_text, parse_sse, summed_usage
from mcp_helpers import forced_call, tool_thread
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)




async def _steps(api: Client, tid: str, run_id: str) -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps?order=asc"))["data"]


async def _messages(api: Client, tid: str) -> list[dict]:
    # all: the calling turns and tool results too (OpenAI's list leaves them to the run steps)
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&all=true"))["data"]


async def _until_file(path, what: str) -> None:
    for _ in range(2400):  # 120 s at most: a busy 2-core machine
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within 120 s: {what}")


def _steps_usage(steps: list[dict]) -> dict:
    prompt = sum(s["usage"]["prompt_tokens"] for s in steps)
    completion = sum(s["usage"]["completion_tokens"] for s in steps)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _counts(usage: dict) -> dict:
    return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def test_sigterm_inside_tool_calls_leaves_the_runs_as_a_crash_would(tmp_path, tool_model):
    from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

    data = tmp_path / "data"
    auto_root, asked_root = notes_folder(tmp_path / "auto"), notes_folder(tmp_path / "asked")
    write_mcp_config(data, {"notes": stdio_entry(auto_root), "other": stdio_entry(asked_root)})
    with ServerProcess(data, tool_model, n_ctx=2048) as proc:
        async with Client(proc.base_url) as api:
            # waiting for approval when jan stops
            wait_tid = await tool_thread(api, [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"]}])
            waiting = await run_to_end(api, f"/v1/threads/{wait_tid}/runs", forced_call("notes__list_notes"))
            assert waiting["status"] == "requires_action", waiting
            # inside an allowlisted call when jan stops
            auto_tid = await tool_thread(api, [{"type": "mcp", "server_label": "notes",
                                                 "allowed_tools": ["wait_for_go"], "require_approval": "never"}])
            inside = await api.ok("POST", f"/v1/threads/{auto_tid}/runs", forced_call("notes__wait_for_go", background=True))
            # inside a call the user approved (submit_tool_outputs) when jan stops
            asked_tid = await tool_thread(api, [{"type": "mcp", "server_label": "other", "allowed_tools": ["wait_for_go"]}])
            asked = await run_to_end(api, f"/v1/threads/{asked_tid}/runs", forced_call("other__wait_for_go"))
            assert asked["status"] == "requires_action", asked
            [asked_call] = asked["required_action"]["submit_tool_outputs"]["tool_calls"]
            async with aiohttp.ClientSession() as session:

                async def submit() -> tuple[int, list]:
                    # (streamed: its answer ends with the leg, which stops inside the approved call; awaited in a
                    # task of its own)
                    async with session.post(
                            f"{proc.base_url}/v1/threads/{asked_tid}/runs/{asked['id']}/submit_tool_outputs",
                            json={"tool_outputs": [{"tool_call_id": asked_call["id"], "approve": True}],
                                  "stream": True}) as resp:
                        return resp.status, [name for name, _ in parse_sse(await resp.text())]

                submitting = asyncio.ensure_future(submit())
                await _until_file(auto_root / "waiting", "the allowlisted call runs")
                await _until_file(asked_root / "waiting", "the approved call runs")
                assert not submitting.done()
                proc.terminate()
                status, told = await submitting
            proc.proc.wait(120)
    assert status == 200
    assert told[-2:] == ["error", "done"], told  # the submit's stream was told why it ended
    assert "thread.run.step.completed" not in told

    with ServerProcess(data, tool_model, n_ctx=2048) as proc:
        async with Client(proc.base_url) as api:
            # waiting for approval: still waits, as it did
            still = await api.ok("GET", f"/v1/threads/{wait_tid}/runs/{waiting['id']}")
            assert still["status"] == "requires_action" and still["required_action"] == waiting["required_action"]

            # inside the allowlisted call: interrupted, the calling turn as it was, no result, no error reply
            cut = await api.ok("GET", f"/v1/threads/{auto_tid}/runs/{inside['id']}")
            assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "interrupted"}, cut
            assert cut["last_error"] is None
            msgs = await _messages(api, auto_tid)
            assert [(m["role"], m["status"]) for m in msgs] == [("user", "completed"), ("assistant", "completed")], msgs
            assert msgs[1]["metadata"]["tool_calls"][0]["function"]["name"] == "notes__wait_for_go"
            # (the calling turn wrote nothing but its call: its tool_calls step alone)
            assert [(s["type"], s["status"]) for s in await _steps(api, auto_tid, inside["id"])] == [
                ("tool_calls", "cancelled")]
            (auto_root / "go").write_text("", encoding="utf-8")
            await api.ok("POST", f"/v1/threads/{auto_tid}/runs/{inside['id']}/resume", {})  # (background: at once)
            done = await _until_done(api, auto_tid, inside["id"])
            assert done["status"] in ("completed", "incomplete") and done["incomplete_details"] != {
                "reason": "interrupted"}, done
            msgs = await _messages(api, auto_tid)
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert message_text(msgs[2]) == "go" and msgs[2]["metadata"]["is_error"] is False  # the call ran again
            steps = await _steps(api, auto_tid, inside["id"])
            assert [(s["type"], s["status"]) for s in steps] == [
                ("tool_calls", "cancelled"), ("tool_calls", "completed"), ("message_creation", "completed")]
            # each turn once: the calling turn (counted before the stop) and the answer
            assert _counts(done["usage"]) == _counts(summed_usage([msgs[1]["metadata"]["usage"],
                                                                   msgs[3]["metadata"]["usage"]]))
            assert _steps_usage(steps) == _counts(done["usage"])

            # inside the approved call: waiting for the answer again (nothing of the leg was kept)
            again = await api.ok("GET", f"/v1/threads/{asked_tid}/runs/{asked['id']}")
            assert again["status"] == "requires_action" and again["required_action"] == asked["required_action"]
            assert [m["role"] for m in await _messages(api, asked_tid)] == ["user", "assistant"]
            (asked_root / "go").write_text("", encoding="utf-8")
            answered = await run_to_end(api, f"/v1/threads/{asked_tid}/runs/{asked['id']}/submit_tool_outputs",
                                        {"tool_outputs": [{"tool_call_id": asked_call["id"], "approve": True}]})
            assert answered["status"] in ("completed", "incomplete"), answered
            msgs = await _messages(api, asked_tid)
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert message_text(msgs[2]) == "go" and msgs[2]["metadata"]["approved_by"] == "user"
            assert _steps_usage(await _steps(api, asked_tid, asked["id"])) == _counts(answered["usage"])


async def _until_done(api: Client, tid: str, run_id: str) -> dict:
    for _ in range(2400):
        run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        if run["status"] not in ("queued", "in_progress"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("the resumed run did not end within 120 s")
