"""POST /v1/threads/{id}/runs with the real stories260K model: replies saved as messages, streaming,
parameter precedence, client disconnect (the run stops), cancel, errors, titles, events."""

from __future__ import annotations

import asyncio
import json
import re
import warnings

import aiohttp
import pytest
from api_helpers import Client, RunStream, message_text, parse_sse, post_streamed_run, read_jsonl, running
from run_helpers import run_to_end, wait_for_run

from jan.core import Event, InferenceStopped, MessageResponse, MessageSent, MessageUpdate
from jan.server.keys import BUS, MANAGER

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"


@pytest.fixture
def server(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:
        yield srv


LONG_RUN = 30000  # tokens: ~10 s of stories260K on a quiet 2-core machine


@pytest.fixture
def long_server(tmp_path, stories_path):
    """A big context, so a run lasts many seconds (LONG_RUN tokens) even on a quiet machine: a disconnect
    lands in its middle however slowly a busy machine lets the client read."""
    with running(tmp_path / "data", stories_path, n_ctx=LONG_RUN + 1024, n_parallel=1) as srv:
        yield srv


def record_events(srv) -> list[Event]:
    seen: list[Event] = []
    srv.app[BUS].subscribe(Event, seen.append)
    return seen


async def new_thread(api: Client, content: str = STORY, **fields) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": content}], **fields}))["id"]


async def wait_final(api: Client, tid: str, mid: str, timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await api.ok("GET", f"/v1/threads/{tid}/messages/{mid}")
        if message["status"] != "in_progress":  # (OpenAI's name for a pending reply)
            return message
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.05)


async def test_run_non_streaming_saves_reply(server, tmp_path):
    events = record_events(server)
    async with Client(server.base_url) as api:
        tid = await new_thread(api)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 24})
        assert run["object"] == "thread.run" and run["id"].startswith("run_") and run["thread_id"] == tid
        assert run["model"] == "stories260K" and run["assistant_id"] == "jan"
        assert run["status"] in ("completed", "incomplete") and run["usage"]["completion_tokens"] <= 24
        message = run["message"]
        # OpenAI's status on the wire (stored "ready"): completed, or incomplete when max_tokens cut it, as its run
        assert message["role"] == "assistant" and message["status"] == run["status"] and message["run_id"] == run["id"]
        text = message_text(message)
        assert re.search(r"[A-Za-z]{2,}", text), text  # stories260K writes English
        assert message["metadata"]["finish_reason"] in ("stop", "length") and message["metadata"]["model"] == "stories260K"

        stored = read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl")
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[1]["id"] == message["id"] and stored[1]["status"] == "ready"
        assert stored[1]["content"][0]["text"]["value"] == text

        listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc")
        assert [m["id"] for m in listed["data"]][-1] == message["id"]
        thread = await api.ok("GET", f"/v1/threads/{tid}")
        assert thread["title"] == "Once upon a time there was a little girl…"
        assert thread["assistants"][0]["assistant_id"] == "jan"
        assert thread["assistants"][0]["model"]["id"] == "stories260K"
        fetched = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert fetched["status"] == run["status"] and fetched["message"]["id"] == message["id"]

        # a second run answers with the whole history, the first reply included
        run2 = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 8})
        assert run2["usage"]["prompt_tokens"] > run["usage"]["prompt_tokens"] + run["usage"]["completion_tokens"] - 1
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["title"] == thread["title"]

    kinds = [type(e) for e in events if getattr(e, "thread_id", None) == tid]
    assert MessageSent in kinds and MessageResponse in kinds and MessageUpdate in kinds
    sent = next(e for e in events if isinstance(e, MessageSent))
    assert message_text(sent.message) == STORY
    response = next(e for e in events if isinstance(e, MessageResponse))
    assert response.message["status"] == "pending" and response.message["id"] == message["id"]
    updates = [e for e in events if isinstance(e, MessageUpdate) and e.message["id"] == message["id"]]
    assert "".join(e.delta for e in updates) == text
    assert updates[-1].message["status"] == "ready" and updates[-1].delta == ""


async def test_run_streaming_events(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = await new_thread(api)
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs",
                                    json={"stream": True, "max_tokens": 20}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            live = await resp.text()
            events = parse_sse(live)
        # the kept events (the deltas kept compactly: jan.services.event_log) replay the very stream, byte for byte,
        # from the start or after any event
        run_id = events[0][1]["id"]
        async with api.session.get(f"{server.base_url}/v1/threads/{tid}/runs/{run_id}/events") as resp:
            assert await resp.text() == live
        async with api.session.get(f"{server.base_url}/v1/threads/{tid}/runs/{run_id}/events?after=8") as resp:
            assert await resp.text() == live[live.index("id: 9\n"):]
        names = [name for name, _ in events]
        # OpenAI's order: the reply's message_creation step opens before its message and ends after it
        assert names[:7] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                             "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
                             "thread.message.in_progress"]
        assert events[-1] == ("done", "[DONE]")
        assert names[-2] in ("thread.run.completed", "thread.run.incomplete")
        ended_as = events[-2][1]["status"]  # the reply's message too: whole, or cut by max_tokens
        assert names[-4:-2] == [f"thread.message.{ended_as}", "thread.run.step.completed"]
        created = events[5][1]
        assert created["status"] == "in_progress" and created["role"] == "assistant"
        step = events[3][1]
        assert step["object"] == "thread.run.step" and step["type"] == "message_creation"
        assert step["step_details"]["message_creation"]["message_id"] == created["id"] and step["usage"] is None
        deltas = [data for name, data in events if name == "thread.message.delta"]
        assert deltas and all(d["object"] == "thread.message.delta" and d["id"] == created["id"] for d in deltas)
        text = "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas)
        final_message = events[-4][1]
        assert final_message["status"] == ended_as and message_text(final_message) == text
        ended = events[-3][1]
        assert ended["id"] == step["id"] and ended["status"] == "completed" and ended["usage"]["completion_tokens"] > 0
        final_run = events[-2][1]
        assert final_run["message"]["id"] == created["id"] and final_run["usage"]["completion_tokens"] <= 20
        stored = read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl")[-1]
        assert stored["id"] == created["id"] and stored["status"] == "ready"
        assert stored["content"][0]["text"]["value"] == text


