"""Runs outlive the process: SIGKILL jan mid-run, start it again, the run is ``interrupted`` with its text, and
``resume`` completes it in the same message."""

from __future__ import annotations

import time

import aiohttp
import pytest
from api_helpers import Client, RunStream, ServerProcess, message_text, post_streamed_run

pytestmark = pytest.mark.timeout(600)

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"


async def test_sigkill_mid_run_then_resume(tmp_path, stories_path):
    data = tmp_path / "data"
    data.mkdir()
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]
        stream = RunStream()
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, tid, 3000)
            started = None
            async for raw in resp.content:
                line = stream.feed(raw)
                if line.startswith("data: {") and '"thread.message.delta"' in line:
                    started = started or time.monotonic()
                    if time.monotonic() - started > 1.6:  # past a few throttled saves
                        break
                assert "thread.run.completed" not in line, "the run ended before the kill; make it longer"
            proc.kill()
            resp.close()
    received, run_id, message_id = stream.text, stream.run_id, stream.message_id
    assert run_id and message_id and received

    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
            assert run["status"] == "interrupted" and run["message_id"] == message_id
            message = await api.ok("GET", f"/v1/threads/{tid}/messages/{message_id}")
            partial = message_text(message)
            assert message["status"] == "stopped" and message["metadata"]["stop_reason"] == "interrupted"
            assert partial and received.startswith(partial)  # the text saved before the kill is kept
            async with api.session.get(f"{proc.base_url}/v1/threads/{tid}/runs/{run_id}/events") as resp:
                assert resp.status == 200 and await resp.text() == ""  # nothing to replay, and no hang
            got, err = await api.post(f"/v1/threads/{tid}/runs/{run_id}/submit_tool_outputs",
                                      {"tool_outputs": []})
            assert got == 400
            resumed = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert resumed["status"] in ("completed", "incomplete") and resumed["message_id"] == message_id
            final = resumed["message"]
            assert final["status"] == "ready" and message_text(final).startswith(partial)
            assert len(message_text(final)) > len(partial)
            msgs = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc"))["data"]
            assert [m["role"] for m in msgs] == ["user", "assistant"]  # completed in place, no second reply
            got, err = await api.post(f"/v1/threads/{tid}/runs/{run_id}/resume", {})
            assert got == 400 and err["error"]["code"] == "run_not_interrupted"
