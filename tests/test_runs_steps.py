"""Run steps (OpenAI's ``GET /v1/threads/{thread_id}/runs/{run_id}/steps[/{step_id}]``): the ``message_creation``
step of each model turn that writes a message and the ``tool_calls`` step of the calls a turn made (a turn that only
calls tools has that step alone, as OpenAI's), the very objects the run's stream
carried (``thread.run.step.*``), kept with the run's record — after a restart too, none left ``in_progress`` that
nobody runs. Raw HTTP and the ``openai`` SDK; stories260K for plain runs, a tiny model with Qwen3's tool-calling
template and a real MCP server for tool runs."""

from __future__ import annotations

import warnings

import aiohttp
import pytest
from api_helpers import Client, RunStream, ServerProcess, message_text, parse_sse, post_streamed_run, running
from run_helpers import run_to_end, streamed, streamed_steps, until_writing

from jan.testing.gguf_models import write_qwen3_tool_model
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

pytestmark = pytest.mark.timeout(600)

STORY = "Once upon a time there was a little girl named Lily who loved to play outside"
LIST = {"type": "function", "function": {"name": "notes__list_notes"}}
#: The fields of OpenAI's run step object.
STEP_FIELDS = {"id", "object", "created_at", "assistant_id", "thread_id", "run_id", "type", "status", "step_details",
               "last_error", "expired_at", "cancelled_at", "failed_at", "completed_at", "metadata", "usage"}
ZERO = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.fixture(scope="module")
def story_server(tmp_path_factory, stories_path):
    # a context long enough that a run told to fill it is still going when a cancel comes
    with running(tmp_path_factory.mktemp("steps") / "data", stories_path, n_ctx=8192, n_parallel=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory, vocab_dir):
    tmp = tmp_path_factory.mktemp("tool-steps")
    model = write_qwen3_tool_model(tmp / "qwen3-tools.gguf")
    write_mcp_config(tmp / "data", {"notes": stdio_entry(notes_folder(tmp))})
    with running(tmp / "data", model, n_ctx=2048) as srv:
        yield srv


async def story_thread(api: Client) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user", "content": STORY}]}))["id"]


async def notes_thread(api: Client, approval: str | None = "never") -> str:
    """A thread whose assistant has the notes server's list_notes (run at once, or asked about when ``approval``
    is None)."""
    tool = {"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"],
            **({"require_approval": approval} if approval else {})}
    assistant = await api.ok("POST", "/v1/assistants", {"name": "Notes", "model": "qwen3-tools", "tools": [tool]})
    thread = await api.ok("POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                  "messages": [{"role": "user", "content": "What notes do I have?"}]})
    return thread["id"]


def tool_run(**extra) -> dict:
    return {"tool_choice": LIST, "max_tokens": 60, "temperature": 0, "parallel_tool_calls": False, **extra}


async def steps_of(api: Client, tid: str, run_id: str, query: str = "?order=asc") -> list[dict]:
    return (await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps{query}"))["data"]


async def assert_routes_tell(api: Client, tid: str, run_id: str, streamed_last: dict[str, dict]) -> list[dict]:
    """The steps routes answer exactly the objects the stream left: same ids, same order, same content."""
    listed = await steps_of(api, tid, run_id)
    assert [s["id"] for s in listed] == list(streamed_last)
    assert listed == list(streamed_last.values())
    for step in listed:
        assert await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}/steps/{step['id']}") == step
    return listed


# -- a plain run: one message_creation step ----------------------------------------------------------------------
async def test_a_runs_one_turn_is_a_message_creation_step_as_streamed(story_server):
    async with Client(story_server.base_url) as api:
        tid = await story_thread(api)
        events = await streamed(api, f"/v1/threads/{tid}/runs", {"max_tokens": 12})
        run = events[-2][1]
        [step] = await assert_routes_tell(api, tid, run["id"], streamed_steps(events, STEP_FIELDS))
        assert step["id"].startswith("step_") and step["type"] == "message_creation" and step["status"] == "completed"
        assert (step["thread_id"], step["run_id"], step["assistant_id"]) == (tid, run["id"], "jan")
        assert step["step_details"] == {"type": "message_creation", "message_creation": {"message_id": run["message_id"]}}
        assert step["created_at"] <= step["completed_at"] and step["metadata"] == {}
        assert step["cancelled_at"] is step["failed_at"] is step["expired_at"] is step["last_error"] is None
        assert step["usage"] == run["message"]["metadata"]["usage"] == run["usage"]  # one turn: the run's

        # not streamed: the same, read back after the answer
        run = await run_to_end(api, f"/v1/threads/{await story_thread(api)}/runs", {"max_tokens": 4})
        [step] = await steps_of(api, run["thread_id"], run["id"])
        assert step["step_details"]["message_creation"]["message_id"] == run["message_id"]
        assert step["status"] == "completed" and step["usage"] == run["usage"]


async def test_a_failed_and_a_cancelled_run_end_their_step_so(story_server):
    async with Client(story_server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {"messages": [{"role": "user",
                                                                  "content": "the cat sat on the mat " * 1500}]}))["id"]
        events = await streamed(api, f"/v1/threads/{tid}/runs", {})  # over the context
        run = events[-2][1]
        assert run["status"] == "failed"
        [step] = await assert_routes_tell(api, tid, run["id"], streamed_steps(events, STEP_FIELDS))
        assert step["status"] == "failed" and step["failed_at"] and step["last_error"] == run["last_error"]
        assert step["completed_at"] is None and step["usage"] == ZERO

        tid = await story_thread(api)
        run = await api.ok("POST", f"/v1/threads/{tid}/runs", {"max_tokens": 20000, "ignore_eos": True,
                                                               "background": True})
        await until_writing(api, tid, run["id"])  # (cancelled before it wrote anything, it would have no step)
        await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        [step] = await steps_of(api, tid, run["id"])
        assert step["status"] == "cancelled" and step["cancelled_at"] and step["completed_at"] is None