async def test_openai_client_runs(server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": STORY}])
        stream = await client.beta.threads.runs.create(thread.id, assistant_id="jan", stream=True,
                                                       max_completion_tokens=16)
        kinds, text = [], ""
        async for event in stream:
            kinds.append(event.event)
            if event.event == "thread.message.delta":
                text += event.data.delta.content[0].text.value
        assert kinds[0] == "thread.run.created" and kinds[-1] in ("thread.run.completed", "thread.run.incomplete")
        assert text
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="jan",
                                                             max_completion_tokens=8, poll_interval_ms=50)
        assert run.status in ("completed", "incomplete") and run.usage.completion_tokens <= 8
        messages = await client.beta.threads.messages.list(thread.id, order="asc")
        assert [m.role for m in messages.data] == ["user", "assistant", "assistant"]
        assert messages.data[1].content[0].text.value == text
        # the thread's runs, newest first, as the client pages them (three: the streamed one, the polled one)
        third = await client.beta.threads.runs.create(thread.id, assistant_id="jan", max_completion_tokens=2)
        assert third.status in ("queued", "in_progress")  # answered at once, as OpenAI's
        await client.beta.threads.runs.poll(third.id, thread_id=thread.id, poll_interval_ms=50)
        listed = await client.beta.threads.runs.list(thread.id)
        assert [r.id for r in listed.data][:2] == [third.id, run.id] and len(listed.data) == 3
        page = await client.beta.threads.runs.list(thread.id, limit=1, order="asc")
        assert page.has_more and page.data[0].status in ("completed", "incomplete")
        nxt = await client.beta.threads.runs.list(thread.id, limit=2, order="asc", after=page.data[0].id)
        assert [r.id for r in nxt.data] == [run.id, third.id] and not nxt.has_more
        with pytest.raises(openai.NotFoundError):
            await client.beta.threads.runs.list("thread_nope")
    await client.close()


async def test_parameter_precedence(server):
    """request > thread (assistants[0].model.parameters) > assistant > model.json > engine defaults."""
    async with Client(server.base_url) as api:
        await api.ok("PATCH", "/v1/models/stories260K",
                     {"parameters": {"max_tokens": 3, "ignore_eos": True, "top_k": 10}})
        await api.ok("POST", "/v1/assistants", {"id": "teller", "parameters": {"max_tokens": 5, "seed": 1},
                                                "temperature": 0.9})

        def thread_assistants(params):
            return [{"assistant_id": "teller", "model": {"id": "stories260K", "parameters": params}}]

        tid = await new_thread(api, assistants=thread_assistants({"max_tokens": 7, "temperature": 0.5}))

        async def run(body=None):
            result = await run_to_end(api, f"/v1/threads/{tid}/runs", body or {})
            assert result["status"] == "incomplete", result  # ignore_eos: only max_tokens ends it
            return result

        r = await run({"max_tokens": 9})
        assert r["usage"]["completion_tokens"] == 9
        assert r["parameters"] == {"max_tokens": 9, "ignore_eos": True, "top_k": 10, "seed": 1, "temperature": 0.5}
        assert r["max_completion_tokens"] == 9 and r["temperature"] == 0.5
        r = await run({"max_completion_tokens": 4, "temperature": 0.0})
        assert r["usage"]["completion_tokens"] == 4 and r["parameters"]["temperature"] == 0.0
        r = await run()  # the thread's layer
        assert r["usage"]["completion_tokens"] == 7 and r["parameters"]["temperature"] == 0.5
        await api.ok("POST", f"/v1/threads/{tid}", {"assistants": thread_assistants({})})
        r = await run()  # the assistant's layer
        assert r["usage"]["completion_tokens"] == 5 and r["parameters"]["temperature"] == 0.9
        assert r["parameters"]["seed"] == 1
        await api.ok("POST", "/v1/assistants/teller", {"parameters": {}})
        r = await run()  # model.json's layer
        assert r["usage"]["completion_tokens"] == 3 and r["parameters"] == {"max_tokens": 3, "ignore_eos": True,
                                                                            "top_k": 10}
        await api.ok("PATCH", "/v1/models/stories260K", {"parameters": {"max_tokens": None}})
        r = await run()  # engine default: until the context is full
        assert "max_tokens" not in r["parameters"] and r["usage"]["completion_tokens"] > 100


