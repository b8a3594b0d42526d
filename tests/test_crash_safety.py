"""The data folder survives a SIGKILL in the middle of a run, and damaged files are set aside and reported."""

from __future__ import annotations

import json

import aiohttp
from api_helpers import (Client, RunStream, ServerProcess, message_text, parse_sse, post_streamed_run, read_jsonl,
                         running, saved_text)
from run_helpers import run_to_end

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"


async def _stream_then_kill(proc: ServerProcess, data, tid: str) -> tuple[str, str]:
    """Start a long streaming run, read deltas until the reply's file holds a throttled save of it
    (an event, not a clock), then SIGKILL."""
    received, message_id = "", None
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{proc.base_url}/v1/threads/{tid}/runs",
                                  json={"stream": True, "max_tokens": 4000, "ignore_eos": True})
        assert resp.status == 200
        deltas = 0
        async for line in resp.content:
            line = line.decode().strip()
            if line.startswith("data: {") and '"thread.message.delta"' in line:
                event = parse_sse(line)[0][1]
                message_id = event["id"]
                received += event["delta"]["content"][0]["text"]["value"]
                deltas += 1
                if deltas % 20 == 0 and saved_text(data, tid, message_id):
                    break  # some of the reply is on disk: the kill interrupts a reply with saved text
            assert "thread.run.completed" not in line and "thread.run.incomplete" not in line, \
                "the run ended before the kill; make it longer"
        proc.kill()  # SIGKILL: no cleanup, no final save
        resp.close()
    return message_id, received


async def test_sigkill_mid_run_keeps_folder_consistent(tmp_path, stories_path):
    data = tmp_path / "data"
    data.mkdir()
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            other = (await api.ok("POST", "/v1/threads", {"title": "Bystander", "messages": [
                {"role": "user", "content": "untouched"}]}))["id"]
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]
            first = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 12})
            assert first["message"]["status"] == first["status"]  # OpenAI's on the wire: whole, or cut by max_tokens
            await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Tell me more."})
        message_id, received = await _stream_then_kill(proc, data, tid)
    assert proc.proc.returncode == -9 and message_id and received

    # every file parses, strictly
    for path in data.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    for path in data.rglob("*.jsonl"):
        read_jsonl(path)
    lines = read_jsonl(data / "threads" / tid / "messages.jsonl")
    by_id = {m["id"]: m for m in lines}
    assert [m["role"] for m in lines] == ["user", "assistant", "user", "assistant"]
    assert by_id[first["message"]["id"]]["status"] == "ready"
    assert message_text(by_id[first["message"]["id"]]) == message_text(first["message"])
    in_flight = by_id[message_id]
    assert in_flight["status"] in ("pending", "stopped")  # at most incomplete, never lost or "ready"
    saved = message_text(in_flight)
    assert saved, "the throttled saves wrote the text generated before the kill"
    assert received.startswith(saved) or saved.startswith(received)  # both are prefixes of one reply

    # a new server on the same folder: everything lists, and the thread can go on (with the
    # interrupted reply in its history now, hence the same context size as before)
    with running(data, stories_path, n_ctx=8192) as srv:
        async with Client(srv.base_url) as api:
            threads = await api.ok("GET", "/v1/threads?limit=100")
            assert {t["id"] for t in threads["data"]} == {tid, other} and threads["problems"] == []
            listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc")
            assert [m["id"] for m in listed["data"]] == [m["id"] for m in lines]
            # no process writes the reply any more: it is finished as stopped, reason recorded (issue 10, item 20)
            interrupted = next(m for m in listed["data"] if m["id"] == message_id)
            assert interrupted["status"] == "incomplete" and interrupted["metadata"]["stop_reason"] == "interrupted"
            assert message_text(interrupted) == saved
            assert message_text((await api.ok("GET", f"/v1/threads/{other}/messages"))["data"][0]) == "untouched"
            again = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 6})
            assert again["message"]["status"] == again["status"]
            fixed = await api.ok("PATCH", f"/v1/threads/{tid}/messages/{message_id}", {"status": "stopped"})
            assert fixed["status"] == "incomplete" and message_text(fixed) == saved


