"""The Assistants API on the wire is OpenAI's, as the official ``openai`` SDK's types tell it.

Every object a run with a client tool answers (assistant, thread, messages, runs, steps, each stream event) parses
with the SDK's pydantic models, their ``Literal`` fields checked; the SDK's pollers and stream helpers drive such a
run unchanged. Messages carry OpenAI's statuses (the store keeps Jan's: ``ready``/``stopped``/``error``/``pending``);
a tool's result and a turn that only called tools are the run's ``tool_calls`` step, not messages — no
``message_creation`` step, no ``thread.message.*`` event, not listed or found (``?all=true``, Jan's, shows them). A
tiny model with Qwen3's real tool-calling template; calls forced with ``tool_choice``.
"""

from __future__ import annotations

import typing
import warnings

import pytest
from api_helpers import Client, message_text, parse_sse, running
from jan.server.routes.threads import message_object
from jan.testing.gguf_models import write_qwen3_tool_model
from pydantic import TypeAdapter, ValidationError
from run_helpers import run_to_end

openai = pytest.importorskip("openai")
from openai.types.beta import Assistant, AssistantStreamEvent, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

pytestmark = pytest.mark.timeout(600)

MODEL = "qwen3-tools"
# (no arguments: the random model's would be gibberish that a token limit may cut)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather here",
                                            "parameters": {"type": "object", "properties": {}}}}
CALL = {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_completion_tokens": 60,
        "temperature": 0, "parallel_tool_calls": False}
OUTPUT = "22 C and sunny"
#: The SDK's stream event types by event name (the union's discriminator, which pydantic is not told of).
STREAM_EVENTS = {member.model_fields["event"].annotation.__args__[0]: member
                 for member in typing.get_args(typing.get_args(AssistantStreamEvent)[0])}


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab_dir):
    tmp = tmp_path_factory.mktemp("threads-wire")
    model = write_qwen3_tool_model(tmp / "qwen3-tools.gguf")
    with running(tmp / "data", model, n_ctx=2048) as srv:
        yield srv


def sdk_errors(sdk_type, obj) -> list:
    """Where ``obj`` is not what the SDK's type says (required fields, types, ``Literal`` values). ``metadata`` is
    left out: these raw requests read as Jan's clients do, Jan's records there typed (usage, tool calls); the SDK
    itself reads them as strings (test_the_sdk_reads_a_replys_metadata_as_strings_and_jans_clients_as_stored)."""
    adapter = sdk_type if isinstance(sdk_type, TypeAdapter) else TypeAdapter(sdk_type)
    try:
        adapter.validate_python(obj)
    except ValidationError as exc:
        return [(e["loc"], e["type"], e["msg"]) for e in exc.errors() if "metadata" not in e["loc"]]
    return []


def assert_sdk(sdk_type, *objects) -> None:
    for obj in objects:
        assert not sdk_errors(sdk_type, obj), (sdk_errors(sdk_type, obj), obj)


def assert_stream(events: list) -> None:
    """Every event is one of the SDK's stream events (its name and its object), then ``done``."""
    assert events[-1] == ("done", "[DONE]"), events[-3:]
    for name, data in events[:-1]:
        assert name in STREAM_EVENTS, name
        assert not sdk_errors(STREAM_EVENTS[name], {"event": name, "data": data}), (name, data)


async def streamed(api: Client, path: str, body: dict) -> list:
    status, text = await api.post(path, {**body, "stream": True})
    assert status == 200, text
    return parse_sse(text)


async def messages_of(api: Client, tid: str, query: str = "") -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100{query}"))["data"]


async def steps_of(api: Client, tid: str, run_id: str) -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps?order=asc"))["data"]