async def test_model_and_instructions_precedence(server, stories_path):
    async with Client(server.base_url) as api:
        tid = await new_thread(api)
        r = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        assert r["model"] == "stories260K"  # "jan" says "*": the loaded model
        await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "stories-b", "mode": "reference"}, 201)
        await api.ok("POST", "/v1/assistants", {"id": "b-user", "model": "stories-b", "instructions": "Be brief."})

        tid = await new_thread(api)
        r = await run_to_end(api, f"/v1/threads/{tid}/runs", {"assistant_id": "b-user", "max_tokens": 2})
        assert r["model"] == "stories-b" and r["instructions"] == "Be brief."
        with_system = r["usage"]["prompt_tokens"]
        r = await run_to_end(api, f"/v1/threads/{tid}/runs", {"assistant_id": "b-user", "max_tokens": 2,
                                                              "instructions": "", "model": "stories260K"})
        assert r["model"] == "stories260K" and r["instructions"] == ""
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["assistants"][0]["model"]["id"] == "stories-b"

        tid = await new_thread(api, assistants=[{"assistant_id": "b-user", "instructions": "Thread says hi.",
                                                 "model": {"id": "stories260K"}}])
        r = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2, "additional_instructions": "More."})
        assert r["model"] == "stories260K" and r["assistant_id"] == "b-user"
        assert r["instructions"] == "Thread says hi.\n\nMore."
        tid2 = await new_thread(api)
        r = await run_to_end(api, f"/v1/threads/{tid2}/runs", {"max_tokens": 2, "instructions": ""})
        assert r["usage"]["prompt_tokens"] < with_system  # the system message reached the template


async def test_title_only_for_default_titles(server):
    async with Client(server.base_url) as api:
        long_words = "word " * 30
        tid = await new_thread(api, content=long_words)
        await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        title = (await api.ok("GET", f"/v1/threads/{tid}"))["title"]
        assert title.endswith("…") and len(title) <= 41 and long_words.startswith(title[:-1])
        assert not title[:-1].endswith(" ") and title[:-1].split(" ")[-1] == "word"
        tid = await new_thread(api, title="My own title")
        await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["title"] == "My own title"
        tid = await new_thread(api, content="Short one")
        await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["title"] == "Short one"


async def test_run_errors(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = await new_thread(api)
        count = lambda: len(read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl"))  # noqa: E731
        for body, status, code in [
            ({"model": "no-such-model"}, 404, "model_not_found"),
            ({"assistant_id": "nobody"}, 404, "not_found"),
            ({"max_tokens": 0}, 400, None),
            ({"colour": "red"}, 400, None),
        ]:
            got, err = await api.post(f"/v1/threads/{tid}/runs", body)
            assert got == status, (body, err)
            assert code is None or err["error"]["code"] == code
        assert count() == 1  # nothing was written
        assert (await api.post("/v1/threads/thread_nope/runs", {}))[0] == 404
        empty = (await api.ok("POST", "/v1/threads", {}))["id"]
        got, err = await api.post(f"/v1/threads/{empty}/runs", {})
        assert got == 400 and err["error"]["code"] == "empty_thread"
        assert (await api.get(f"/v1/threads/{tid}/runs/run_unknown"))[0] == 404

        # a prompt that does not fit the 512-token context: the reply exists, marked "error"
        huge = await new_thread(api, content="the cat sat on the mat and " * 120)
        run = await run_to_end(api, f"/v1/threads/{huge}/runs", {})
        # OpenAI's code for it; jan's own, finer one is in the message (and the reply's metadata)
        assert run["status"] == "failed" and run["last_error"]["code"] == "invalid_prompt"
        assert run["last_error"]["message"].endswith("(context_length_exceeded)"), run["last_error"]
        assert run["message"]["status"] == "incomplete" and run["message"]["metadata"]["error"]
        assert run["message"]["incomplete_details"] == {"reason": "run_failed"}  # stored "error"
        stored = read_jsonl(tmp_path / "data" / "threads" / huge / "messages.jsonl")[-1]
        assert stored["status"] == "error" and stored["metadata"]["error_code"] == "context_length_exceeded"
        async with api.session.post(f"{server.base_url}/v1/threads/{huge}/runs", json={"stream": True}) as resp:
            events = parse_sse(await resp.text())
        assert [n for n, _ in events][-4:] == ["thread.message.incomplete", "thread.run.step.failed", "thread.run.failed",
                                               "done"]
        # error replies are not sent back to the model: the next run on a fitting thread works
        await api.ok("DELETE", f"/v1/threads/{huge}/messages/{read_jsonl(tmp_path / 'data' / 'threads' / huge / 'messages.jsonl')[0]['id']}")
        await api.ok("POST", f"/v1/threads/{huge}/messages", {"role": "user", "content": "Hi"})
        assert (await run_to_end(api, f"/v1/threads/{huge}/runs", {"max_tokens": 2}))["status"] != "failed"


async def test_stored_layers_and_tool_choice_are_checked(server, tmp_path):
    """An assistant's / a thread's parameters that no run could use are refused when written, and a stored
    one (a hand-edited file) is the run's 400 naming it — never a 500 or a failed run; a run's tool_choice
    is one of OpenAI's shapes naming one of its tools; the assistant's response_format applies to its runs."""
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        for body, param in [({"parameters": {"stop": 5}}, "parameters.stop"),
                            ({"parameters": {"temperature": "hot"}}, "parameters.temperature"),
                            ({"parameters": {"logit_bias": [1]}}, "parameters.logit_bias"),
                            ({"response_format": "json"}, "response_format"),
                            ({"response_format": {"type": "json_schema"}}, "response_format.json_schema")]:
            status, err = await api.post("/v1/assistants", {"model": "stories260K", **body})
            assert status == 400 and err["error"]["param"] == param, (body, err)
        await api.ok("POST", "/v1/assistants", {"id": "fine", "model": "stories260K"})
        status, err = await api.post("/v1/assistants/fine", {"parameters": {"stop": {"a": 1}}})
        assert status == 400 and err["error"]["param"] == "parameters.stop"
        bad_thread = [{"assistant_id": "fine", "model": {"id": "stories260K", "parameters": {"stop": 5}}}]
        status, err = await api.post("/v1/threads", {"assistants": bad_thread})
        assert status == 400 and err["error"]["param"] == "assistants[0].model.parameters.stop", err
        tid = await new_thread(api)
        status, err = await api.post(f"/v1/threads/{tid}", {"assistants": bad_thread})
        assert status == 400 and err["error"]["param"] == "assistants[0].model.parameters.stop", err

        # a file written by hand (or an older client) with a value no run can use
        path = data / "assistants" / "fine" / "assistant.json"
        stored = json.loads(path.read_text())
        path.write_text(json.dumps({**stored, "parameters": {"stop": 5}}))
        count = lambda: len(read_jsonl(data / "threads" / tid / "messages.jsonl"))  # noqa: E731
        status, err = await api.post(f"/v1/threads/{tid}/runs", {"assistant_id": "fine", "max_tokens": 2})
        assert status == 400 and err["error"]["param"] == "parameters.stop" and "'fine'" in err["error"]["message"]
        path.write_text(json.dumps(stored))

        tool = {"type": "function", "function": {"name": "lookup", "description": "Look it up"}}
        for body in [{"tool_choice": "bogus"}, {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
                     {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                     {"tool_choice": "required"}, {"response_format": "json"}]:
            status, err = await api.post(f"/v1/threads/{tid}/runs", {"assistant_id": "fine", "max_tokens": 2, **body})
            assert status == 400 and err["error"]["param"].startswith(next(iter(body.keys() - {"tools"}))), (body, err)
        assert count() == 1  # nothing was written

        await api.ok("POST", "/v1/assistants/fine", {"response_format": {"type": "json_object"}})
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"assistant_id": "fine", "max_tokens": 4})
        assert run["response_format"] == {"type": "json_object"}, run
        assert message_text(run["message"]).lstrip().startswith("{"), run["message"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"assistant_id": "fine", "max_tokens": 2,
                                                                "response_format": {"type": "text"}})
        assert run["response_format"] == {"type": "text"}  # the run's own wins


async def test_run_naming_no_model_uses_the_default_or_a_model_that_generates_text(tmp_path, stories_path,
                                                                                    minilm_path):
    """A run that nothing names a model for ("jan" says "*") answers with the configured default model, else a
    loaded model that generates text — not an embedding model loaded beside it (whose run could only fail)."""
    # the embedding model's id sorts first: it is the first loaded model
    with running(tmp_path / "data", minilm_path, stories_path) as srv:
        async with Client(srv.base_url) as api:
            run = await run_to_end(api, f"/v1/threads/{await new_thread(api)}/runs", {"max_tokens": 2})
            assert run["model"] == "stories260K" and run["status"] != "failed", run
    with running(tmp_path / "data2", stories_path, minilm_path, default_model="stories260K") as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "stories-b", "mode": "reference"},
                         201)
            await api.ok("POST", "/v1/models/stories-b/start", {})
            run = await run_to_end(api, f"/v1/threads/{await new_thread(api)}/runs", {"max_tokens": 2})
            assert run["model"] == "stories260K", run  # the configured default, not the first model loaded


