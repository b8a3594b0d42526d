"""A run's ``max_prompt_tokens`` (OpenAI's): a budget that all the run's model turns' prompts draw on.

Each turn's prompt is fitted to what the earlier turns left of it with the run's truncation strategy (the oldest
turns dropped, :mod:`jan.services.fit`); when even the shortest prompt allowed does not fit, that turn is not
started and the run ends ``incomplete`` with ``incomplete_details.reason: "max_prompt_tokens"``. OpenAI refuses a
budget under 256.

Two tiny random-weight models with real chat templates: Mistral Nemo's (which wants a shortened conversation to
start at a user turn), in a context (1024) larger than the budgets, so that it is the budget that shortens; and
Qwen3's tool-calling one (calls forced with ``tool_choice``) for runs of several turns.
"""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, message_text, parse_sse, running
from jan.server.routes.runs import object_of
from jan.services.runs import run_from_record, run_record
from jan.testing.gguf_models import write_qwen3_tool_model, write_strict_chat_model
from mcp_helpers import notes_folder, stdio_entry, write_mcp_config
from run_helpers import run_to_end

pytestmark = pytest.mark.timeout(600)

MODEL = "nemo-tiny"
N_CTX = 1024
BUDGET = 256  # OpenAI's least
SYSTEM = "You are a terse narrator called Quill."
LAST = "Finally tell me the ending of the lighthouse story."


def _turn(i: int) -> str:
    # ~40 tokens each: the dozen of conversation() is over the budget and well within the context
    return f"Question {i}: " + " ".join(f"the keeper number {i} climbed stair {k}" for k in range(5))


def conversation(pairs: int = 12) -> list[dict]:
    messages = []
    for i in range(pairs):
        messages += [{"role": "user", "content": _turn(i)}, {"role": "assistant", "content": f"Answer {i}."}]
    return messages + [{"role": "user", "content": LAST}]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("budget") / "data"


@pytest.fixture(scope="module")
def server(data, vocab_dir):
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    path = write_strict_chat_model(data.parent / f"{MODEL}.gguf")
    with running(data, path, n_ctx=N_CTX) as srv:
        yield srv


async def new_thread(api: Client, messages: list[dict]) -> str:
    return (await api.ok("POST", "/v1/threads", {"messages": messages}))["id"]


