"""The Assistants runs API as the official ``openai`` SDK drives it.

* A run not streamed (create, create-thread-and-run, ``submit_tool_outputs``) is answered at once and goes on
  server-side whatever the client does, as OpenAI's: the client polls it (``create_and_poll``) or cancels it.
* A streamed run tells its tool calls as they are generated: ``thread.run.step.created`` with no calls, then
  ``thread.run.step.delta`` pieces, so the SDK's ``AssistantEventHandler`` hears ``on_tool_call_created`` /
  ``on_tool_call_delta`` / ``on_tool_call_done`` — for client tools (``requires_action``) and for jan's own
  allowlisted tools alike; ``GET .../events`` replays them.

stories260K for plain runs (long ones: ``ignore_eos``), a tiny model with Qwen3's real tool-calling template for
tool runs (calls forced with ``tool_choice``).
"""

from __future__ import annotations

import json
import warnings

import pytest
from api_helpers import Client, parse_sse, running
from run_helpers import run_to_end, streamed, told_calls, until_writing, wait_for_run

from jan.testing.gguf_models import write_qwen3_tool_model

openai = pytest.importorskip("openai")
from openai import AsyncAssistantEventHandler

pytestmark = pytest.mark.timeout(600)

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"
#: A run that goes on until it is cancelled (the test never waits for its end).
LONG_RUN = {"max_tokens": 6000, "ignore_eos": True}
TOOL_MODEL = "qwen3-tools"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Oslo", "Rome"]}},
                   "required": ["city"]}}}
CURRENT_TIME = {"type": "function", "function": {"name": "current_time"}, "require_approval": "never"}


def forced(name: str) -> dict:
    return {"tool_choice": {"type": "function", "function": {"name": name}}, "max_completion_tokens": 80,
            "temperature": 0, "parallel_tool_calls": False}


@pytest.fixture(scope="module")
def story_server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("async-runs") / "data", stories_path, n_ctx=8192, n_parallel=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory, vocab_dir):
    tmp = tmp_path_factory.mktemp("tool-deltas")
    # (seed 2: weights whose forced current_time call is "{}", where others' write a timezone the token limit cuts)
    with running(tmp / "data", write_qwen3_tool_model(tmp / f"{TOOL_MODEL}.gguf", seed=2), n_ctx=2048) as srv:
        yield srv


def sdk(server) -> "openai.AsyncOpenAI":
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