async def _local_engine_busy(srv) -> int:
    engine = srv.app[MANAGER].get_inference("llama.cpp")
    return (await engine.model_status("stories260K")).get("active_requests", 0)


async def test_stream_disconnect_stops_and_saves_stopped(long_server, tmp_path):
    srv = long_server
    events = record_events(srv)
    async with Client(srv.base_url) as api:
        tid = await new_thread(api)
        session = aiohttp.ClientSession()
        resp = await post_streamed_run(session, srv.base_url, tid, LONG_RUN)
        stream = RunStream()
        async for line in resp.content:
            stream.feed(line)
            if len(stream.text) > 20:
                break
        received, message_id, run_id = stream.text, stream.message_id, stream.run_id
        resp.close()  # the client goes away mid-stream
        await session.close()

        message = await wait_final(api, tid, message_id)
        assert message["status"] == "incomplete" and message["incomplete_details"] == {"reason": "run_cancelled"}
        assert message["metadata"]["stop_reason"] == "client disconnected"
        assert "finish_reason" not in message["metadata"]
        text = message_text(message)
        assert text.startswith(received)
        usage = message["metadata"]["usage"]  # counted from the saved text: the engine never reported it
        assert usage["estimated"] is True and 0 < usage["completion_tokens"] < LONG_RUN  # stopped long before the end
        stored = read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl")[-1]
        assert stored["status"] == "stopped" and stored["content"][0]["text"]["value"] == text
        assert srv.call(_local_engine_busy(srv)) == 0  # the slot was freed
        run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        assert run["status"] == "cancelled"
        # announced right after the message is saved: the GET above may have read the file first
        deadline = asyncio.get_running_loop().time() + 30
        while not any(isinstance(e, InferenceStopped) and e.request_id == run_id for e in events) \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    stopped = [e for e in events if isinstance(e, InferenceStopped)]
    assert stopped and stopped[-1].request_id == run_id and stopped[-1].reason == "client disconnected"