async def messages_of(api: Client, tid: str) -> list[dict]:
    # all: the calling turns and tool results too (OpenAI's list leaves them to the run steps)
    return (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100&all=true"))["data"]


async def n_tokens(api: Client, model: str, messages: list[dict], tools: list | None = None) -> int:
    """The tokens of the prompt ``messages`` render to, as the fitting counts them (no BOS)."""
    body = {"model": model, "messages": messages, **({"tools": tools} if tools else {})}
    prompt = (await api.ok("POST", "/v1/apply-template", body))["prompt"]
    tokens = await api.ok("POST", "/v1/tokenize", {"model": model, "content": prompt, "add_special": False,
                                                  "parse_special": True})
    return len(tokens["tokens"])


async def streamed(api: Client, path: str, body: dict) -> list[tuple[str | None, object]]:
    async with api.session.post(api.base + path, json={**body, "stream": True}) as resp:
        assert resp.status == 200, await resp.text()
        return parse_sse(await resp.text())


# -- the field -------------------------------------------------------------------------------------
async def test_a_budget_under_256_is_a_400_naming_the_field_and_nothing_is_written(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": "Hi"}])
        for value in (255, 0, -1, "300", 2**31):
            got, err = await api.post(f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": value})
            assert got == 400, (value, err)
            assert err["error"]["param"] == "max_prompt_tokens" and err["error"]["type"] == "invalid_request_error"
        got, err = await api.post(f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": 100})
        assert "256" in err["error"]["message"] and err["error"]["code"] == "invalid_value"  # says the least value
        assert (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"] == []
        assert [m["role"] for m in await messages_of(api, tid)] == ["user"]
        threads = len((await api.ok("GET", "/v1/threads?limit=100"))["data"])
        got, err = await api.post("/v1/threads/runs", {"model": MODEL, "max_prompt_tokens": 100,
                                                       "thread": {"messages": [{"role": "user", "content": "Hi"}]}})
        assert got == 400 and err["error"]["param"] == "max_prompt_tokens"
        assert len((await api.ok("GET", "/v1/threads?limit=100"))["data"]) == threads  # no thread left behind
        # null is "not given", as for every optional field
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": None,
                                                               "max_tokens": 2})
        assert run["max_prompt_tokens"] is None


async def test_the_budget_is_echoed_and_kept_in_the_run_store(server, data):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, [{"role": "user", "content": "Hi"}])
        events = await streamed(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": 300,
                                                                 "max_tokens": 2, "temperature": 0})
        created = next(data for name, data in events if name == "thread.run.created")
        # what the budget is spent on is OpenAI's usage.prompt_tokens (the run's, all turns'): nothing yet
        assert created["max_prompt_tokens"] == 300 and created["usage"] is None
        assert "prompt_tokens_used" not in created
        run_id = created["id"]
        run = await api.ok("GET", f"/v1/threads/{tid}/runs/{run_id}")
        assert run["max_prompt_tokens"] == 300 and run["status"] in ("completed", "incomplete")
        assert 0 < run["usage"]["prompt_tokens"] <= 300 and "prompt_tokens_used" not in run  # one turn: its prompt
        [listed] = (await api.ok("GET", f"/v1/threads/{tid}/runs"))["data"]
        assert listed["max_prompt_tokens"] == 300 and listed["usage"] == run["usage"]
        # what a later process reads back (GET of a run it does not hold, resume, the list of runs)
        record = json.loads((data / "threads" / tid / "runs" / f"{run_id}.json").read_text(encoding="utf-8"))
        assert "prompt_tokens_used" not in record
        again = object_of(run_record(run_from_record(record)))
        assert again["max_prompt_tokens"] == 300 and again["usage"] == run["usage"]
        assert again["incomplete_details"] == run["incomplete_details"]
        # a record written before (with a separate count, or none) loads; the usage is what counts
        older = {k: v for k, v in record.items() if k != "incomplete_reason"}
        for extra in ({}, {"prompt_tokens_used": 7}):
            again = object_of(run_record(run_from_record({**older, **extra})))
            assert again["usage"] == run["usage"] and "prompt_tokens_used" not in again
            assert again["incomplete_details"] == (None if run["status"] == "completed"
                                                   else {"reason": "max_completion_tokens"})
        # and a run without one says so
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_tokens": 2})
        assert run["max_prompt_tokens"] is None and run["usage"]["prompt_tokens"] > 0


# -- fitting each prompt to the budget ---------------------------------------------------------------
async def test_a_long_thread_is_shortened_to_the_budget_and_answered(server):
    async with Client(server.base_url) as api:
        messages = conversation()
        body = {"model": MODEL, "instructions": SYSTEM, "max_tokens": 2, "temperature": 0}
        whole = await run_to_end(api, f"/v1/threads/{await new_thread(api, messages)}/runs", body)
        assert whole["usage"]["prompt_tokens"] > BUDGET  # the context holds it all: no budget, nothing dropped

        tid = await new_thread(api, messages)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**body, "max_prompt_tokens": BUDGET})
        assert run["status"] in ("completed", "incomplete"), run
        assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"})  # answered, not refused
        assert run["message"]["status"] == run["status"]  # (a reply max_tokens cut is incomplete, as its run)
        used = run["usage"]["prompt_tokens"]
        assert 0 < used <= BUDGET and run["message"]["metadata"]["usage"] == run["usage"]  # one turn
        # it starts at the earliest user turn whose prompt fits (the system message and the last turn kept)
        system = [{"role": "system", "content": SYSTEM}]
        sizes = [await n_tokens(api, MODEL, system + messages[start:]) for start in range(0, len(messages), 2)]
        kept = max(n for n in sizes if n + 1 <= BUDGET)  # + 1: a BOS the fitting reserves
        assert used in (kept, kept + 1), (used, sizes)
        assert kept != sizes[-1]  # more than the last turn stays
        # nothing of the thread was deleted: only the prompt was shortened
        assert len(await messages_of(api, tid)) == len(messages) + 1