# -- tool runs: both kinds of step ----------------------------------------------------------------------------------
async def test_a_tool_loop_is_tool_calls_then_message_as_streamed(tool_server):
    async with Client(tool_server.base_url) as api:
        tid = await notes_thread(api)
        events = await streamed(api, f"/v1/threads/{tid}/runs", tool_run())
        run = events[-2][1]
        assert run["status"] in ("completed", "incomplete"), run
        tools, answer = await assert_routes_tell(api, tid, run["id"], streamed_steps(events, STEP_FIELDS))
        # the thread keeps the calling turn and the result (the next turn's history): Jan's ?all=true lists them
        msgs = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&all=true"))["data"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        # the calling turn wrote nothing but its call: no message_creation step, no message event (OpenAI's runs)
        assert [s["type"] for s in (tools, answer)] == ["tool_calls", "message_creation"]
        assert all(s["status"] == "completed" for s in (tools, answer))
        assert not [n for n, d in events if n.startswith("thread.message.") and d.get("id") == msgs[1]["id"]]
        assert answer["step_details"]["message_creation"]["message_id"] == msgs[3]["id"] == run["message_id"]
        [call] = tools["step_details"]["tool_calls"]
        assert call["id"] == msgs[1]["metadata"]["tool_calls"][0]["id"] == msgs[2]["metadata"]["tool_call_id"]
        assert call["type"] == "function" and call["function"]["name"] == "notes__list_notes"
        assert call["function"]["output"] == message_text(msgs[2]) == "shopping.txt\ntodo.txt"
        assert call["approved_by"] == "policy" and call["duration_ms"] >= 0
        # each turn counted once: the calling turn's usage is its tool_calls step's
        assert tools["usage"] == msgs[1]["metadata"]["usage"]
        assert answer["usage"] == msgs[3]["metadata"]["usage"]
        summed = {k: sum(s["usage"][k] for s in (tools, answer)) for k in ZERO}
        assert summed == {k: run["usage"][k] for k in ZERO}
        # the stream's order: each step is created before what it makes
        names = [(n, d.get("id") if isinstance(d, dict) else d) for n, d in events]
        assert names.index(("thread.run.step.created", answer["id"])) < names.index(("thread.message.created", msgs[3]["id"]))
        assert names.index(("thread.message.created", msgs[3]["id"])) < names.index(("thread.message.delta", msgs[3]["id"]))
        assert names.index(("thread.message.incomplete" if run["status"] == "incomplete" else "thread.message.completed",
                            msgs[3]["id"])) < names.index(("thread.run.step.completed", answer["id"]))