async def test_a_run_not_streamed_goes_on_without_its_client(long_server):
    """As OpenAI's: the answer is the run at once, and the run goes on whatever its client does (it polls the run or
    cancels it); only a streamed run's client going away stops it."""
    srv = long_server
    async with Client(srv.base_url) as api:
        tid = await new_thread(api)
        async with aiohttp.ClientSession() as session:  # a client that goes away once answered
            async with session.post(f"{srv.base_url}/v1/threads/{tid}/runs",
                                    json={"max_tokens": 200, "ignore_eos": True}) as resp:
                run = await resp.json()
        assert run["status"] in ("queued", "in_progress") and "message" not in run, run
        done = await wait_for_run(api, tid, run["id"])
        assert done["status"] == "incomplete" and done["usage"]["completion_tokens"] == 200, done
        assert "stop_reason" not in done["message"]["metadata"]


async def test_cancel_run(long_server):
    srv = long_server
    async with Client(srv.base_url) as api:
        tid = await new_thread(api)
        async with api.session.post(f"{srv.base_url}/v1/threads/{tid}/runs",
                                    json={"stream": True, "max_tokens": LONG_RUN, "ignore_eos": True}) as resp:
            run_id = None
            async for line in resp.content:
                line = line.decode().strip()
                if run_id is None and line.startswith("data: {") and '"thread.run"' in line:
                    run_id = parse_sse(line)[0][1]["id"]
                if '"thread.message.delta"' in line:
                    break
            cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run_id}/cancel")
            assert cancelled["status"] == "cancelled"
            assert cancelled["message"]["status"] == "incomplete"
            assert cancelled["message"]["incomplete_details"] == {"reason": "run_cancelled"}
            assert cancelled["message"]["metadata"]["stop_reason"] == "cancelled"
            rest = parse_sse((await resp.read()).decode())
        assert [n for n, _ in rest][-4:] == ["thread.message.incomplete", "thread.run.step.cancelled",
                                             "thread.run.cancelled", "done"]
        got, err = await api.post(f"/v1/threads/{tid}/runs/{run_id}/cancel")
        assert got == 400 and err["error"]["code"] == "run_not_active"


async def test_additional_messages_and_truncation(server, tmp_path):
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2, "additional_messages": [
            {"role": "user", "content": "Lily had a big red ball."},
            {"role": "assistant", "content": [{"type": "text", "text": "She loved it."}]},
            {"role": "user", "content": STORY}]})
        stored = read_jsonl(tmp_path / "data" / "threads" / tid / "messages.jsonl")
        assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
        assert stored[-1]["id"] == run["message"]["id"]
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["title"] == "Lily had a big red ball."
        full = run["usage"]["prompt_tokens"]
        cut = await run_to_end(api, f"/v1/threads/{tid}/runs", {
            "max_tokens": 2, "truncation_strategy": {"type": "last_messages", "last_messages": 1}})
        assert cut["usage"]["prompt_tokens"] < full
        got, _ = await api.post(f"/v1/threads/{tid}/runs", {"additional_messages": [{"role": "user"}]})
        assert got == 400


# -- resume: the partial reply counts against max_tokens and in the usage ------------------------------
PARTIAL = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."


async def token_count(api: Client, text: str) -> int:
    body = {"model": "stories260K", "content": text, "add_special": False}
    return len((await api.ok("POST", "/tokenize", body))["tokens"])


async def interrupted_run(api: Client, data, parameters: dict) -> tuple[str, str]:
    """A run as jan's start-up leaves one that a stop cut off mid-reply (its record ``interrupted``, its reply
    ``stopped`` with the text saved so far), without killing a process; returns (thread id, run id)."""
    from jan.services.run_records import save_record

    tid = await new_thread(api)
    message = await api.ok("POST", f"/v1/threads/{tid}/messages", {
        "role": "assistant", "content": PARTIAL, "status": "stopped", "metadata": {"stop_reason": "interrupted"}})
    run_id = f"run_{message['id'][-12:]}resumed"
    save_record(data, {"id": run_id, "object": "thread.run", "thread_id": tid, "assistant_id": "jan",
                       "model": "stories260K", "instructions": "", "parameters": parameters, "metadata": {},
                       "status": "interrupted", "message_id": message["id"], "step": 0, "pending": []})
    return tid, run_id


async def test_resume_spends_only_what_the_partial_reply_left_of_max_tokens(server, tmp_path):
    async with Client(server.base_url) as api:
        already = await token_count(api, PARTIAL)
        max_tokens = already + 20
        tid, run_id = await interrupted_run(api, tmp_path / "data",
                                            {"max_tokens": max_tokens, "ignore_eos": True, "temperature": 0})
        resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{run_id}/resume", {})
        assert resumed["status"] == "incomplete" and resumed["finish_reason"] == "length", resumed
        assert resumed["max_completion_tokens"] == max_tokens
        text = message_text(resumed["message"])
        assert text.startswith(PARTIAL) and len(text) > len(PARTIAL)
        # the resumed leg generated only what the limit left: the whole reply (counted again) fits in max_tokens
        assert already < await token_count(api, text) <= max_tokens
        # the run's usage is the whole reply's, both legs, and the prompt the conversation before the reply
        usage = resumed["usage"]
        assert usage["completion_tokens"] == max_tokens
        assert usage["total_tokens"] == usage["prompt_tokens"] + max_tokens
        fresh = await run_to_end(api, f"/v1/threads/{await new_thread(api)}/runs", {"max_tokens": 1})
        assert abs(usage["prompt_tokens"] - fresh["usage"]["prompt_tokens"]) <= 2  # the partial's seam tokenizes alike
        saved = await api.ok("GET", f"/v1/threads/{tid}/messages/{resumed['message_id']}")
        # (stored "ready", finish_reason "length": OpenAI's incomplete reply, cut by the token limit)
        assert saved["status"] == "incomplete" and saved["incomplete_details"] == {"reason": "max_tokens"}
        assert saved["metadata"]["usage"] == usage and saved["metadata"]["finish_reason"] == "length"