async def test_last_messages_are_fitted_to_the_budget_too(server):
    async with Client(server.base_url) as api:
        body = {"model": MODEL, "instructions": SYSTEM, "max_tokens": 2, "temperature": 0,
                "truncation_strategy": {"type": "last_messages", "last_messages": 21}}
        # (a thread each: Mistral's template refuses a conversation that a previous reply makes start with it)
        run = await run_to_end(api, f"/v1/threads/{await new_thread(api, conversation())}/runs", body)
        assert run["usage"]["prompt_tokens"] > BUDGET, run  # 21 messages, as many as asked
        run = await run_to_end(api, f"/v1/threads/{await new_thread(api, conversation())}/runs",
                               {**body, "max_prompt_tokens": BUDGET})
        assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), run
        assert 0 < run["usage"]["prompt_tokens"] <= BUDGET
        assert run["truncation_strategy"] == {"type": "last_messages", "last_messages": 21}


# -- a budget too small ----------------------------------------------------------------------------------
def long_last_turn() -> list[dict]:
    messages = conversation(2)
    messages[-1] = {"role": "user", "content": " ".join(["lighthouse keeper"] * 60)}  # ~300 tokens
    return messages


async def test_a_budget_too_small_for_the_last_turn_ends_the_run_incomplete(server):
    async with Client(server.base_url) as api:
        messages = long_last_turn()
        tid = await new_thread(api, messages)
        assert BUDGET < await n_tokens(api, MODEL, messages[-1:]) < N_CTX // 2  # over the budget, not the context
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": BUDGET,
                                                               "max_tokens": 2})
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert run["completed_at"] is not None and run["last_error"] is None and run["required_action"] is None
        assert run["max_prompt_tokens"] == BUDGET and "prompt_tokens_used" not in run
        assert run["usage"]["prompt_tokens"] == 0 and run["usage"]["completion_tokens"] == 0
        # the reply was never started: its message is empty and says why, and nothing is left pending
        reply = run["message"]
        assert reply["id"] == run["message_id"] and reply["status"] == "incomplete" and reply["content"] == []
        assert reply["incomplete_details"] == {"reason": "max_tokens"}  # (stored: stopped)
        assert reply["metadata"]["stop_reason"] == "max_prompt_tokens" and "usage" not in reply["metadata"]
        saved = await messages_of(api, tid)
        assert [m["role"] for m in saved] == [m["role"] for m in messages] + ["assistant"]
        assert not [m for m in saved if m["status"] == "in_progress"] and saved[-1]["id"] == reply["id"]
        fetched = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert fetched["status"] == "incomplete" and fetched["incomplete_details"] == {"reason": "max_prompt_tokens"}
        # the thread is free and answerable: a run with room for the turn answers it
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": 512,
                                                               "max_tokens": 2})
        assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), run
        assert BUDGET < run["usage"]["prompt_tokens"] <= 512 and run["message"]["status"] == run["status"]