# -- not streamed: answered at once ------------------------------------------------------------------------------
async def test_a_run_not_streamed_is_answered_at_once_and_can_be_cancelled(story_server):
    """Create-then-cancel from one client: the create's answer is the run in progress (no wait for its end)."""
    async with Client(story_server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", LONG_RUN)
        assert run["status"] in ("queued", "in_progress") and "message" not in run, run
        assert run["completed_at"] is None and run["usage"] is None
        # it goes on without the client that started it: the thread is held meanwhile
        status, err = await api.post(f"/v1/threads/{tid}/runs", {"max_tokens": 2})
        assert status == 400 and err["error"]["code"] == "run_active" and run["id"] in err["error"]["message"]
        await until_writing(api, tid, run["id"])  # (cancelled before it wrote anything, it would keep no reply)
        cancelled = await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["message"]["status"] == "incomplete"
        assert cancelled["message"]["metadata"]["stop_reason"] == "cancelled"
        listed = await api.ok("GET", f"/v1/threads/{tid}/runs")
        assert [r["id"] for r in listed["data"]] == [run["id"]]  # one run, never one per retry

        # create-thread-and-run is answered at once too
        made = await api.ok("POST", "/v1/threads/runs", {"thread": {"messages": [{"role": "user", "content": "Hi"}]},
                                                         **LONG_RUN})
        assert made["status"] in ("queued", "in_progress") and made["thread_id"] != tid, made
        assert (await api.ok("POST", f"/v1/threads/{made['thread_id']}/runs/{made['id']}/cancel"))["status"] == \
            "cancelled"


async def test_the_sdk_polls_a_run_to_its_end(story_server):
    client = sdk(story_server)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": STORY}])
        runs = client.beta.threads.runs
        started = await runs.create(thread_id=thread.id, assistant_id="jan", max_completion_tokens=6)
        assert started.status in ("queued", "in_progress") and started.completed_at is None
        done = await runs.poll(started.id, thread_id=thread.id, poll_interval_ms=50)
        assert done.status == "incomplete" and done.usage.completion_tokens == 6
        again = await runs.create_and_poll(thread_id=thread.id, assistant_id="jan", max_completion_tokens=2,
                                           poll_interval_ms=50)
        assert again.status in ("completed", "incomplete") and again.usage.completion_tokens <= 2
        # the SDK's cancel of a run it started and left going
        long = await runs.create(thread_id=thread.id, assistant_id="jan", extra_body={"ignore_eos": True},
                                 max_completion_tokens=6000)
        assert long.status in ("queued", "in_progress")
        assert (await runs.cancel(long.id, thread_id=thread.id)).status == "cancelled"
        assert (await runs.poll(long.id, thread_id=thread.id, poll_interval_ms=50)).status == "cancelled"
    await client.close()


async def test_submit_tool_outputs_not_streamed_is_answered_at_once(tool_server):
    async with Client(tool_server.base_url) as api:
        assistant = await api.ok("POST", "/v1/assistants", {"model": TOOL_MODEL, "tools": [WEATHER]})
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Oslo?"}]}))["id"]
        waiting = await run_to_end(api, f"/v1/threads/{tid}/runs",
                                   {"assistant_id": assistant["id"], **forced("get_weather")})
        assert waiting["status"] == "requires_action", waiting
        [call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
        answered = await api.ok("POST", f"/v1/threads/{tid}/runs/{waiting['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]})
        assert answered["status"] in ("queued", "in_progress") and answered["required_action"] is None, answered
        done = await wait_for_run(api, tid, waiting["id"])
        assert done["status"] in ("completed", "incomplete"), done
        steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{waiting['id']}/steps?order=asc"))["data"]
        assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
        assert steps[0]["step_details"]["tool_calls"][0]["function"]["output"] == "sunny"


# -- tool calls streamed as step deltas -------------------------------------------------------------------------
class Calls(AsyncAssistantEventHandler):
    """What the SDK's event handler hears of tool calls."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list = []
        self.deltas: list = []
        self.done: list = []

    async def on_tool_call_created(self, tool_call) -> None:
        self.created.append(tool_call)

    async def on_tool_call_delta(self, delta, snapshot) -> None:
        self.deltas.append(delta)

    async def on_tool_call_done(self, tool_call) -> None:
        self.done.append(tool_call)


def assert_heard(handler: Calls, call_id: str, name: str, arguments: str) -> None:
    """The handler heard the call created (id and name, no arguments yet), its arguments in pieces, then done."""
    assert [(c.id, c.type, c.function.name) for c in handler.created] == [(call_id, "function", name)]
    assert handler.created[0].function.arguments == ""
    assert handler.deltas and all(d.index == 0 for d in handler.deltas)
    assert "".join(d.function.arguments for d in handler.deltas) == arguments
    assert handler.done and handler.done[0].id == call_id and handler.done[0].function.name == name
    assert handler.done[0].function.arguments == arguments


async def test_the_sdk_hears_a_client_tool_call_generated(tool_server):
    client = sdk(tool_server)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assistant = await client.beta.assistants.create(model=TOOL_MODEL, tools=[WEATHER])
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
        runs = client.beta.threads.runs
        handler = Calls()
        async with runs.stream(thread_id=thread.id, assistant_id=assistant.id, event_handler=handler,
                               **forced("get_weather")) as stream:
            await stream.until_done()
            waiting = await stream.get_final_run()
            [step] = await stream.get_final_run_steps()
        assert waiting.status == "requires_action"
        [call] = waiting.required_action.submit_tool_outputs.tool_calls
        json.loads(call.function.arguments)  # whole: the model's (grammar-bound) arguments
        assert_heard(handler, call.id, "get_weather", call.function.arguments)
        # the stream's steps, as the SDK added them up, are the calls the run waits on
        assert step.type == "tool_calls" and step.step_details.tool_calls[0].id == call.id
        assert step.step_details.tool_calls[0].function.arguments == call.function.arguments

        # a replay tells the very same pieces
        async with Client(tool_server.base_url) as api:
            async with api.session.get(f"{api.base}/v1/threads/{thread.id}/runs/{waiting.id}/events") as resp:
                replayed = parse_sse(await resp.text())
        deltas = [data for name, data in replayed if name == "thread.run.step.delta"]
        assert deltas[0]["delta"]["step_details"]["tool_calls"][0] == {
            "index": 0, "type": "function", "id": call.id,
            "function": {"name": "get_weather", "arguments": "", "output": None}}
        assert told_calls(replayed)[step.id][0]["function"]["arguments"] == call.function.arguments
        created = next(data for name, data in replayed if name == "thread.run.step.created")
        assert created["step_details"] == {"type": "tool_calls", "tool_calls": []}

        answered = Calls()
        async with runs.submit_tool_outputs_stream(run_id=waiting.id, thread_id=thread.id, event_handler=answered,
                                                   tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}]) as s:
            await s.until_done()
            done = await s.get_final_run()
        assert done.status in ("completed", "incomplete")
    await client.close()


async def test_the_sdk_hears_an_allowlisted_jan_tool_call(tool_server):
    """jan runs its own ``current_time`` at once: the call streams, then its step completes with the output."""
    client = sdk(tool_server)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "What time is it?"}])
        handler = Calls()
        async with client.beta.threads.runs.stream(
                thread_id=thread.id, assistant_id="jan", model=TOOL_MODEL, tools=[CURRENT_TIME],
                event_handler=handler, **forced("current_time")) as stream:
            await stream.until_done()
            run = await stream.get_final_run()
            steps = await stream.get_final_run_steps()
        assert run.status in ("completed", "incomplete"), run
        listed = [s async for s in client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")]
        [tools] = [s for s in listed if s.type == "tool_calls"]
        [call] = tools.step_details.tool_calls
        assert tools.status == "completed" and call.function.output  # jan ran it
        assert_heard(handler, call.id, "current_time", call.function.arguments)
        assert [s.id for s in steps] == [s.id for s in listed]
    await client.close()


async def test_a_call_cut_before_its_arguments_is_not_required_of_the_client(tool_server):
    """A forced call the token limit cut after its name, before any argument, has the arguments ``""``: it was taken
    for ``{}`` (a whole object) and the run went ``requires_action`` with a call the model never finished. Whatever
    the budget, a run puts to the client only calls whose arguments are whole, and one cut off ends ``incomplete``."""
    note = {"type": "function", "function": {"name": "save_note", "description": "Save a note", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
    cut_before_arguments = 0
    async with Client(tool_server.base_url) as api:
        for budget in range(1, 13):
            tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Note it"}]}))["id"]
            run = await api.ok("POST", f"/v1/threads/{tid}/runs", {
                "model": TOOL_MODEL, "tools": [note], **forced("save_note"), "max_completion_tokens": budget})
            run = await wait_for_run(api, tid, run["id"])
            steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps"))["data"]
            calls = [c for s in steps if s["type"] == "tool_calls" for c in s["step_details"]["tool_calls"]]
            cut_before_arguments += any(c["function"]["arguments"] == "" for c in calls)
            if run["status"] == "requires_action":
                for call in run["required_action"]["submit_tool_outputs"]["tool_calls"]:
                    assert isinstance(json.loads(call["function"]["arguments"]), dict), (budget, call)
            else:
                assert run["status"] == "incomplete", (budget, run)
                assert run["incomplete_details"] == {"reason": "max_completion_tokens"}, run
    assert cut_before_arguments  # (some budget did cut the call between its name and its arguments)


async def test_calls_the_token_limit_cut_end_their_step_cancelled(tool_server):
    """A call cut by ``max_completion_tokens`` streamed its pieces but is never run nor asked about: the run ends
    ``incomplete`` and the ``tool_calls`` step that told it ends ``cancelled`` (it did nothing), its output null."""
    note = {"type": "function", "function": {"name": "save_note", "description": "Save a note", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
    async with Client(tool_server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": "Note it"}]}))["id"]
        events = await streamed(api, f"/v1/threads/{tid}/runs", {
            "model": TOOL_MODEL, "tools": [note], **forced("save_note"), "max_completion_tokens": 30})
        run = events[-2][1]
        assert events[-2][0] == "thread.run.incomplete" and run["required_action"] is None, events[-2]
        steps = (await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}/steps?order=asc"))["data"]
        assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "cancelled"),
                                                             ("message_creation", "completed")], steps
        [call] = steps[0]["step_details"]["tool_calls"]
        assert call["function"]["name"] == "save_note" and call["function"]["output"] is None
        [told] = told_calls(events)[steps[0]["id"]]
        assert told["function"]["name"] == "save_note"
        assert told["function"]["arguments"] == call["function"]["arguments"]
        told_ends = [(name, data["id"]) for name, data in events if name.startswith("thread.run.step.")]
        assert ("thread.run.step.cancelled", steps[0]["id"]) in told_ends
        assert steps[1]["usage"] == run["usage"] and steps[0]["usage"]["total_tokens"] == 0  # counted once