async def test_resume_with_no_tokens_left_ends_the_reply_without_generating(server, tmp_path):
    async with Client(server.base_url) as api:
        already = await token_count(api, PARTIAL)
        tid, run_id = await interrupted_run(api, tmp_path / "data",
                                            {"max_tokens": already - 3, "ignore_eos": True, "temperature": 0})
        async with api.session.post(f"{server.base_url}/v1/threads/{tid}/runs/{run_id}/resume",
                                    json={"stream": True}) as resp:
            assert resp.status == 200
            events = parse_sse(await resp.text())
        names = [name for name, _ in events]
        assert "thread.message.delta" not in names, names
        assert names[-4:] == ["thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete",
                              "done"], names
        run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        assert run["status"] == "incomplete" and run["finish_reason"] == "length"
        assert run["message"]["status"] == "incomplete" and message_text(run["message"]) == PARTIAL
        assert run["message"]["incomplete_details"] == {"reason": "max_tokens"}
        assert run["usage"]["completion_tokens"] == already
        assert run["usage"]["total_tokens"] == run["usage"]["prompt_tokens"] + already


@pytest.mark.parametrize("calls", [5, [5], [{"id": "call_1", "function": 5}]])
async def test_resume_reads_hand_edited_calls_of_its_reply_as_none(server, tmp_path, calls):
    # the interrupted reply's metadata.tool_calls edited by hand into no list, or entries of another shape: the resume
    # failed with a 500 (a TypeError iterating them), where the thread's every other reader takes them for no calls
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        tid, run_id = await interrupted_run(api, data, {"max_tokens": 4, "ignore_eos": True, "temperature": 0})
        path = data / "threads" / tid / "messages.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        lines[-1]["metadata"]["tool_calls"] = calls
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        resumed = await run_to_end(api, f"/v1/threads/{tid}/runs/{run_id}/resume", {})
        assert resumed["status"] in ("completed", "incomplete"), resumed
        listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc")
        assert any(message_text(m).startswith(PARTIAL) for m in listed["data"]), listed  # the partial reply is kept
        if calls == 5:  # no calls at all: the reply goes on, as one without calls does
            assert message_text(resumed["message"]).startswith(PARTIAL), resumed


# -- POST /v1/threads/runs (create a thread and run it) and ?run_id= on a thread's messages ---------------------
def stored_threads(data) -> list[str]:
    """Ids of the threads the data folder holds (a deleted one is gone, not in a trash folder's name)."""
    root = data / "threads"
    return sorted(p.name for p in root.iterdir() if (p / "thread.json").is_file()) if root.is_dir() else []