async def test_a_streamed_run_over_its_budget_ends_as_a_run_cut_by_max_completion_tokens(server):
    async with Client(server.base_url) as api:
        tid = await new_thread(api, long_last_turn())
        events = await streamed(api, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_prompt_tokens": BUDGET})
        names = [name for name, _ in events]
        # (queued until the run made its step: jan's budget check, no engine, ended the turn)
        assert names == ["thread.run.created", "thread.run.queued", "thread.run.in_progress", "thread.run.step.created",
                         "thread.run.step.in_progress", "thread.message.created", "thread.message.in_progress",
                         "thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete", "done"]
        message, step, run = events[7][1], events[8][1], events[9][1]
        # the turn was never started: its step ends with the run, having used nothing
        assert step["step_details"]["message_creation"]["message_id"] == message["id"] and step["status"] == "completed"
        assert step["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        assert message["status"] == "incomplete" and message["metadata"]["stop_reason"] == "max_prompt_tokens"
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert run["message"]["id"] == message["id"]
        # a run cut by its other limit ends the same way: the message, then thread.run.incomplete, then done
        cut = await streamed(api, f"/v1/threads/{await new_thread(api, conversation(1))}/runs",
                             {"model": MODEL, "max_tokens": 2, "ignore_eos": True})
        assert [name for name, _ in cut][-4:] == ["thread.message.incomplete", "thread.run.step.completed",
                                                  "thread.run.incomplete", "done"]
        assert cut[-2][1]["incomplete_details"] == {"reason": "max_completion_tokens"}


async def test_create_thread_and_run_over_its_budget_keeps_the_thread(server):
    async with Client(server.base_url) as api:
        events = await streamed(api, "/v1/threads/runs", {"model": MODEL, "max_prompt_tokens": BUDGET,
                                                          "thread": {"messages": long_last_turn()}})
        assert [name for name, _ in events][:2] == ["thread.created", "thread.run.created"]
        thread, run = events[0][1], events[-2][1]
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert run["thread_id"] == thread["id"] and run["max_prompt_tokens"] == BUDGET
        assert (await api.ok("GET", f"/v1/threads/{thread['id']}"))["id"] == thread["id"]


# -- runs of several model turns (tool calls): their prompts add up ---------------------------------------
TOOL_MODEL = "qwen3-tools"
PING = {"type": "function", "function": {"name": "ping", "description": "Ping the host",
                                         "parameters": {"type": "object", "properties": {}}}}
LIST = {"type": "function", "function": {"name": "notes__list_notes"}}
ASK = [{"role": "user", "content": "Is the host up?"}]


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory, vocab_dir):
    tmp = tmp_path_factory.mktemp("budget-tools")
    model = write_qwen3_tool_model(tmp / f"{TOOL_MODEL}.gguf")
    write_mcp_config(tmp / "data", {"notes": stdio_entry(notes_folder(tmp))})
    with running(tmp / "data", model, n_ctx=2048) as srv:
        yield srv


def tool_run(tools: list, choice: str, **extra) -> dict:
    return {"model": TOOL_MODEL, "tools": tools, "tool_choice": {"type": "function", "function": {"name": choice}},
            "parallel_tool_calls": False, "max_tokens": 60, "temperature": 0, **extra}


#: The notes MCP server's list_notes, run without approval: a run of two model turns (the call, the answer).
NOTES = [{"type": "mcp", "server_label": "notes", "allowed_tools": ["list_notes"], "require_approval": "never"}]


def notes_run(**extra) -> dict:
    return tool_run(NOTES, "notes__list_notes", **extra)


async def unlimited_notes_run(api: Client) -> tuple[dict, dict, dict]:
    """A notes run on a new thread without limits: the run, and its two turns' own usages (the calling reply's,
    the answer's)."""
    tid = await new_thread(api, ASK)
    run = await run_to_end(api, f"/v1/threads/{tid}/runs", notes_run())
    calling, answer = [m for m in await messages_of(api, tid) if m["role"] == "assistant"]
    return run, calling["metadata"]["usage"], answer["metadata"]["usage"]


async def test_a_tool_loop_spends_the_budget_over_its_turns_and_stops_before_one_that_does_not_fit(tool_server):
    async with Client(tool_server.base_url) as api:
        # without a budget: two turns, the call and the answer after its result; each reply tells its own turn's
        # usage, the run's is their sum (OpenAI's: "over the course of the run")
        run, calling, answer = await unlimited_notes_run(api)
        first, second = calling["prompt_tokens"], answer["prompt_tokens"]
        assert run["step"] == 1 and 0 < first < second, run
        assert run["usage"]["prompt_tokens"] == first + second
        budget = max(BUDGET, first + second // 2)  # room for the first turn, not for both
        assert budget < first + second

        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", notes_run(max_prompt_tokens=budget))
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}, run
        assert run["usage"]["prompt_tokens"] == first <= budget and run["step"] == 1
        saved = await messages_of(api, tid)
        # the call was made and answered; the turn after it was not started
        assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert saved[1]["metadata"]["tool_calls"] and message_text(saved[2]) == "shopping.txt\ntodo.txt"
        assert saved[3]["status"] == "incomplete" and saved[3]["content"] == [] and saved[3]["id"] == run["message_id"]
        assert not [m for m in saved if m["status"] == "in_progress"]

        # with room for both, the same run answers, and the budget counted both prompts
        run = await run_to_end(api, f"/v1/threads/{await new_thread(api, ASK)}/runs",
                               notes_run(max_prompt_tokens=first + second + 64))
        assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), run
        last = run["message"]["metadata"]["usage"]["prompt_tokens"]
        assert run["usage"]["prompt_tokens"] == first + last <= first + second + 64