async def test_a_tool_calls_step_waits_with_its_run_and_completes_with_the_outputs(tool_server):
    async with Client(tool_server.base_url) as api:
        tid = await notes_thread(api, approval=None)  # approval: always
        events = await streamed(api, f"/v1/threads/{tid}/runs", tool_run())
        run = events[-2][1]
        assert events[-2][0] == "thread.run.requires_action"
        [waiting] = await assert_routes_tell(api, tid, run["id"], streamed_steps(events, STEP_FIELDS))
        assert waiting["status"] == "in_progress"
        [call] = waiting["step_details"]["tool_calls"]
        assert call["id"] == run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
        assert call["function"]["output"] is None and waiting["usage"] is None and waiting["completed_at"] is None

        submitted = await streamed(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                   {"tool_outputs": [{"tool_call_id": call["id"], "approve": True}]})
        assert submitted[-2][0] in ("thread.run.completed", "thread.run.incomplete")
        later = streamed_steps(submitted, STEP_FIELDS)
        assert list(later)[0] == waiting["id"]  # the step the run waited in completes first
        steps = await assert_routes_tell(api, tid, run["id"], later)
        done = steps[0]
        assert done["status"] == "completed" and done["completed_at"] >= done["created_at"]
        assert done["step_details"]["tool_calls"][0]["function"]["output"] == "shopping.txt\ntodo.txt"
        assert done["step_details"]["tool_calls"][0]["approved_by"] == "user"
        assert done["usage"] == run["usage"]  # the calling turn's: all the run had used while it waited
        assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]

        # cancelled while it waits: the step ends cancelled
        tid = await notes_thread(api, approval=None)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run())
        assert run["status"] == "requires_action"
        await api.ok("POST", f"/v1/threads/{tid}/runs/{run['id']}/cancel")
        [waiting] = await steps_of(api, tid, run["id"])
        assert waiting["status"] == "cancelled" and waiting["cancelled_at"] and waiting["completed_at"] is None
        assert waiting["step_details"]["tool_calls"][0]["function"]["output"] is None


async def test_listing_pages_as_openai_lists_and_refuses_what_it_cannot_answer(tool_server):
    async with Client(tool_server.base_url) as api:
        tid = await notes_thread(api)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run())
        base = f"/v1/threads/{tid}/runs/{run['id']}/steps"
        oldest_first = await steps_of(api, tid, run["id"])
        ids = [s["id"] for s in oldest_first]
        assert len(ids) == 2  # the calls' tool_calls step, the answer's message_creation step
        page = await api.ok("GET", base)  # newest first, as OpenAI's
        assert page["object"] == "list" and [s["id"] for s in page["data"]] == ids[::-1]
        assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[1], ids[0], False)
        page = await api.ok("GET", f"{base}?limit=1")
        assert [s["id"] for s in page["data"]] == [ids[1]] and page["has_more"] is True
        page = await api.ok("GET", f"{base}?limit=1&after={ids[1]}")
        assert [s["id"] for s in page["data"]] == [ids[0]] and page["has_more"] is False
        page = await api.ok("GET", f"{base}?order=asc&after={ids[0]}")
        assert [s["id"] for s in page["data"]] == ids[1:] and page["has_more"] is False
        page = await api.ok("GET", f"{base}?order=asc&before={ids[1]}&limit=1")
        assert [s["id"] for s in page["data"]] == [ids[0]] and page["has_more"] is False
        page = await api.ok("GET", f"{base}?before={ids[0]}&limit=1")
        assert [s["id"] for s in page["data"]] == [ids[1]] and page["has_more"] is False
        page = await api.ok("GET", f"{base}?include[]=step_details.tool_calls[*].file_search.results[*].content")
        assert len(page["data"]) == 2  # OpenAI's file_search results: a run of jan has none

        for query, param in (("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"),
                             ("order=sideways", "order"), ("after=step_nope", "after"), ("before=step_nope", "before")):
            got, err = await api.get(f"{base}?{query}")
            assert got == 400 and err["error"]["param"] == param and err["error"]["type"] == "invalid_request_error", err

        other = await notes_thread(api)
        for path, param in ((f"/v1/threads/thread_nope/runs/{run['id']}/steps", None),
                            (f"/v1/threads/{other}/runs/{run['id']}/steps", "run_id"),
                            (f"/v1/threads/{tid}/runs/run_nope/steps", "run_id"),
                            (f"/v1/threads/{tid}/runs/run_nope/steps/{ids[0]}", "run_id"),
                            (f"{base}/step_nope", "step_id"),
                            (f"/v1/threads/{other}/runs/{run['id']}/steps/{ids[0]}", "run_id")):
            got, err = await api.get(path)
            assert got == 404 and set(err["error"]) == {"message", "type", "param", "code"}, (path, err)
            assert err["error"]["code"] == "not_found" and err["error"]["param"] == param, (path, err)