async def test_create_thread_and_run_over_http(server, tmp_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        run = await run_to_end(api, "/v1/threads/runs", {
            "thread": {"messages": [{"role": "user", "content": STORY}], "metadata": {"topic": "lily"}},
            "max_completion_tokens": 8, "metadata": {"via": "create_and_run"}})
        assert run["object"] == "thread.run" and run["status"] in ("completed", "incomplete"), run
        assert run["assistant_id"] == "jan" and run["model"] == "stories260K" and run["metadata"] == {"via": "create_and_run"}
        tid = run["thread_id"]
        assert tid.startswith("thread_") and stored_threads(data) == [tid]
        thread = await api.ok("GET", f"/v1/threads/{tid}")
        assert thread["metadata"] == {"topic": "lily"} and thread["title"] == "Once upon a time there was a little girl…"
        listed = await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc")
        assert [m["role"] for m in listed["data"]] == ["user", "assistant"]
        assert message_text(listed["data"][0]) == STORY and listed["data"][1]["id"] == run["message"]["id"]
        assert listed["data"][1]["run_id"] == run["id"]
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"))["status"] == run["status"]
        # the thread goes on like any other
        assert (await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2}))["thread_id"] == tid

        # streamed: thread.created, then the run's own events on that thread
        async with api.session.post(f"{server.base_url}/v1/threads/runs", json={
                "stream": True, "max_tokens": 6, "thread": {"messages": [{"role": "user", "content": "Once"}]}}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            events = parse_sse(await resp.text())
        names = [name for name, _ in events]
        assert names[:4] == ["thread.created", "thread.run.created", "thread.run.queued", "thread.run.in_progress"], names
        assert events[-1] == ("done", "[DONE]") and names[-2] in ("thread.run.completed", "thread.run.incomplete")
        created, final = events[0][1], events[-2][1]
        assert created["object"] == "thread" and created["id"] == final["thread_id"] != tid
        assert created["tool_resources"] is None and created["metadata"] == {}  # (OpenAI's spec requires both)
        assert final["message"]["status"] == final["status"]  # completed, or cut by max_tokens: incomplete
        assert set(stored_threads(data)) == {tid, created["id"]}

        # background: answered at once; the run goes on and its events can be followed
        run = await api.ok("POST", "/v1/threads/runs", {
            "background": True, "max_tokens": 4, "thread": {"messages": [{"role": "user", "content": "Once"}]}})
        assert run["background"] is True and run["thread_id"] not in (tid, created["id"])
        async with api.session.get(f"{server.base_url}/v1/threads/{run['thread_id']}/runs/{run['id']}/events") as resp:
            names = [name for name, _ in parse_sse(await resp.text())]
        assert names[0] == "thread.run.created" and names[-1] == "done"  # thread.created is not the run's
        done = await api.ok("GET", f"/v1/threads/{run['thread_id']}/runs/{run['id']}")
        assert done["status"] in ("completed", "incomplete") and done["message"]["status"] == done["status"]


async def test_create_thread_and_run_refused_leaves_no_thread(server, tmp_path):
    """Every refusal is a 4xx in OpenAI's error shape and writes nothing: the body's own checks run before the
    thread exists; what only the run service can check (assistant, model, tools, an empty thread) removes it."""
    data = tmp_path / "data"
    hello = {"messages": [{"role": "user", "content": "Once"}]}
    bad_params = [{"assistant_id": "jan", "model": {"id": "stories260K", "parameters": {"stop": 5}}}]
    async with Client(server.base_url) as api:
        for body, status, param, code in [
            ({"colour": "red", "thread": hello}, 400, "colour", None),
            ({"thread": {"messages": [{"role": "user"}]}}, 400, None, None),
            ({"thread": {**hello, "tool_resources": {"code_interpreter": {"file_ids": ["file-1"]}}}}, 400,
             "thread.tool_resources.code_interpreter.file_ids", None),
            ({"thread": "hello"}, 400, "thread", None),
            ({"thread": {**hello, "id": "runs"}}, 400, "thread.id", "invalid_value"),
            ({"thread": {**hello, "assistants": bad_params}}, 400, "thread.assistants[0].model.parameters.stop", None),
            ({"max_tokens": 0, "thread": hello}, 400, "max_tokens", None),
            ({"assistant_id": "nobody", "thread": hello}, 404, None, "not_found"),
            ({"model": "no-such-model", "thread": hello}, 404, None, "model_not_found"),
            ({"tool_choice": "required", "thread": hello}, 400, "tool_choice", None),
            ({}, 400, None, "empty_thread"),
            ({"thread": {"messages": []}, "stream": True}, 400, None, "empty_thread"),
        ]:
            got, err = await api.post("/v1/threads/runs", body)
            assert got == status, (body, got, err)
            assert isinstance(err["error"]["message"], str) and err["error"]["type"], err
            assert param is None or (err["error"]["param"] or "").startswith(param), (body, err)
            assert code is None or err["error"]["code"] == code, (body, err)
            assert stored_threads(data) == [], body
        assert (await api.ok("GET", "/v1/threads"))["data"] == []


async def test_threads_runs_route_leaves_the_thread_routes_alone(server):
    async with Client(server.base_url) as api:
        resources = [r.canonical for r in server.app.router.resources()]
        # matched first on an aiohttp that matches in registration order, not taken for a thread named "runs"
        assert resources.index("/v1/threads/runs") < resources.index("/v1/threads/{thread_id}")
        tid = await new_thread(api)
        assert (await api.ok("GET", f"/v1/threads/{tid}"))["id"] == tid
        assert (await api.ok("POST", f"/v1/threads/{tid}", {"title": "Renamed"}))["title"] == "Renamed"
        assert (await api.ok("PATCH", f"/v1/threads/{tid}", {"metadata": {"a": "b"}}))["metadata"] == {"a": "b"}
        assert (await api.ok("DELETE", f"/v1/threads/{tid}"))["deleted"] is True
        assert (await api.get(f"/v1/threads/{tid}"))[0] == 404
        # "runs" is no thread: reserved, so no thread can be named after the route
        status, err = await api.post("/v1/threads", {"id": "runs"})
        assert status == 400 and err["error"]["param"] == "id", err
        for method in ("GET", "DELETE"):
            assert (await api.call(method, "/v1/threads/runs"))[0] == 404, method
        assert (await api.get("/v1/threads/runs/messages"))[0] == 404
        spec = await api.ok("GET", "/openapi.json")
        op = spec["paths"]["/v1/threads/runs"]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ThreadAndRunCreate")
        props = spec["components"]["schemas"]["ThreadAndRunCreate"]["properties"]
        assert {"thread", "assistant_id", "stream", "max_completion_tokens", "tools"} <= set(props)
        thread_param = next(p for p in spec["paths"]["/v1/threads/{thread_id}"]["get"]["parameters"])
        assert thread_param["schema"]["not"] == {"enum": ["runs"]}


async def test_openai_client_create_and_run(server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused")
    beta = client.beta
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run = await beta.threads.create_and_run(
            assistant_id="jan", thread={"messages": [{"role": "user", "content": STORY}], "metadata": {"k": "v"}},
            max_completion_tokens=8, temperature=0.0, metadata={"run": "one"})
        assert run.object == "thread.run" and run.status in ("queued", "in_progress")  # answered at once
        run = await beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
        assert run.status in ("completed", "incomplete") and run.metadata == {"run": "one"}
        assert run.usage.completion_tokens <= 8 and run.temperature == 0.0
        thread = await beta.threads.retrieve(run.thread_id)
        assert thread.metadata == {"k": "v"}
        messages = await beta.threads.messages.list(run.thread_id, order="asc")
        assert [m.role for m in messages.data] == ["user", "assistant"]
        assert messages.data[0].content[0].text.value == STORY
        only = await beta.threads.messages.list(run.thread_id, run_id=run.id)
        assert [m.id for m in only.data] == [messages.data[1].id] and only.data[0].run_id == run.id

        polled = await beta.threads.create_and_run_poll(
            assistant_id="jan", thread={"messages": [{"role": "user", "content": "Once"}]}, max_completion_tokens=4,
            poll_interval_ms=50)
        assert polled.status in ("completed", "incomplete") and polled.thread_id != run.thread_id

        stream = await beta.threads.create_and_run(
            assistant_id="jan", thread={"messages": [{"role": "user", "content": "Once"}]}, stream=True,
            max_completion_tokens=6)
        kinds, text, created = [], "", None
        async for event in stream:
            kinds.append(event.event)
            if event.event == "thread.created":
                created = event.data
            elif event.event == "thread.message.delta":
                text += event.data.delta.content[0].text.value
        assert kinds[0] == "thread.created" and kinds[-1] in ("thread.run.completed", "thread.run.incomplete"), kinds
        assert created.id and created.metadata == {}
        streamed = await beta.threads.messages.list(created.id, order="asc")
        assert [m.role for m in streamed.data] == ["user", "assistant"] and streamed.data[1].content[0].text.value == text

        async with beta.threads.create_and_run_stream(
                assistant_id="jan", thread={"messages": [{"role": "user", "content": "Once"}]},
                max_completion_tokens=4) as handler:
            final = await handler.get_final_run()
        assert final.status in ("completed", "incomplete") and final.thread_id not in (run.thread_id, created.id)

        with pytest.raises(openai.NotFoundError):
            await beta.threads.create_and_run(assistant_id="nobody", thread={"messages": [{"role": "user",
                                                                                       "content": "Once"}]})
    await client.close()


async def test_messages_filtered_by_run_id_page_the_filtered_list(server, tmp_path):
    """?run_id= keeps the messages that run wrote (its replies, and with ?all=true its tool results, a tool result
    saved before tool messages carried their run_id too) and pages them as any list: limit/after/before/order apply
    to the filtered list, not the thread's."""
    from jan.store import DataFolder

    async with Client(server.base_url) as api:
        tid = await new_thread(api, content="Once")
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        other = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        # more of the first run's messages, interleaved with others (as a run with tool calls writes them)
        messages = DataFolder(tmp_path / "data").messages
        mine = [run["message"]["id"]]
        for i in range(4):
            messages.create(tid, "user", f"between {i}")
            if i % 2:
                mine.append(messages.create(tid, "tool", f"result {i}", run_id=run["id"],
                                            metadata={"run_id": run["id"]})["id"])
            else:  # saved before tool messages carried their run_id: only metadata.run_id says whose it is
                mine.append(messages.create(tid, "tool", f"old result {i}", metadata={"run_id": run["id"]})["id"])
            messages.create(tid, "assistant", f"spoof {i}", metadata={"run_id": run["id"]})  # not a run's

        async def ids(query: str) -> tuple[list[str], bool]:
            page = await api.ok("GET", f"/v1/threads/{tid}/messages?run_id={run['id']}&all=true&{query}")
            assert page["first_id"] == (page["data"][0]["id"] if page["data"] else None)
            return [m["id"] for m in page["data"]], page["has_more"]

        assert await ids("order=asc&limit=100") == (mine, False)
        assert await ids("") == (mine[::-1], False)  # newest first by default
        assert await ids("order=asc&limit=2") == (mine[:2], True)
        assert await ids(f"order=asc&limit=2&after={mine[1]}") == (mine[2:4], True)
        assert await ids(f"order=asc&limit=2&after={mine[3]}") == (mine[4:], False)
        assert await ids(f"order=desc&limit=2&after={mine[4]}") == ([mine[3], mine[2]], True)
        assert await ids(f"order=asc&limit=2&before={mine[4]}") == (mine[2:4], True)
        assert await ids(f"order=asc&after={mine[0]}&before={mine[3]}") == (mine[1:3], False)
        # a cursor outside the filtered list is refused as any unknown cursor
        for shown in ("&all=true", ""):
            status, err = await api.get(f"/v1/threads/{tid}/messages?run_id={run['id']}{shown}"
                                        f"&after={other['message']['id']}")
            assert status == 400 and "after=" in err["error"]["message"], err
        # OpenAI's list (no all): the run's replies only, its tool results being its steps'
        page = await api.ok("GET", f"/v1/threads/{tid}/messages?run_id={run['id']}")
        assert [m["id"] for m in page["data"]] == [run["message"]["id"]]
        page = await api.ok("GET", f"/v1/threads/{tid}/messages?run_id={other['id']}")
        assert [m["id"] for m in page["data"]] == [other["message"]["id"]]
        assert (await api.ok("GET", f"/v1/threads/{tid}/messages?run_id=run_nobody"))["data"] == []
        everything = await api.ok("GET", f"/v1/threads/{tid}/messages?limit=100&all=true")
        assert len(everything["data"]) == 1 + 2 + 4 * 3  # no run_id: the whole thread
        assert len((await api.ok("GET", f"/v1/threads/{tid}/messages?limit=100"))["data"]) == 1 + 2 + 4 * 2
        assert (await api.get(f"/v1/threads/thread_nope/messages?run_id={run['id']}"))[0] == 404