async def test_a_live_reply_stays_pending_for_other_processes_until_its_writer_dies(tmp_path, stories_path):
    """Two processes share a folder: the one reading never marks the other's live reply; once the
    writer is SIGKILLed, the next read finishes the reply as ``stopped`` (``interrupted``), on disk too."""
    from jan.store import DataFolder

    data = tmp_path / "data"
    data.mkdir()
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, tid, 4000)
            stream = RunStream()
            async for line in resp.content:
                stream.feed(line)
                if stream.message_id:
                    break
            message_id = stream.message_id
            assert message_id
            # this test process is the "other process": it reads while the server writes
            other = DataFolder(data, ensure_default_assistant=False)
            live = other.messages.get(tid, message_id)
            assert live["status"] == "pending"
            assert "stop_reason" not in (live.get("metadata") or {})
            proc.kill()
            resp.close()
    assert proc.proc.returncode == -9
    after = DataFolder(data, ensure_default_assistant=False).messages.get(tid, message_id)
    assert after["status"] == "stopped" and after["metadata"]["stop_reason"] == "interrupted"
    on_disk = {m["id"]: m for m in read_jsonl(data / "threads" / tid / "messages.jsonl")}
    assert on_disk[message_id]["status"] == "stopped"
    assert not list((data / ".live").glob("*.lock")), "the dead process's lease file was cleaned up"


async def test_corrupt_thread_json_is_left_in_place_and_reported(tmp_path):
    data = tmp_path / "data"
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            ids = [(await api.ok("POST", "/v1/threads", {"title": f"t{i}", "messages": [
                {"role": "user", "content": f"hello {i}"}]}))["id"] for i in range(3)]
            broken = ids[1]
            (data / "threads" / broken / "thread.json").write_text('{"id": "' + broken + '", "title": "cut of')

            listed = await api.ok("GET", "/v1/threads")
            assert {t["id"] for t in listed["data"]} == {ids[0], ids[2]}
            [problem] = listed["problems"]
            assert problem["path"] == f"threads/{broken}/thread.json" and "invalid JSON" in problem["error"]
            assert problem["moved_to"] is None and "left in place" in problem["error"]
            assert (data / "threads" / broken / "thread.json").read_text().endswith("cut of")  # (a read moves nothing)
            status, err = await api.get(f"/v1/threads/{broken}")
            assert status == 404
            # the problem stays reported, the rest keeps working
            assert (await api.ok("GET", "/v1/threads"))["problems"] == [problem]
            await api.ok("POST", f"/v1/threads/{ids[0]}/messages", {"role": "user", "content": "still fine"})

    with running(data) as srv:  # after a restart the folder still opens and lists
        async with Client(srv.base_url) as api:
            listed = await api.ok("GET", "/v1/threads")
            assert {t["id"] for t in listed["data"]} == {ids[0], ids[2]}


async def test_torn_message_line_is_ignored_and_reported(tmp_path):
    data = tmp_path / "data"
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "kept"}]}))["id"]
            with open(data / "threads" / tid / "messages.jsonl", "ab") as f:
                f.write(b'{"id": "msg_torn", "role": "assistant", "content": [{"type": "te')  # a crash mid-append
            listed = await api.ok("GET", f"/v1/threads/{tid}/messages")
            assert [message_text(m) for m in listed["data"]] == ["kept"]
            problems = (await api.ok("GET", "/v1/threads"))["problems"]
            assert any(p["path"] == f"threads/{tid}/messages.jsonl" for p in problems)
            added = await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "after"})
            assert [m["id"] for m in read_jsonl(data / "threads" / tid / "messages.jsonl")][-1] == added["id"]
            listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc")
            assert [message_text(m) for m in listed["data"]] == ["kept", "after"]