async def test_the_openai_sdk_lists_and_retrieves_steps(tool_server):
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=tool_server.base_url + "/v1", api_key="unused")
    async with Client(tool_server.base_url) as api:
        tid = await notes_thread(api)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run())
        raw = await steps_of(api, tid, run["id"], "?order=desc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        steps = client.beta.threads.runs.steps
        page = await steps.list(run["id"], thread_id=tid)
        assert [s.id for s in page.data] == [s["id"] for s in raw] and not page.has_more
        # the SDK's pagination follows the cursors one step at a time
        assert [s.id async for s in steps.list(run["id"], thread_id=tid, limit=1)] == [s["id"] for s in raw]
        assert [s.id async for s in steps.list(run["id"], thread_id=tid, order="asc")] == [s["id"] for s in raw][::-1]
        answer, tools = page.data
        assert answer.type == "message_creation" and tools.type == "tool_calls"
        assert answer.step_details.message_creation.message_id == run["message_id"]
        [call] = tools.step_details.tool_calls
        assert call.type == "function" and call.function.name == "notes__list_notes"
        assert call.function.output == "shopping.txt\ntodo.txt"
        assert tools.usage.total_tokens == tools.usage.prompt_tokens + tools.usage.completion_tokens > 0
        got = await steps.retrieve(tools.id, thread_id=tid, run_id=run["id"])
        assert got.model_dump() == tools.model_dump() and got.status == "completed" and got.run_id == run["id"]
        with pytest.raises(openai.NotFoundError):
            await steps.retrieve("step_nope", thread_id=tid, run_id=run["id"])
    await client.close()


# -- a restart: the steps are on disk ------------------------------------------------------------------------------
async def test_steps_outlive_the_process_and_a_killed_runs_step_is_not_left_in_progress(tmp_path, stories_path):
    data = tmp_path / "data"
    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            tid = await story_thread(api)
            done = await run_to_end(api, f"/v1/threads/{tid}/runs", {"max_tokens": 8})
            before = await steps_of(api, tid, done["id"])
            cut_tid = await story_thread(api)
        stream, started = RunStream(), None
        async with aiohttp.ClientSession() as session:
            resp = await post_streamed_run(session, proc.base_url, cut_tid, 1500)
            async for raw in resp.content:
                line = stream.feed(raw)
                if line.startswith("data: {") and '"thread.run.step"' in line:
                    started = parse_sse(line)[0][1]
                if stream.text:  # generating: its step was saved before its message was told
                    break
                assert "thread.run.completed" not in line, "the run ended before the kill; make it longer"
            proc.kill()
            resp.close()
    assert started is not None and stream.run_id and stream.message_id

    with ServerProcess(data, stories_path, n_ctx=8192) as proc:
        async with Client(proc.base_url) as api:
            assert await steps_of(api, tid, done["id"]) == before  # as they were
            run = await api.ok("GET", f"/v1/threads/{cut_tid}/runs/{stream.run_id}")
            assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "interrupted"}
            [cut] = await steps_of(api, cut_tid, stream.run_id)
            assert cut["id"] == started["id"] and cut["created_at"] == started["created_at"]
            assert cut["step_details"]["message_creation"]["message_id"] == stream.message_id
            assert cut["status"] == "cancelled" and cut["cancelled_at"] and cut["completed_at"] is None
            assert cut["usage"] is not None
            # resuming goes on in the same message: a step of its own, which completes
            resumed = await run_to_end(api, f"/v1/threads/{cut_tid}/runs/{stream.run_id}/resume", {})
            assert resumed["status"] in ("completed", "incomplete"), resumed
            first, second = await steps_of(api, cut_tid, stream.run_id)
            assert first == cut and second["status"] == "completed"
            assert second["step_details"]["message_creation"]["message_id"] == stream.message_id
            assert second["usage"] == resumed["message"]["metadata"]["usage"]