async def test_a_client_tool_run_is_openai_objects_from_start_to_end(server):
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"name": "Weather", "model": MODEL, "tools": [WEATHER]})
        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Weather in Paris?"}]})
        tid = thread["id"]
        added = await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "Today, please."})
        assert_sdk(Assistant, assistant)
        assert_sdk(Thread, thread)
        assert_sdk(Message, added)
        assert added["status"] == "completed" and added["incomplete_details"] is None and added["completed_at"]

        events = await streamed(api, f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], **CALL})
        assert_stream(events)
        name, run = events[-2]
        assert name == "thread.run.requires_action" and run["status"] == "requires_action", events[-2]
        # as OpenAI's: waiting for its tool outputs, it expires 10 minutes on
        assert run["expires_at"] >= run["created_at"] + 600, run
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        # the turn only called the tool: no message on the wire, its calls the one step
        assert not [n for n, _ in events if n.startswith("thread.message.")], [n for n, _ in events]
        [waiting] = await steps_of(api, tid, run["id"])
        assert (waiting["type"], waiting["status"]) == ("tool_calls", "in_progress")
        assert waiting["step_details"]["tool_calls"][0]["id"] == call["id"]
        assert [m["role"] for m in await messages_of(api, tid)] == ["user", "user"]
        # ... but the thread keeps the calling turn, as the next turn's history (Jan's ?all=true shows it)
        calling = (await messages_of(api, tid, "&all=true"))[-1]
        assert calling["role"] == "assistant" and calling["metadata"]["tool_calls"][0]["id"] == call["id"]
        status, err = await api.get(f"/v1/threads/{tid}/messages/{calling['id']}")
        assert status == 404 and err["error"]["code"] == "not_found", err
        assert (await api.ok("GET", f"/v1/threads/{tid}/messages/{calling['id']}?all=true"))["id"] == calling["id"]

        submitted = await streamed(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                   {"tool_outputs": [{"tool_call_id": call["id"], "output": OUTPUT}]})
        assert_stream(submitted)
        run = submitted[-2][1]
        assert run["status"] in ("completed", "incomplete"), run
        tools, answering = await steps_of(api, tid, run["id"])
        assert (tools["type"], tools["status"]) == ("tool_calls", "completed")
        assert tools["step_details"]["tool_calls"][0]["function"]["output"] == OUTPUT
        assert (answering["type"], answering["status"]) == ("message_creation", "completed")

        listed = await messages_of(api, tid)
        assert [m["role"] for m in listed] == ["user", "user", "assistant"]
        answer = listed[-1]
        assert answer["id"] == run["message_id"] == answering["step_details"]["message_creation"]["message_id"]
        assert_sdk(Message, *listed)
        if run["status"] == "completed":
            assert answer["status"] == "completed" and answer["completed_at"] and answer["incomplete_at"] is None
        else:  # the run's max_completion_tokens cut the reply
            assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_tokens"}
            assert answer["incomplete_at"] and answer["completed_at"] is None
        # the stream told the same message, its last event named for its status
        told = [(n, d) for n, d in submitted if n.startswith("thread.message.") and n != "thread.message.delta"]
        assert [n for n, _ in told] == ["thread.message.created", "thread.message.in_progress",
                                        f"thread.message.{answer['status']}"]
        assert told[-1][1] == answer and run["message"] == answer

        # the tool's result is kept (and read by the next turn), listed only with all=true
        everything = await messages_of(api, tid, "&all=true")
        assert [m["role"] for m in everything] == ["user", "user", "assistant", "tool", "assistant"]
        result = everything[3]
        assert message_text(result) == OUTPUT and result["metadata"]["tool_call_id"] == call["id"]
        status, err = await api.get(f"/v1/threads/{tid}/messages/{result['id']}")
        assert status == 404 and err["error"]["code"] == "not_found", err
        by_run = (await api.ok("GET", f"/v1/threads/{tid}/messages?run_id={run['id']}"))["data"]
        assert [m["id"] for m in by_run] == [answer["id"]]

        # every object the routes answer is the SDK's
        assert_sdk(Run, run, await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}"),
                   *(await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"])
        assert_sdk(RunStep, tools, answering,
                   await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps/{tools['id']}"))
        assert_sdk(Assistant, *(await api.ok("GET", "/v1/assistants"))["data"])
        assert_sdk(Thread, await api.ok("GET", f"/v1/threads/{tid}"))


async def test_the_message_list_pages_what_it_shows(server):
    """The tool bookkeeping is left out before the page is cut: the cursors page the messages shown."""
    async with Client(server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": MODEL, "tools": [WEATHER]})
        thread = await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Weather?"}]})
        tid = thread["id"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"assistant_id": assistant["id"], **CALL})
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        run = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                               {"tool_outputs": [{"tool_call_id": call["id"], "output": OUTPUT}]})
        shown = [m["id"] for m in await messages_of(api, tid)]
        assert len(shown) == 2 and len(await messages_of(api, tid, "&all=true")) == 4
        base = f"/v1/threads/{tid}/messages"
        page = await api.ok("GET", f"{base}?limit=1")
        assert [m["id"] for m in page["data"]] == [shown[1]] and page["has_more"] is True
        page = await api.ok("GET", f"{base}?limit=1&after={shown[1]}")
        assert [m["id"] for m in page["data"]] == [shown[0]] and page["has_more"] is False
        page = await api.ok("GET", f"{base}?order=asc&before={shown[1]}")
        assert [m["id"] for m in page["data"]] == [shown[0]] and page["has_more"] is False
        status, err = await api.get(f"{base}?all=yes")
        assert status == 400 and err["error"]["param"] == "all", err


async def test_the_sdk_polls_and_streams_a_client_tool_run(server):
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assistant = await client.beta.assistants.create(model=MODEL, tools=[WEATHER])
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
        runs = client.beta.threads.runs
        run = await runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50, **CALL)
        assert run.status == "requires_action" and run.expires_at >= run.created_at + 600
        [call] = run.required_action.submit_tool_outputs.tool_calls
        assert call.type == "function" and call.function.name == "get_weather"
        run = await runs.submit_tool_outputs_and_poll(run_id=run.id, thread_id=thread.id, poll_interval_ms=50,
                                                      tool_outputs=[{"tool_call_id": call.id, "output": OUTPUT}])
        assert run.status in ("completed", "incomplete")
        listed = [m async for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc")]
        assert [m.role for m in listed] == ["user", "assistant"]
        assert listed[1].id == run.model_extra["message_id"]
        assert listed[1].status == ("completed" if run.status == "completed" else "incomplete")
        steps = [s async for s in runs.steps.list(run.id, thread_id=thread.id, order="asc")]
        assert [s.type for s in steps] == ["tool_calls", "message_creation"]

        # the stream helpers: the event handler's snapshots are the messages and the run the routes answer
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Rome?"}])
        async with runs.stream(thread_id=thread.id, assistant_id=assistant.id, **CALL) as stream:
            names = [event.event async for event in stream]
            waiting = await stream.get_final_run()
            assert stream.current_message_snapshot is None  # the calling turn is no message
        assert waiting.status == "requires_action" and names[-1] == "thread.run.requires_action"
        [call] = waiting.required_action.submit_tool_outputs.tool_calls
        async with runs.submit_tool_outputs_stream(run_id=waiting.id, thread_id=thread.id,
                                                   tool_outputs=[{"tool_call_id": call.id, "output": OUTPUT}]) as stream:
            text = "".join([piece async for piece in stream.text_deltas])
            [final] = await stream.get_final_messages()
            done = await stream.get_final_run()
        assert done.status in ("completed", "incomplete") and final.id == done.model_extra["message_id"]
        saved = await client.beta.threads.messages.retrieve(final.id, thread_id=thread.id)
        assert saved.status == final.status and saved.content[0].text.value == text


def test_the_sdk_reads_a_replys_metadata_as_strings_and_jans_clients_as_stored(server):
    """OpenAI's ``Message.metadata`` is ``Dict[str, str]``; a run's reply carried Jan's records there typed (``step``
    a number, ``usage`` an object), and the SDK's message objects warned on every ``model_dump``/``to_json``
    (Python; the typed languages' decoders refuse them). The OpenAI SDK (its ``OpenAI-Beta: assistants=v2``) reads
    them as JSON text — listed, retrieved, updated, streamed; Jan's own clients (no such header) read them as stored,
    and an SDK that sends them back as it was shown them leaves them typed."""
    import json

    import httpx

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("error", UserWarning)  # pydantic's serializer warnings
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="jan", model=MODEL,
                                                       max_completion_tokens=3, poll_interval_ms=50)
        reply = client.beta.threads.messages.retrieve(run.model_extra["message_id"], thread_id=thread.id)
        listed = client.beta.threads.messages.list(thread_id=thread.id).data
        updated = client.beta.threads.messages.update(reply.id, thread_id=thread.id,
                                                      metadata={**reply.metadata, "tag": "x"})
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id="jan", model=MODEL,
                                             max_completion_tokens=3) as stream:
            events = list(stream)
        streamed = [e.data for e in events if e.event.startswith("thread.message.") and e.event != "thread.message.delta"]
        assert streamed
        for message in [reply, *listed, updated, *streamed]:
            message.to_json()
            assert all(isinstance(value, str) for value in (message.metadata or {}).values()), message.metadata
        assert json.loads(reply.metadata["usage"])["completion_tokens"] == 3 and reply.metadata["step"] == "0"
    client.close()
    stored = httpx.get(f"{server.base_url}/v1/threads/{thread.id}/messages/{reply.id}", timeout=60).json()["metadata"]
    assert stored["step"] == 0 and stored["usage"]["completion_tokens"] == 3 and stored["tag"] == "x", stored