#: A submit_tool_outputs leg whose next turn is not started: the tool_calls step the run waited in completes, the
#: turn's message_creation step and its (empty) message come and go, the run ends.
SUBMITTED_THEN_NOT_STARTED = ["thread.run.in_progress", "thread.run.step.completed", "thread.run.step.created",
                              "thread.run.step.in_progress", "thread.message.created", "thread.message.in_progress",
                              "thread.message.incomplete", "thread.run.step.completed", "thread.run.incomplete",
                              "done"]


async def test_the_budget_holds_across_submit_tool_outputs(tool_server):
    async with Client(tool_server.base_url) as api:
        first_estimate = await n_tokens(api, TOOL_MODEL, ASK, [PING])
        output = " ".join(f"host {k} answered in {k} ms" for k in range(120))  # a long result: ~700 tokens
        budget = max(BUDGET, first_estimate + 300)  # the first prompt and 300 more: not the result
        # what is left after the first prompt cannot hold the second, which holds the first (a tool output too long
        # for what is left is cut to fit it: tests/test_tool_output_fit.py; so no output makes this case)
        tight = max(BUDGET, first_estimate + 10)
        assert tight - first_estimate < first_estimate
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run([PING], "ping", max_prompt_tokens=tight))
        assert run["status"] == "requires_action", run
        first = run["usage"]["prompt_tokens"]  # the calling turn's: so far the run's
        assert 0 < first <= tight and run["max_prompt_tokens"] == tight
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        events = await streamed(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": output}]})
        assert [name for name, _ in events] == SUBMITTED_THEN_NOT_STARTED
        done = await api.ok("GET", f"/v1/threads/{tid}/runs/{run['id']}")
        assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert done["usage"]["prompt_tokens"] == first  # the turn not started used nothing
        saved = await messages_of(api, tid)
        assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert message_text(saved[2]) == output and saved[3]["status"] == "incomplete"

        # with room for the turn, the long result is cut to fit what is left (the thread keeps it whole)
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run([PING], "ping", max_prompt_tokens=budget))
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": output}]})
        assert done["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), done
        assert done["usage"]["prompt_tokens"] <= budget
        assert message_text((await messages_of(api, tid))[2]) == output

        # a short result fits what is left: the run answers, both prompts counted
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run([PING], "ping", max_prompt_tokens=budget))
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        done = await run_to_end(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": "up"}]})
        assert done["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), done
        last = done["message"]["metadata"]["usage"]["prompt_tokens"]
        assert done["usage"]["prompt_tokens"] == run["usage"]["prompt_tokens"] + last <= budget


# -- an engine that renders its own prompts ------------------------------------------------------------
async def test_a_remote_model_cannot_be_fitted_and_a_run_over_its_budget_ends_incomplete(server, tmp_path):
    """A model on a remote engine (here: this module's server, behind another jan) gets the whole thread: jan
    cannot render its prompt to fit it. The turns' reported usage is counted all the same: a run that used more
    than its budget ends incomplete, its answer kept."""
    from jan.store import DataFolder

    front_data = tmp_path / "front"
    DataFolder(front_data).models.create({
        "id": "remote-nemo", "engine": "openai", "parameters": {"temperature": 0},
        "settings": {"base_url": server.base_url + "/v1", "model": MODEL, "api_key": "unused"}})
    with running(front_data) as front:
        async with Client(front.base_url) as api:
            body = {"model": "remote-nemo", "max_tokens": 2, "max_prompt_tokens": BUDGET}
            run = await run_to_end(api, f"/v1/threads/{await new_thread(api, conversation())}/runs", body)
            assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}, run
            assert run["usage"]["prompt_tokens"] > BUDGET and "prompt_tokens_used" not in run
            # the reply is whole or cut by max_tokens (OpenAI's incomplete): the prompt budget did not cut it
            cut = run["message"]["metadata"]["finish_reason"] == "length"
            assert run["message"]["status"] == ("incomplete" if cut else "completed")
            assert run["message"]["metadata"]["usage"] == run["usage"]
            # within its budget, the same model answers as any run
            run = await run_to_end(api, f"/v1/threads/{await new_thread(api, conversation(1))}/runs", body)
            assert run["incomplete_details"] in (None, {"reason": "max_completion_tokens"}), run
            assert 0 < run["usage"]["prompt_tokens"] <= BUDGET


# -- max_completion_tokens: also the whole run's ---------------------------------------------------------------
async def test_max_completion_tokens_is_shared_by_a_tool_loops_turns(tool_server):
    """OpenAI's ``max_completion_tokens``: "the maximum number of completion tokens that may be used over the course
    of the run". Each turn may generate what the earlier ones left; a turn with nothing left is not started."""
    async with Client(tool_server.base_url) as api:
        run, calling, answer = await unlimited_notes_run(api)
        first, second = calling["completion_tokens"], answer["completion_tokens"]
        assert run["usage"]["completion_tokens"] == first + second and second > 3, run

        # room for the call and 3 tokens more: the answer gets those 3, and the run ends cut by the limit
        limit = first + 3
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**notes_run(),
                                                               "max_completion_tokens": limit})
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_completion_tokens"}, run
        assert run["max_completion_tokens"] == limit and run["usage"]["completion_tokens"] == limit
        saved = await messages_of(api, tid)
        assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert saved[3]["metadata"]["usage"]["completion_tokens"] == 3 and saved[3]["status"] == "incomplete"
        assert saved[3]["metadata"]["finish_reason"] == "length"

        # room for the call only: the call runs, the turn after its result is not started
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**notes_run(),
                                                               "max_completion_tokens": first})
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_completion_tokens"}, run
        assert run["usage"]["completion_tokens"] == first <= run["max_completion_tokens"]
        assert run["last_error"] is None and run["required_action"] is None and run["step"] == 1
        saved = await messages_of(api, tid)
        assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert saved[1]["metadata"]["tool_calls"] and message_text(saved[2]) == "shopping.txt\ntodo.txt"
        reply = saved[3]
        assert reply["id"] == run["message_id"] and reply["status"] == "incomplete" and reply["content"] == []
        assert reply["metadata"]["stop_reason"] == "max_completion_tokens" and "usage" not in reply["metadata"]
        assert not [m for m in saved if m["status"] == "in_progress"]
        # the thread is free: a question and a run answer it (the empty reply left out of the prompt)
        await api.ok("POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": "And now?"})
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", notes_run(tool_choice="none"))
        assert run["status"] in ("completed", "incomplete") and run["last_error"] is None, run


async def test_max_completion_tokens_holds_across_submit_tool_outputs(tool_server):
    async with Client(tool_server.base_url) as api:
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", tool_run([PING], "ping"))
        assert run["status"] == "requires_action", run
        first = run["usage"]["completion_tokens"]
        # a second run whose limit the calling turn spends: after the outputs, nothing is left
        tid = await new_thread(api, ASK)
        run = await run_to_end(api, f"/v1/threads/{tid}/runs", {**tool_run([PING], "ping"),
                                                               "max_completion_tokens": first})
        assert run["status"] == "requires_action" and run["usage"]["completion_tokens"] == first, run
        [call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        events = await streamed(api, f"/v1/threads/{tid}/runs/{run['id']}/submit_tool_outputs",
                                {"tool_outputs": [{"tool_call_id": call["id"], "output": "up"}]})
        assert [name for name, _ in events] == SUBMITTED_THEN_NOT_STARTED
        done = events[-2][1]
        assert done["incomplete_details"] == {"reason": "max_completion_tokens"}
        assert done["usage"]["completion_tokens"] == first
        assert events[6][1]["metadata"]["stop_reason"] == "max_completion_tokens"  # thread.message.incomplete