async def test_a_stored_status_is_openai_s_on_the_wire(server):
    """A message a client writes with one of Jan's statuses reads back with OpenAI's."""
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        base = f"/v1/threads/{tid}/messages"
        written = {status: await api.ok("POST", base, {"role": "assistant", "content": "x", "status": status})
                   for status in ("ready", "pending", "stopped", "error")}
        assert {k: (m["status"], m["incomplete_details"]) for k, m in written.items()} == {
            "ready": ("completed", None), "pending": ("in_progress", None),
            "stopped": ("incomplete", {"reason": "run_cancelled"}), "error": ("incomplete", {"reason": "run_failed"})}
        assert_sdk(Message, *written.values(), *await messages_of(api, tid))
        edited = await api.ok("PATCH", f"{base}/{written['pending']['id']}", {"status": "ready"})
        assert edited["status"] == "completed" and edited["completed_at"] and edited["incomplete_at"] is None


@pytest.mark.parametrize("stored, wire", [
    ({"status": "ready"}, ("completed", None)),
    ({"status": "ready", "metadata": {"finish_reason": "stop"}}, ("completed", None)),
    ({"status": "ready", "metadata": {"finish_reason": "length"}}, ("incomplete", "max_tokens")),
    ({"status": "ready", "metadata": {"finish_reason": "content_filter"}}, ("incomplete", "content_filter")),
    ({"status": "pending"}, ("in_progress", None)),
    ({"status": "stopped", "metadata": {"stop_reason": "cancelled"}}, ("incomplete", "run_cancelled")),
    ({"status": "stopped", "metadata": {"stop_reason": "interrupted"}}, ("incomplete", "run_cancelled")),
    ({"status": "stopped", "metadata": {"stop_reason": "max_completion_tokens"}}, ("incomplete", "max_tokens")),
    ({"status": "stopped", "metadata": {"stop_reason": "max_prompt_tokens"}}, ("incomplete", "max_tokens")),
    ({"status": "stopped"}, ("incomplete", "run_cancelled")),
    ({"status": "error", "metadata": {"error": "boom"}}, ("incomplete", "run_failed")),
])
def test_each_stored_status_maps_to_openai_s(stored, wire):
    message = {"id": "msg_1", "object": "thread.message", "thread_id": "t", "role": "assistant", "created_at": 1,
               "completed_at": 2, "content": [], "metadata": {}, **stored}
    out = message_object(message)
    status, reason = wire
    assert (out["status"], out["incomplete_details"]) == (status, {"reason": reason} if reason else None)
    assert out["completed_at"] == (2 if status == "completed" else None)
    assert out["incomplete_at"] == (2 if status == "incomplete" else None)
    assert message["status"] == stored["status"]  # the stored message is left as it is
    assert_sdk(Message, out)
